"""spmv: values against SciPy for every format, and jit / vmap / grad / jvp / transpose / loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxlab.sparse as jsparse
from jaxlab.core import tolerances

from ..compile_helpers import quick_jit

from .sparse_cases import CASES, FORMAT_OPTIONS

FORMATS = sorted(FORMAT_OPTIONS)
VALUE_CASES = [("empty_rows", "float64"), ("long_row", "float64"), ("poisson2d_4", "float32")]


def _build(fmt, case, dtype="float64"):
    S = CASES[case].astype(dtype)
    return S, jsparse.from_scipy(S, fmt, **FORMAT_OPTIONS[fmt])


def _close(actual, expected, dtype):
    atol, rtol = tolerances(dtype)
    np.testing.assert_allclose(np.asarray(actual), expected, atol=atol, rtol=rtol)


@pytest.mark.parametrize("case,dtype", VALUE_CASES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_spmv_matches_scipy(fmt, case, dtype):
    S, A = _build(fmt, case, dtype)
    rng = np.random.default_rng(0)
    m, n = S.shape
    x = rng.standard_normal(n).astype(dtype)
    X = rng.standard_normal((n, 3)).astype(dtype)
    z = rng.standard_normal(m).astype(dtype)
    y = A @ x  # eager
    assert y.shape == (m,) and y.dtype == dtype
    _close(y, S @ x, dtype)
    # The other products in one program (eager, each compiled its own and the reference ran op by op).
    yX, yT, y_ref = quick_jit(lambda A, X, z, x: (jsparse.spmv(A, X), A.T @ z, jsparse.spmv_reference(A, x)))(
        A, X, z, x)
    _close(yX, S @ X, dtype)
    _close(yT, S.T @ z, dtype)
    _close(y_ref, S @ x, dtype)


@pytest.mark.parametrize("fmt", FORMATS)
def test_spmv_degenerate_shapes(fmt):
    for case in ("all_zero", "one_row"):
        S, A = _build(fmt, case)
        x = np.arange(S.shape[1], dtype=np.float64)
        _close(A @ x, S @ x, "float64")


@pytest.mark.parametrize("fmt", FORMATS)
def test_grad_values_and_x(fmt):
    S, A = _build(fmt, "long_row")
    x = jnp.asarray(np.random.default_rng(2).standard_normal(S.shape[1]))
    loss = lambda d, v: jnp.sum(jnp.sin(A.with_data(d) @ v))
    loss_ref = lambda d, v: jnp.sum(jnp.sin(A.with_data(d).todense() @ v))
    # Both gradients in one compiled program (eager, each op of the backward pass compiled on its own: 110
    # compilations over the formats, 2.5x the CPU time); eager gradients: test_transformations.
    grads = quick_jit(lambda d, v: (jax.grad(loss, (0, 1))(d, v), jax.grad(loss_ref, (0, 1))(d, v)))
    for got, want in zip(*grads(A.data, x)):
        _close(got, want, "float64")


@settings(max_examples=6, deadline=None)
@given(m=st.integers(1, 9), n=st.integers(1, 9), density=st.floats(0, 1), seed=st.integers(0, 99),
       fmt=st.sampled_from(["csr", "ell", "sellp", "hybrid"]))
def test_spmv_random_patterns(m, n, density, seed, fmt):
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    S = sp.csr_matrix(np.where(rng.random((m, n)) < density, rng.standard_normal((m, n)), 0.0))
    A = jsparse.from_scipy(S, fmt, **FORMAT_OPTIONS[fmt])
    x = rng.standard_normal(n)
    _close(A @ x, S @ x, "float64")


# The jit/vmap/grad/jvp/transpose rules belong to the one primitive behind every format, so the full
# suite runs on one format; the per-format pieces (product, transposed and sampled products) are
# covered by the value and gradient tests above.
@pytest.mark.parametrize("fmt", ["csr"])
def test_transformations(fmt):
    S, A = _build(fmt, "empty_rows")
    m, n = S.shape
    D = S.toarray()
    rng = np.random.default_rng(1)
    x = rng.standard_normal(n)
    X = rng.standard_normal((4, n))

    # jit, and no recompilation for new values of the same pattern.
    f = jax.jit(lambda A, x: A @ x)
    _close(f(A, x), D @ x, "float64")
    f(A.with_data(2 * A.data), x)
    assert f._cache_size() == 1

    # vmap over x, and over the values of matrices sharing the pattern. (The inputs are NumPy arrays and the
    # dense references one jitted program: only the products under test run eagerly, op by op.)
    data = np.asarray(A.data)
    vals = np.stack([data, -3 * data])
    _close(jax.vmap(lambda v: A @ v)(X), X @ D.T, "float64")
    out = jax.vmap(lambda d: A.with_data(d) @ x)(vals)
    _close(out, np.stack([D @ x, -3 * (D @ x)]), "float64")
    out = jax.vmap(lambda d, v: A.with_data(d) @ v)(vals[:1].repeat(4, 0), X)
    _close(out, X @ D.T, "float64")
    out = jax.vmap(jax.vmap(lambda d, v: A.with_data(d) @ v, (0, None)), (None, 0))(vals, X)
    _close(out[:, 1], -3 * (X @ D.T), "float64")

    # grad w.r.t. x and the values, against the dense formulation.
    loss = lambda d, v: jnp.sum(jnp.sin(A.with_data(d) @ v))
    loss_ref = lambda d, v: jnp.sum(jnp.sin(A.with_data(d).todense() @ v))
    ones = np.ones(m)
    (rd, rx), gt_ref = quick_jit(lambda d, v, vals: (
        jax.grad(loss_ref, argnums=(0, 1))(d, v),
        jax.vmap(jax.grad(lambda d: jnp.sum((A.with_data(d).todense().T @ ones) ** 2)))(vals)))(data, x, vals)
    gd, gx = jax.grad(loss, argnums=(0, 1))(A.data, x)
    _close(gd, rd, "float64")
    _close(gx, rx, "float64")
    # grad through the transposed product, batched over values.
    gt = jax.vmap(jax.grad(lambda d: jnp.sum((A.with_data(d).T @ ones) ** 2)))(vals)
    _close(gt, gt_ref, "float64")

    # jvp in both arguments, and the linear transpose in x.
    _, t = jax.jvp(lambda d, v: A.with_data(d) @ v, (A.data, x), (A.data, x))
    _close(t, 2 * (D @ x), "float64")
    (xt,) = jax.linear_transpose(lambda v: A @ v, x)(ones)
    _close(xt, D.T @ np.ones(m), "float64")


def test_while_loop_power_iteration():
    A = jsparse.from_scipy(jsparse.poisson2d(5), "hybrid")

    @jax.jit
    def power(A, x):
        def body(state):
            i, v = state
            w = A @ v
            return i + 1, w / jnp.linalg.norm(w)

        return jax.lax.while_loop(lambda s: s[0] < 200, body, (0, x))[1]

    v = power(A, jnp.ones(25))
    lam = v @ (A @ v)
    assert abs(float(lam) - np.linalg.eigvalsh(jsparse.poisson2d(5).toarray()).max()) < 1e-3


def test_grad_under_jit_with_matrix_as_argument():
    S, A = _build("csr", "random_rect")
    x = jnp.ones(S.shape[1])
    g = jax.jit(jax.grad(lambda A: jnp.sum((A @ x) ** 2), allow_int=True))(A)
    assert isinstance(g, jsparse.CSR)
    _close(g.data, jax.grad(lambda d: jnp.sum((A.with_data(d).todense() @ x) ** 2))(A.data), "float64")


@pytest.mark.usefixtures("without_typechecks")  # our messages, as users see them (test_typecheck.py: the checks)
def test_errors_at_trace_time():
    S, A = _build("csr", "random_rect")
    m, n = S.shape
    with pytest.raises(ValueError, match=rf"A has shape \({m}, {n}\) but x has shape \({m},\)"):
        jax.jit(lambda v: A @ v)(jnp.ones(m))
    with pytest.raises(ValueError, match="A.T has shape"):
        A.T @ jnp.ones(n)
    with pytest.raises(TypeError, match="x has dtype float32 but the matrix has dtype float64"):
        jax.jit(lambda v: A @ v)(jnp.ones(n, jnp.float32))
    with pytest.raises(TypeError, match="expects a jaxlab.sparse matrix"):
        jsparse.spmv(S, np.ones(n))
    with pytest.raises(ValueError, match="unknown impl"):
        jsparse.spmv(A, jnp.ones(n), impl="cusparse")
    with pytest.raises(ValueError, match="needs a GPU backend"):
        jsparse.spmv(A, jnp.ones(n), impl="pallas")
    # vmap over index arrays (matrices with different patterns) is refused.
    leaves, treedef = jax.tree.flatten(A)
    batched = [leaves[0], jnp.stack([leaves[1], leaves[1][::-1]]), *leaves[2:]]
    in_axes = jax.tree.unflatten(treedef, [None, 0, None, None])
    with pytest.raises(ValueError, match="different sparsity patterns"):
        jax.vmap(lambda B: B @ jnp.ones(n), in_axes=(in_axes,))(jax.tree.unflatten(treedef, batched))


def test_layout_specific_paths():
    """The XLA forms chosen from the layout: wide ELL (loop), uniform SELL-P, Hybrid without COO."""
    import scipy.sparse as sp

    rng = np.random.default_rng(5)
    d = np.where(rng.random((6, 80)) < 0.1, 1.0, 0.0)
    d[2] = np.arange(80.0)
    wide = sp.csr_matrix(d)
    x = rng.standard_normal(80)
    A = jsparse.ELL.from_scipy(wide)
    assert A.meta.width == 79
    _close(A @ x, wide @ x, "float64")
    P = jsparse.poisson2d(4)
    B = jsparse.SELLP.from_scipy(P, slice_size=4)
    assert B.meta.total_cols == 4 * B.meta.max_slice_width  # padded to one width
    _close(B @ np.ones(16), P @ np.ones(16), "float64")
    H = jsparse.Hybrid.from_scipy(P, ell_width=5)
    assert H.meta.coo_nnz == 0
    _close(H @ np.ones(16), P @ np.ones(16), "float64")
    H0 = jsparse.Hybrid.from_scipy(P)  # Ginkgo's rule sends small matrices to COO entirely
    assert H0.meta.ell_width == 0 and H0.meta.coo_nnz == P.nnz
    _close(H0 @ np.ones(16), P @ np.ones(16), "float64")


def test_sharded_x_on_an_explicit_mesh():
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    S = jsparse.poisson2d(8)
    A = jsparse.from_scipy(S)
    mesh = jax.make_mesh((len(jax.devices()),), ("data",))
    x = jax.device_put(jnp.arange(64.0), NamedSharding(mesh, P("data")))
    y = jax.jit(lambda A, v: A @ v)(A, x)
    _close(y, S @ np.arange(64.0), "float64")
    g = jax.jit(jax.grad(lambda v: jnp.sum((A @ v) ** 2)))(x)
    _close(g, 2 * S.T @ (S @ np.arange(64.0)), "float64")


def test_csr_several_right_hand_sides_stay_unrolled_up_to_8x_padding():
    """Rows of 1-8 entries (about 3x padding): one vector takes the segment_sum (a scatter), several right-hand
    sides the unrolled gathers (a scatter of (nnz, k) rows was 35x slower, scripts/bench_csr_multirhs.py); both
    equal dense matmul, as does a matrix with one full row (about 10x padding), which keeps the segment_sum for
    several columns too."""
    import scipy.sparse as sp

    from jaxlab.sparse._csr import csr_unrolled

    rng = np.random.default_rng(5)
    lengths = np.r_[8, rng.integers(1, 4, size=15)]
    uneven = sp.lil_matrix((16, 48))
    for r, k in enumerate(lengths):
        uneven[r, rng.choice(48, size=k, replace=False)] = rng.standard_normal(k)
    skewed = uneven.copy()
    skewed[0, :] = rng.standard_normal(48)
    X = rng.standard_normal((48, 5))
    for S, unrolled_multi in ((uneven.tocsr(), True), (skewed.tocsr(), False)):
        A = jsparse.from_scipy(S, "csr")
        w = A.meta.max_row_length
        assert not csr_unrolled(16, S.nnz, w, multi_rhs=False)
        assert csr_unrolled(16, S.nnz, w, multi_rhs=True) == unrolled_multi
        for x, scatter in ((X[:, 0], True), (X, not unrolled_multi)):
            lowered = jax.jit(jsparse.spmv).lower(A, x)
            assert ("scatter" in lowered.as_text()) == scatter
            _close(lowered.compile()(A, x), S.toarray() @ x, "float64")
