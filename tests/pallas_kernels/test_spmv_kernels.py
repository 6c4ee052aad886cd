"""SpMV Pallas kernels in interpret mode (CPU) against their jnp references and SciPy.

Small block sizes force several programs per matrix; the cases are the awkward ones: empty rows,
one row, one very long row, rows not a multiple of the block, an all-zero matrix. GPU runs of the
same kernels (Triton lowering) are marked ``gpu``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

import jaxlab.sparse as jsparse
from jaxlab.core import tolerances
from pallas_kernels import csr_balanced_spmv as cb
from pallas_kernels import csr_merge_spmv as cm
from pallas_kernels import csr_vector_spmv as cv
from pallas_kernels import ell_spmv as ek
from pallas_kernels import sellp_spmv as sk
from pallas_kernels._tuning import array_device_kind, lookup, next_pow2

from ..compile_helpers import quick_jit


def _matrix(case):
    rng = np.random.default_rng(0)
    if case == "all_zero":
        return sp.csr_matrix((5, 7))
    if case == "stored_zeros":  # an all-zero matrix whose zeros are stored: the kernels do run
        S = sp.random(9, 7, density=0.5, random_state=0, format="csr")
        S.data[:] = 0.0
        return S
    if case == "one_row":
        return sp.csr_matrix(rng.standard_normal((1, 6)))
    # 13 rows (not a multiple of any block), empty rows 0, 4 and 12, and row 6 with all 50 columns.
    d = np.where(rng.random((13, 50)) < 0.06, rng.standard_normal((13, 50)), 0)
    d[6] = rng.standard_normal(50)
    d[[0, 4, 12]] = 0
    return sp.csr_matrix(d)


# "mixed" (empty rows, one full row, rows not a multiple of the block) and "all_zero" run in CI; the other edge
# cases compile their own interpret-mode kernels (seconds each) and run with -m slow.
CASES = ["mixed", pytest.param("one_row", marks=pytest.mark.slow), "all_zero",
         pytest.param("stored_zeros", marks=pytest.mark.slow)]


def _kernel_and_reference(kernel, reference, *args):
    """The interpret-mode kernel and its jnp reference on the same arguments, in one compiled program (each
    called eagerly compiled its own, and the kernels' wrappers ran op by op)."""
    return quick_jit(lambda *a: (kernel(*a), reference(*a)))(*args)


def _check(y, S, x, dtype):
    atol, rtol = tolerances(dtype)
    np.testing.assert_allclose(np.asarray(y), S @ np.asarray(x), atol=atol, rtol=rtol)


@pytest.mark.parametrize("case", CASES)
def test_ell_kernel(case):
    S = _matrix(case)
    A = jsparse.ELL.from_scipy(S)
    x = jnp.asarray(np.random.default_rng(1).standard_normal(S.shape[1]))
    y, ref = _kernel_and_reference(
        functools.partial(ek.ell_spmv, block_sizes=ek.BlockSizes(block_rows=4), interpret=True),
        ek.ell_spmv_reference, A.data, A.col, x)
    _check(y, S, x, "float64")
    _check(ref, S, x, "float64")


@pytest.mark.parametrize("case", CASES)
def test_sellp_kernel(case):
    S = _matrix(case)
    A = jsparse.SELLP.from_scipy(S, slice_size=4, uniform_width=False)
    x = jnp.asarray(np.random.default_rng(1).standard_normal(S.shape[1]))
    args = (A.data, A.col, A.slice_lengths, A.slice_sets, x)
    y, ref = _kernel_and_reference(
        functools.partial(sk.sellp_spmv, num_rows=S.shape[0], slice_size=4, interpret=True),
        functools.partial(sk.sellp_spmv_reference, num_rows=S.shape[0], slice_size=4), *args)
    _check(y, S, x, "float64")
    _check(ref, S, x, "float64")


@pytest.mark.parametrize("case", CASES)
def test_csr_vector_kernel(case):
    S = _matrix(case)
    A = jsparse.CSR.from_scipy(S)
    x = jnp.asarray(np.random.default_rng(1).standard_normal(S.shape[1]))
    sg = cv.subgroup_size(A.meta.max_row_length)
    y, ref = _kernel_and_reference(
        functools.partial(cv.csr_vector_spmv, subgroup=sg, block_sizes=cv.BlockSizes(tile=16), interpret=True),
        cv.csr_spmv_reference, A.data, A.indices, A.indptr, x)
    _check(y, S, x, "float64")
    _check(ref, S, x, "float64")


@pytest.mark.parametrize("case", CASES)
def test_csr_balanced_kernel(case):
    S = _matrix(case)
    A = jsparse.CSR.from_scipy(S)
    x = jnp.asarray(np.random.default_rng(1).standard_normal(S.shape[1]))
    y, ref = _kernel_and_reference(
        functools.partial(cb.csr_balanced_spmv, num_rows=S.shape[0], block_sizes=cb.BlockSizes(chunk=8),
                          interpret=True),
        functools.partial(cb.csr_balanced_spmv_reference, num_rows=S.shape[0]), A.data, A.indices, A.row_ids, x)
    _check(y, S, x, "float64")
    _check(ref, S, x, "float64")


@pytest.mark.parametrize("fmt,opts", [pytest.param("csr", {"strategy": "load_balance"}, marks=pytest.mark.slow),
                                      ("csr", {"strategy": "merge_path"}),
                                      ("hybrid", {"ell_width": 1})])
def test_dispatch_agrees_with_xla_f32_and_grad(fmt, opts):
    """The Pallas path behind ``spmv`` equals the XLA path (f32, two RHS) and differentiates."""
    S = _matrix("mixed").astype(np.float32)
    A = jsparse.from_scipy(S, fmt, **opts)
    X = jnp.asarray(np.random.default_rng(3).standard_normal((S.shape[1], 2)), jnp.float32)
    atol, rtol = tolerances("float32")
    y_p = jsparse.spmv(A, X, impl="pallas_interpret")
    np.testing.assert_allclose(y_p, jsparse.spmv(A, X, impl="xla"), atol=atol, rtol=rtol)
    # Both gradients in one compiled program (eager, the backward pass compiles op by op).
    g, g_ref = quick_jit(lambda d: (
        jax.grad(lambda d: jnp.sum(jsparse.spmv(A.with_data(d), X, impl="pallas_interpret") ** 2))(d),
        jax.grad(lambda d: jnp.sum(jsparse.spmv(A.with_data(d), X, impl="xla") ** 2))(d)))(A.data)
    np.testing.assert_allclose(g, g_ref, atol=10 * atol, rtol=rtol)


@pytest.mark.parametrize("case", CASES + [pytest.param("empty_run", marks=pytest.mark.slow)])
def test_csr_merge_path_kernel(case):
    if case == "empty_run":  # a long run of empty rows between two full ones: merge path balances rows too
        d = np.zeros((40, 9))
        d[0], d[39] = np.arange(1.0, 10.0), -np.arange(1.0, 10.0)
        S = sp.csr_matrix(d)
    else:
        S = _matrix(case)
    A = jsparse.CSR.from_scipy(S)
    x = jnp.asarray(np.random.default_rng(1).standard_normal(S.shape[1]))
    y, ref = _kernel_and_reference(
        lambda d, i, p, r, v: cm.csr_merge_spmv(d, i, p, r, v, num_rows=S.shape[0],
                                                block_sizes=cm.BlockSizes(chunk=8), interpret=True),
        lambda d, i, p, r, v: cm.csr_merge_spmv_reference(d, i, p, v), A.data, A.indices, A.indptr, A.row_ids, x)
    _check(y, S, x, "float64")
    _check(ref, S, x, "float64")


def _merge_path_reference(indptr, chunk):
    """Walks the merge of the row ends with the nonzeros step by step (row end first on ties)."""
    m, nnz = len(indptr) - 1, int(indptr[-1])
    i = j = 0
    points = [(0, 0)]
    for step in range(1, m + nnz + 1):
        if i < m and indptr[i + 1] <= j:
            i += 1
        else:
            j += 1
        if step % chunk == 0 or step == m + nnz:
            points.append((i, j))
    return np.array(points)


@pytest.mark.parametrize("case", ["mixed", "one_row", "all_zero"])
def test_merge_path_partition_matches_a_step_by_step_walk(case):
    indptr = _matrix(case).indptr
    rows, nzs = quick_jit(lambda p: cm.merge_path_partition(p, 4, int(indptr[-1])))(indptr.astype(np.int32))
    ref = _merge_path_reference(indptr, 4)
    np.testing.assert_array_equal(np.stack([rows, nzs], axis=1), ref)


def test_block_size_tables_are_keyed_by_the_arrays_device_kind(monkeypatch):
    assert next_pow2(1) == 1 and next_pow2(5) == 8 and next_pow2(64) == 64
    table = {"default": ek.BlockSizes(256), "H200": ek.BlockSizes(128), "NVIDIA H200 NVL": ek.BlockSizes(64)}
    assert lookup(table, "NVIDIA H200") == ek.BlockSizes(128)
    assert lookup(table, "NVIDIA H200 NVL") == ek.BlockSizes(64)  # the longest matching key wins
    assert lookup(table, "some cpu") == lookup(table, None) == ek.BlockSizes(256)
    for mod in (ek, sk, cv, cb, cm):
        assert isinstance(mod.BlockSizes.get_default("NVIDIA H100 80GB HBM3"), mod.BlockSizes)
    x = jnp.ones(3)
    assert array_device_kind(x) == next(iter(x.devices())).device_kind
    assert jax.jit(lambda v: jnp.asarray(array_device_kind(v) is None))(x)  # traced: no device
    # spmv passes the kind of the device it is lowered for down to the kernel's table.
    seen = []
    original = ek._ell_spmv

    def spy(data, cols, v, *, block_sizes, interpret):
        seen.append(block_sizes)
        return original(data, cols, v, block_sizes=block_sizes, interpret=interpret)

    monkeypatch.setattr(ek, "_ell_spmv", spy)
    monkeypatch.setattr(ek, "_TUNED", {"default": ek.BlockSizes(256), x.devices().pop().device_kind:
                                       ek.BlockSizes(4)})
    A = jsparse.ELL.from_scipy(_matrix("mixed"))
    y = jax.jit(lambda A, v: jsparse.spmv(A, v, impl="pallas_interpret"))(A, jnp.ones(50))
    _check(y, _matrix("mixed"), np.ones(50), "float64")
    assert seen == [ek.BlockSizes(4)]
    assert [cv.subgroup_size(k) for k in (0, 1, 3, 8, 31, 500)] == [1, 1, 2, 8, 16, 32]
    with pytest.raises(ValueError, match="power-of-two slice_size"):
        sk.sellp_spmv(jnp.zeros(6), jnp.zeros(6, jnp.int32), jnp.ones(2, jnp.int32),
                      jnp.asarray([0, 1, 2], jnp.int32), jnp.ones(3), num_rows=6, slice_size=3)


@pytest.mark.gpu
def test_kernels_on_gpu():
    S = jsparse.powerlaw_rows(5000, 16.0, seed=0).astype(np.float32)
    x = np.random.default_rng(0).standard_normal(5000).astype(np.float32)
    atol, rtol = tolerances("float32")
    for fmt, opts in [("csr", {"strategy": "classical"}), ("csr", {"strategy": "load_balance"}),
                      ("csr", {"strategy": "merge_path"}), ("ell", {}), ("sellp", {}), ("hybrid", {})]:
        A = jsparse.from_scipy(S, fmt, **opts)
        y = jax.jit(lambda A, v: jsparse.spmv(A, v, impl="pallas"))(A, jnp.asarray(x))
        np.testing.assert_allclose(np.asarray(y), S @ x, atol=10 * atol, rtol=10 * rtol)
        y = jax.jit(lambda A, v: jsparse.spmv(A, v))(A, jnp.asarray(x))  # auto: cuSPARSE for CSR
        np.testing.assert_allclose(np.asarray(y), S @ x, atol=10 * atol, rtol=10 * rtol)
    X = np.random.default_rng(1).standard_normal((5000, 3)).astype(np.float32)
    A = jsparse.from_scipy(S, "csr")
    np.testing.assert_allclose(np.asarray(jax.jit(lambda A, v: A @ v)(A, jnp.asarray(X))), S @ X,
                               atol=10 * atol, rtol=10 * rtol)


def _lowered_for_h200(f, *args) -> str:
    """``f(*args)`` lowered for CUDA on a host without a GPU, as text.

    The abstract H200 names the target: JAX 0.11's Triton lowering reads the GPU's compute capability
    from it and raises without one on a CPU host (0.10 assumed sm_90, an H200's, in that case).
    """
    h200 = jax.sharding.AbstractMesh((), (), abstract_device=jax.sharding.AbstractDevice(
        device_kind="NVIDIA H200", num_cores=None, platform="gpu"))
    with jax.sharding.use_abstract_mesh(h200):
        return jax.jit(f).trace(*args).lower(lowering_platforms=("cuda",)).as_text()


@pytest.mark.parametrize("fmt,kernel", [("csr", False), ("coo", False), ("ell", False), ("hybrid", False),
                                        ("sellp", True)])
def test_gpu_auto_uses_kernel_only_where_it_measured_faster(fmt, kernel):
    # Lowered for CUDA without a GPU: impl="auto" emits the Triton kernel for SELL-P only (H200 figures).
    S = sp.random(64, 64, density=0.1, format="csr", random_state=0, dtype=np.float32)
    A = jsparse.from_scipy(S, fmt)
    text = _lowered_for_h200(lambda A, v: jsparse.spmv(A, v), A, jnp.ones(64, jnp.float32))
    assert ("triton" in text) == kernel


def test_every_kernel_lowers_to_triton_without_a_gpu():
    # The interpret-mode tests above run the kernels' arithmetic, not the Triton lowering, which refuses
    # some primitives (merge_path's jnp.any lowered to reduce_or, which Triton lacks, and failed only on a
    # GPU). Lowering each kernel for CUDA checks that on this host, in both precisions and for a block of
    # vectors. Hybrid gets an explicit ELL width: power-law rows give it none, and then no ELL kernel.
    S = jsparse.powerlaw_rows(300, 8.0, seed=0)
    for dtype in (np.float32, np.float64):
        for fmt, opts in [("csr", {"strategy": "classical"}), ("csr", {"strategy": "load_balance"}),
                          ("csr", {"strategy": "merge_path"}), ("ell", {}), ("sellp", {}),
                          ("hybrid", {"ell_width": 4})]:
            A = jsparse.from_scipy(S.astype(dtype), fmt, **opts)
            for x in (jnp.ones(300, dtype), jnp.ones((300, 2), dtype)):
                text = _lowered_for_h200(lambda A, v: jsparse.spmv(A, v, impl="pallas"), A, x)
                assert "triton" in text, (fmt, opts, dtype, x.shape)
