import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse.linalg as spla

from jaxlab import krylov
from jaxlab.core import tolerances

from .cases import convection_diffusion, poisson2d, rhs, scipy_iterations

SPD = poisson2d(8, shift=0.3)  # n = 64
NONSYM = convection_diffusion(8)
N = SPD.shape[0]
RTOL = 1e-10


def _relres(A, x, b):
    return np.linalg.norm(A @ np.asarray(x) - b) / np.linalg.norm(b)


CASES = [  # (method, matrix, scipy counterpart or None)
    ("cg", SPD, spla.cg),
    ("fcg", SPD, None),
    ("bicgstab", NONSYM, spla.bicgstab),
    ("cgs", NONSYM, spla.cgs),
    ("gmres", NONSYM, None),
    ("ir", NONSYM, None),
]


@pytest.mark.parametrize("method, A, peer", CASES, ids=[c[0] for c in CASES])
def test_solution_and_iterations_match_scipy(method, A, peer):
    b = rhs(N)
    kw = {"inner": "gmres", "inner_rtol": 1e-4} if method == "ir" else {}
    sol = krylov.solve(jnp.asarray(A.toarray()), jnp.asarray(b), method=method, rtol=RTOL, **kw)
    assert bool(sol.converged) and int(sol.status) == krylov.Status.CONVERGED
    assert _relres(A, sol.x, b) < 10 * RTOL
    np.testing.assert_allclose(sol.x, np.linalg.solve(A.toarray(), b), rtol=1e-7, atol=1e-9)
    if peer is not None:
        assert int(sol.iterations) == scipy_iterations(peer, A, b, rtol=RTOL)


def test_gmres_iterations_match_scipy_inner_count():
    b = rhs(N)
    sol = krylov.gmres(jnp.asarray(NONSYM.toarray()), jnp.asarray(b), rtol=1e-8, restart=10)
    ref = scipy_iterations(spla.gmres, NONSYM, b, rtol=1e-8, restart=10, callback_type="pr_norm")
    assert bool(sol.converged)
    assert abs(int(sol.iterations) - ref) <= max(1, 0.05 * ref)


def test_jacobi_cg_matches_scipy_with_the_same_preconditioner():
    b = rhs(N)
    sol = krylov.cg(jnp.asarray(SPD.toarray()), jnp.asarray(b), preconditioner="jacobi", rtol=RTOL)
    M = spla.LinearOperator(SPD.shape, matvec=lambda r: r / SPD.diagonal())
    assert int(sol.iterations) == scipy_iterations(spla.cg, SPD, b, rtol=RTOL, M=M)


@pytest.mark.parametrize("kind, method, options", [
    ("jacobi", "cg", {}),
    ("block_jacobi", "cg", {"block_size": 4}),
    ("ic0", "cg", {}),
    ("ic0", "cg", {"triangular": "isai"}),
    ("ilu0", "gmres", {}),
    ("ilu0", "bicgstab", {"triangular": "isai"}),
    ("isai", "gmres", {}),
])
def test_preconditioners_converge_and_cut_iterations(kind, method, options):
    A = SPD if method == "cg" else NONSYM
    b = rhs(N, seed=1)
    Ad = jnp.asarray(A.toarray())
    plain = krylov.solve(Ad, jnp.asarray(b), method=method, rtol=RTOL)
    pre = krylov.solve(Ad, jnp.asarray(b), method=method, preconditioner=kind, rtol=RTOL,
                       preconditioner_options=options)
    assert bool(pre.converged) and _relres(A, pre.x, b) < 10 * RTOL
    assert int(pre.iterations) <= int(plain.iterations)


def test_ilu0_factors_match_the_dense_reference():
    A = NONSYM.toarray()
    P = krylov.ilu0(A)
    L, U = krylov.ilu0_reference(A)
    x = rhs(N, seed=2)
    atol, rtol = tolerances(jnp.float64)
    np.testing.assert_allclose(P(jnp.asarray(x)), np.linalg.solve(U, np.linalg.solve(L, x)), rtol=1e3 * rtol)
    np.testing.assert_allclose(P.T(jnp.asarray(x)), np.linalg.solve(L.T, np.linalg.solve(U.T, x)), rtol=1e3 * rtol)
    pattern = A != 0
    np.testing.assert_allclose((L @ U)[pattern], A[pattern], atol=1e-12)  # ILU(0) reproduces A on its pattern


def test_isai_is_an_approximate_inverse_on_the_pattern():
    A = SPD.toarray()
    M = krylov.isai(A)
    MA = np.stack([np.asarray(M(jnp.asarray(A[:, j]))) for j in range(N)], axis=1)
    pattern = A != 0
    np.testing.assert_allclose(MA[pattern], np.eye(N)[pattern], atol=1e-12)
    y = rhs(N)
    Mdense = np.stack([np.asarray(M(jnp.asarray(e))) for e in np.eye(N)], axis=1)
    np.testing.assert_allclose(M.T(jnp.asarray(y)), Mdense.T @ y, atol=1e-12)


def test_multiple_right_hand_sides_each_converge():
    B = rhs(N, k=3)
    B[:, 2] *= 1e-3  # different scales: each column has its own stopping point
    sol = krylov.cg(jnp.asarray(SPD.toarray()), jnp.asarray(B), rtol=RTOL)
    assert sol.x.shape == (N, 3) and sol.iterations.shape == (3,)
    assert bool(sol.converged.all())
    np.testing.assert_allclose(sol.x, np.linalg.solve(SPD.toarray(), B), rtol=1e-7, atol=1e-12)


def test_batched_systems_by_vmap_over_values_have_their_own_flags():
    A = SPD.toarray()
    scales = jnp.asarray([1.0, 2.0, -1.0])  # the last system is negative definite: CG must not claim success
    As = jnp.asarray(A)[None] * scales[:, None, None]
    b = jnp.asarray(rhs(N))
    sol = jax.jit(jax.vmap(lambda M: krylov.cg(M, b, rtol=RTOL, maxiter=200)))(As)
    assert sol.converged.tolist() == [True, True, False]
    assert int(sol.status[2]) == krylov.Status.BREAKDOWN
    np.testing.assert_allclose(sol.x[1], np.linalg.solve(2 * A, np.asarray(b)), rtol=1e-7)


def test_inside_jit_with_history():
    A = jnp.asarray(SPD.toarray())
    b = jnp.asarray(rhs(N))
    f = jax.jit(lambda A, b: krylov.cg(A, b, rtol=1e-8, maxiter=100, history=True))
    sol = f(A, b)
    k = int(sol.iterations)
    assert sol.history.shape == (101,)
    assert np.isfinite(sol.history[: k + 1]).all() and np.isnan(sol.history[k + 1:]).all()
    assert float(sol.history[k]) == pytest.approx(float(sol.residual_norm))
    assert float(sol.history[0]) == pytest.approx(float(jnp.linalg.norm(b)))


def test_matrix_free_callable():
    A = SPD.toarray()
    Aj = jnp.asarray(A)
    sol = krylov.gmres(lambda v: Aj @ v, jnp.asarray(rhs(N)), rtol=RTOL)
    np.testing.assert_allclose(sol.x, np.linalg.solve(A, rhs(N)), rtol=1e-7)


def test_maxiter_reached_status():
    sol = krylov.cg(jnp.asarray(SPD.toarray()), jnp.asarray(rhs(N)), rtol=1e-12, maxiter=3)
    assert int(sol.iterations) == 3 and int(sol.status) == krylov.Status.MAXITER and not bool(sol.converged)


def test_zero_rhs_converges_immediately():
    sol = krylov.bicgstab(jnp.asarray(NONSYM.toarray()), jnp.zeros(N))
    assert bool(sol.converged) and int(sol.iterations) == 0 and float(jnp.abs(sol.x).max()) == 0


def test_ir_reaches_float64_accuracy_with_float32_inner_solves():
    b = rhs(N)
    sol = krylov.ir(jnp.asarray(NONSYM.toarray()), jnp.asarray(b), rtol=1e-12, inner="bicgstab",
                    inner_dtype=jnp.float32, inner_rtol=1e-3)
    assert bool(sol.converged) and sol.x.dtype == jnp.float64
    assert _relres(NONSYM, sol.x, b) < 1e-11
