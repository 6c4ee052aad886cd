"""jaxlab.sparse.shard_rows on 8 fake CPU devices: products, solves and the bytes each product moves."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

import jaxlab.sparse as jsparse
from jaxlab import krylov
from jaxlab.parallel import collective_stats

from ..compile_helpers import quick_jit

P_DEV = 8


@pytest.fixture(scope="module")
def mesh():
    assert jax.device_count() >= P_DEV
    return jax.sharding.Mesh(np.array(jax.devices()[:P_DEV]), ("rows",))


def _spd_random(n: int) -> sp.csr_matrix:
    """A symmetric positive definite matrix: a chain plus random couplings far from the diagonal (not banded)."""
    rng = np.random.default_rng(1)
    i = rng.integers(0, n, 24)
    j = (i + rng.integers(n // 4, 3 * n // 4, 24)) % n
    far = sp.coo_matrix((-0.5 * np.ones(24), (i, j)), shape=(n, n))
    S = (sp.diags([-np.ones(n - 1), -np.ones(n - 1)], [-1, 1]) + far + far.T).tocsr()
    return (S + sp.diags(np.asarray(abs(S).sum(1)).ravel() + 1.0)).tocsr()


def _bytes(A, x) -> float:
    return _product_and_bytes(A, x)[1]


def _product_and_bytes(A, x):
    """``A @ x`` and the bytes its collectives receive per device, from one compilation of the product."""
    compiled = jax.jit(lambda A, x: A @ x).lower(A, x).compile()
    return compiled(A, x), sum(c.received_bytes for c in collective_stats(compiled.as_text(), P_DEV))


def test_banded_matrix_uses_ppermute_and_moves_exactly_its_halo(mesh):
    S = jsparse.poisson2d(16)  # 256 rows, 32 per device, bandwidth 16
    A = jsparse.shard_rows(S, mesh, "rows")
    assert (A.plan.kind, A.plan.width, A.plan.block) == ("ppermute", 16, 32)
    x = np.random.default_rng(0).normal(size=256)
    y, received = _product_and_bytes(A, A.shard_vector(x))
    np.testing.assert_allclose(np.asarray(y), S @ x, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(A.todense(), S.toarray())
    # Two collective-permutes of w = 16 float64 each: 2 * 16 * 8 bytes received per device.
    assert received == 2 * 16 * 8 == A.plan.received_entries() * 8


def test_general_matrix_gathers_the_needed_entries(mesh):
    S = _spd_random(256)
    A = jsparse.shard_rows(S, mesh, "rows")
    assert A.plan.kind == "gather"
    x = np.random.default_rng(1).normal(size=256)
    y, received = _product_and_bytes(A, A.shard_vector(x))
    np.testing.assert_allclose(np.asarray(y), S @ x, rtol=1e-12, atol=1e-12)
    # The pack of block q: its entries that other blocks read; s is the largest pack.
    m = 256 // P_DEV
    packs = []
    for q in range(P_DEV):
        others = np.concatenate([S[p * m:(p + 1) * m].indices for p in range(P_DEV) if p != q])
        packs.append(np.unique(others[(others >= q * m) & (others < (q + 1) * m)]).size)
    assert A.plan.width == max(packs) < m
    assert received == (P_DEV - 1) * max(packs) * 8
    with pytest.raises(ValueError, match="halo='gather'"):
        jsparse.shard_rows(S, mesh, "rows", halo="ppermute")


@pytest.mark.slow  # 24 s; the gather path is also checked by test_general_matrix_gathers_the_needed_entries
def test_gather_on_a_banded_matrix_agrees_with_ppermute(mesh):
    S = jsparse.poisson3d(8)  # 512 rows, 64 per device, bandwidth 64
    a, b = (jsparse.shard_rows(S, mesh, "rows", halo=h) for h in ("ppermute", "gather"))
    assert (a.plan.kind, a.plan.width, b.plan.kind) == ("ppermute", 64, "gather")
    x = np.random.default_rng(2).normal(size=512)
    np.testing.assert_allclose(np.asarray(a @ x), S @ x, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(np.asarray(b @ x), S @ x, rtol=1e-13, atol=1e-13)


# cg runs in CI; the other two add only the method (their sharded matvec is the same) and take 4x as long.
@pytest.mark.parametrize("method,make", [("cg", lambda: jsparse.poisson2d(16)),
                                         pytest.param("bicgstab", lambda: _spd_random(256), marks=pytest.mark.slow),
                                         pytest.param("gmres", lambda: jsparse.poisson3d(8), marks=pytest.mark.slow)])
def test_solves_equal_the_single_device_solve(mesh, method, make):
    S = make()
    n = S.shape[0]
    b = np.random.default_rng(3).normal(size=n)
    A = jsparse.shard_rows(S, mesh, "rows")
    run = quick_jit(lambda A, b: krylov.solve(A, b, method=method, rtol=1e-11, maxiter=2000))
    sol = run(A, A.shard_vector(b))
    ref = run(jsparse.from_scipy(S, format="csr"), jnp.asarray(b))  # the single-device solve
    assert bool(sol.converged) and bool(ref.converged)
    assert int(sol.iterations) == int(ref.iterations)
    x, xr = np.asarray(sol.x), np.asarray(ref.x)
    assert np.linalg.norm(x - xr) / np.linalg.norm(xr) < 1e-10
    assert sol.x.sharding.is_equivalent_to(A.vector_sharding(), 1)


def _compiled_programs(fn):
    """``fn()`` and the names of the XLA programs it compiled."""
    names = []

    def listener(event, duration, fun_name=None, **kw):
        if event == "/jax/core/compile/backend_compile_duration":
            names.append(fun_name)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        return fn(), names
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def test_block_diagonal_matrix_needs_no_communication(mesh):
    S = sp.block_diag([jsparse.poisson2d(4)] * P_DEV, format="csr")
    A = jsparse.shard_rows(S, mesh, "rows")
    assert A.plan.kind == "none" and A.plan.received_entries() == 0
    x = np.arange(S.shape[0], dtype=np.float64)
    # An eager product is one compiled program (an eager shard_map ran its body op by op: 84 compilations),
    # and a second matrix of the same layout reuses it.
    y, compiled = _compiled_programs(lambda: np.asarray(A @ x))
    np.testing.assert_allclose(y, S @ x)
    # The product, and the host-to-device and device-to-host copies of x and y (jit(stage), jit(_multi_slice)).
    assert compiled.count("jit(_sharded_matvec)") == 1 and len(compiled) <= 4, compiled
    B = jsparse.shard_rows(2 * S, mesh, "rows")
    y2, compiled = _compiled_programs(lambda: np.asarray(B @ x))
    np.testing.assert_allclose(y2, 2 * (S @ x))
    assert compiled == [], compiled
    assert _bytes(A, A.shard_vector(x)) == 0


def test_bad_inputs_are_named(mesh):
    with pytest.raises(ValueError, match="equal blocks"):
        jsparse.shard_rows(jsparse.poisson2d(3), mesh, "rows")
    with pytest.raises(ValueError, match="square"):
        jsparse.shard_rows(sp.random(16, 8, density=0.5, format="csr"), mesh, "rows")
    with pytest.raises(ValueError, match="not an axis"):
        jsparse.shard_rows(jsparse.poisson2d(4), mesh, "data")
    with pytest.raises(ValueError, match="halo must be"):
        jsparse.shard_rows(jsparse.poisson2d(4), mesh, "rows", halo="mpi")
    A = jsparse.shard_rows(jsparse.poisson2d(4), mesh, "rows")
    with pytest.raises(ValueError, match="vectors of shape"):
        A @ np.ones(15)
