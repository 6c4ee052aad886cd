import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import krylov

from .cases import convection_diffusion, poisson2d, rhs

SPD = poisson2d(4, shift=0.5).toarray()  # n = 16
NONSYM = convection_diffusion(4).toarray()
N = SPD.shape[0]


@pytest.mark.parametrize("method, A", [("cg", SPD), ("gmres", NONSYM), ("bicgstab", NONSYM)])
def test_grad_wrt_b_and_matrix_matches_dense_solve(method, A):
    b = jnp.asarray(rhs(N))
    w = jnp.asarray(rhs(N, seed=5))

    def loss(A, b):
        return jnp.dot(w, krylov.solve(A, b, method=method, rtol=1e-12).x) ** 2

    def loss_ref(A, b):
        return jnp.dot(w, jnp.linalg.solve(A, b)) ** 2

    gA, gb = jax.grad(loss, argnums=(0, 1))(jnp.asarray(A), b)
    rA, rb = jax.grad(loss_ref, argnums=(0, 1))(jnp.asarray(A), b)
    np.testing.assert_allclose(gb, rb, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(gA, rA, rtol=1e-7, atol=1e-10)


def test_grad_matches_finite_differences_with_preconditioner():
    A = jnp.asarray(NONSYM)
    b = jnp.asarray(rhs(N))
    d = jnp.asarray(rhs(N, seed=9))
    P = krylov.ilu0(NONSYM)

    def f(t):
        return jnp.sum(krylov.gmres(A, b + t * d, preconditioner=P, rtol=1e-13).x ** 3)

    g = jax.grad(f)(0.0)
    eps = 1e-6
    fd = (f(eps) - f(-eps)) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-6)


def test_grad_through_matrix_free_closure():
    s = 1.7
    b = jnp.asarray(rhs(N))
    Aj = jnp.asarray(SPD)

    def f(s):
        return jnp.sum(krylov.cg(lambda v: s * (Aj @ v), b, rtol=1e-12).x)

    ref = jax.grad(lambda s: jnp.sum(jnp.linalg.solve(s * Aj, b)))(s)
    np.testing.assert_allclose(jax.grad(f)(s), ref, rtol=1e-7)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"A": np.ones((3, 4)), "b": np.ones(3)}, ValueError, "square"),
    ({"A": SPD, "b": np.ones(N + 1)}, ValueError, "b has"),
    ({"A": SPD, "b": np.ones((N, 2, 2))}, ValueError, "shape"),
    ({"A": SPD, "b": np.ones(N, np.float32)}, TypeError, "dtype"),
    ({"A": SPD, "b": np.arange(N)}, TypeError, "floating"),
    ({"A": SPD, "b": np.full(N, np.nan)}, ValueError, "b contains NaN"),
    ({"A": np.where(np.eye(N) > 0, np.inf, SPD), "b": np.ones(N)}, ValueError, "A contains Inf"),
    ({"A": SPD, "b": np.ones(N), "maxiter": 0}, ValueError, "maxiter"),
    ({"A": SPD, "b": np.ones(N), "method": "gmres", "restart": 0}, ValueError, "restart"),
    ({"A": SPD, "b": np.ones(N), "method": "minres"}, ValueError, "unknown method"),
    ({"A": SPD, "b": np.ones(N), "rtol": -1.0}, ValueError, "rtol must be a finite number >= 0, got -1.0"),
    ({"A": SPD, "b": np.ones(N), "rtol": float("nan")}, ValueError, "rtol must be a finite number >= 0, got nan"),
    ({"A": SPD, "b": np.ones(N), "atol": float("inf")}, ValueError, "atol must be a finite number >= 0"),
    ({"A": SPD, "b": np.ones(N), "atol": "small"}, ValueError, "atol must be a finite number >= 0"),
    ({"A": SPD, "b": np.ones(N), "method": "ir", "inner_rtol": -1.0}, ValueError, "inner_rtol must be"),
    ({"A": SPD, "b": np.ones(N), "method": "ir", "inner_maxiter": 0}, ValueError, "inner_maxiter must be >= 1"),
    ({"A": SPD, "b": np.ones(N), "preconditioner": 123}, TypeError,
     r"preconditioner must be None, one of \[.*'jacobi'.*\] or a callable r -> M r .*got int 123"),
    ({"A": SPD, "b": np.ones(N), "preconditioner": "amg"}, ValueError, "unknown preconditioner"),
    ({"A": SPD - np.diag(np.diag(SPD)), "b": np.ones(N), "preconditioner": "jacobi"}, ValueError, "row 0"),
    ({"A": SPD - np.diag(np.diag(SPD)), "b": np.ones(N), "preconditioner": "ilu0"}, ValueError, "diagonal"),
    ({"A": NONSYM, "b": np.ones(N), "preconditioner": "ic0"}, ValueError, "symmetric"),
])
def test_bad_input_is_refused_clearly(kwargs, exc, match):
    kwargs = dict(kwargs)
    A, b = kwargs.pop("A"), kwargs.pop("b")
    with pytest.raises(exc, match=match):
        krylov.solve(jnp.asarray(A), jnp.asarray(b), **kwargs)


def test_nan_inside_jit_gives_nonfinite_status():
    b = jnp.ones(N).at[3].set(jnp.nan)
    sol = jax.jit(lambda A, b: krylov.cg(A, b))(jnp.asarray(SPD), b)
    assert int(sol.status) == krylov.Status.NONFINITE and not bool(sol.converged)


def test_indefinite_matrix_with_cg_stops_with_breakdown():
    A = np.diag(np.r_[np.ones(N // 2), -np.ones(N // 2)]) + 0.01 * SPD
    sol = krylov.cg(jnp.asarray(A), jnp.ones(N), maxiter=1000)
    assert int(sol.status) in (krylov.Status.BREAKDOWN, krylov.Status.MAXITER)
    assert not bool(sol.converged)


def test_traced_matrix_with_ilu_asks_for_setup_outside_jit():
    with pytest.raises(TypeError, match="outside jit"):
        jax.jit(lambda A: krylov.gmres(A, jnp.ones(N), preconditioner="ilu0").x)(jnp.asarray(NONSYM))


def test_gmres_stagnation_is_reported():
    # A rotation-like matrix: GMRES(1) makes no progress at all.
    A = np.zeros((N, N))
    A[np.arange(N), (np.arange(N) + 1) % N] = 1.0
    b = np.zeros(N)
    b[0] = 1.0
    sol = krylov.gmres(jnp.asarray(A), jnp.asarray(b), restart=1, maxiter=50)
    assert int(sol.status) == krylov.Status.STAGNATION
