"""Differentiation through solve (reverse and forward mode, tags, throw, the adjoint's status) and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlab.sparse as jsparse
from jaxlab import fwdgrad, krylov

from ..compile_helpers import quick_jit
from .cases import N, rhs, structure

SPD = structure("spd", "float64").toarray()
NONSYM = structure("nonsym", "float64").toarray()
W = jnp.asarray(rhs(N, seed=5))


def _loss(method, **kw):
    def f(A, b):
        return jnp.sum(jnp.sin(krylov.solve(A, b, method=method, rtol=1e-12, **kw).x) * W)
    return f


def _loss_ref(A, b):
    return jnp.sum(jnp.sin(jnp.linalg.solve(A, b)) * W)


@pytest.mark.parametrize("method, A", [("cg", SPD), ("gmres", NONSYM), ("bicgstab", NONSYM)])
def test_grad_wrt_b_and_matrix_matches_dense_solve(method, A):
    A, b = jnp.asarray(A), jnp.asarray(rhs(N))
    # Both gradients in one compiled program (eager, the backward pass compiles op by op); eager gradients
    # through a solve: test_grad_through_sparse_values_with_ilu..., test_grad_through_matrix_free_closure.
    g, r = quick_jit(lambda A, b: (jax.grad(_loss(method), argnums=(0, 1))(A, b),
                                 jax.grad(_loss_ref, argnums=(0, 1))(A, b)))(A, b)
    for got, want in zip(g, r):
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-10)


def test_forward_mode_jvp_jacfwd_hessian_match_dense_solve():
    A, b = jnp.asarray(NONSYM), jnp.asarray(rhs(N))
    dA, db = jnp.asarray(rhs(N * N, seed=3).reshape(N, N)), jnp.asarray(rhs(N, seed=4))
    f = _loss("bicgstab")
    (y, t), (y_ref, t_ref) = quick_jit(lambda p, t: (jax.jvp(f, p, t), jax.jvp(_loss_ref, p, t)))((A, b), (dA, db))
    np.testing.assert_allclose(y, y_ref, rtol=1e-9)
    np.testing.assert_allclose(t, t_ref, rtol=1e-7)
    S = jnp.asarray(SPD)
    solve_b = lambda b: krylov.cg(S, b, rtol=1e-12).x
    np.testing.assert_allclose(quick_jit(jax.jacfwd(solve_b))(b), np.linalg.inv(SPD), rtol=1e-7, atol=1e-10)
    h, h_ref = quick_jit(lambda b: (jax.hessian(lambda b: _loss("cg")(S, b))(b),
                                  jax.hessian(lambda b: _loss_ref(S, b))(b)))(b)
    np.testing.assert_allclose(h, h_ref, rtol=1e-6, atol=1e-9)


def test_forward_gradient_through_a_solve_is_exact_with_a_full_tangent_basis(getkey):
    A = jnp.asarray(SPD)
    loss = lambda p: jnp.sum(krylov.cg(A, p["b"], rtol=1e-12).x ** 2)
    params = {"b": jnp.asarray(rhs(N))}
    # One jitted program (eager, each step of the estimator compiled on its own took 4.3 CPU-s).
    # The estimator, the loss and the dense reference gradient in the same program.
    (est, val), loss_value, ref = quick_jit(lambda p, key: (
        fwdgrad.forward_gradient(loss, p, key=key, num_tangents=N, aggregation="projection", mode="jvp"),
        loss(p), jax.grad(lambda b: jnp.sum(jnp.linalg.solve(A, b) ** 2))(p["b"])))(params, getkey())
    np.testing.assert_allclose(est["b"], ref, rtol=1e-6)
    assert float(val) == pytest.approx(float(loss_value))


def test_grad_through_sparse_values_with_ilu_uses_the_transposed_preconditioner():
    S = structure("nonsym", "float64")
    A, b = jsparse.CSR.from_scipy(S), jnp.asarray(rhs(N))
    P = krylov.ilu0(A)
    g = jax.grad(lambda d: jnp.sum(krylov.bicgstab(A.with_data(d), b, P, rtol=1e-13).x ** 3))(A.data)
    G = A.with_data(g).to_scipy().toarray()
    ref = quick_jit(jax.grad(lambda M: jnp.sum(jnp.linalg.solve(M, b) ** 3)))(S.toarray())  # one program
    mask = S.toarray() != 0
    np.testing.assert_allclose(G[mask], np.asarray(ref)[mask], rtol=1e-7, atol=1e-12)


def test_grad_through_matrix_free_closure():
    s, b, Aj = 1.7, jnp.asarray(rhs(N)), jnp.asarray(SPD)
    f = lambda s: jnp.sum(krylov.cg(lambda v: s * (Aj @ v), b, rtol=1e-12).x)
    ref = quick_jit(jax.grad(lambda s: jnp.sum(jnp.linalg.solve(s * Aj, b))))(s)
    np.testing.assert_allclose(jax.grad(f)(s), ref, rtol=1e-7)


def test_structure_tags_decide_the_adjoint():
    """Untagged: the adjoint multiplies by A^T. Tagged symmetric: by A itself (so a false tag shows).
    Tagged positive definite: CG solves the adjoint (it would break down on a non-SPD A^T)."""
    A, b = jnp.asarray(NONSYM), jnp.asarray(rhs(N))
    grad = lambda A, b: quick_jit(jax.grad(lambda b: _loss("bicgstab")(A, b)))(b)
    ref_grad = quick_jit(lambda A, b: jax.grad(lambda b: _loss_ref(A, b))(b))  # the references: one program each
    ref = ref_grad(A, b)
    np.testing.assert_allclose(grad(A, b), ref, rtol=1e-7)
    false_tag = grad(krylov.operator(A, symmetric=True), b)
    assert np.abs(false_tag - ref).max() > 1e-3 * np.abs(ref).max()
    S = jnp.asarray(SPD)
    np.testing.assert_allclose(grad(krylov.operator(S, symmetric=True, positive_definite=True), b),
                               ref_grad(S, b), rtol=1e-7)
    seen = []
    indefinite = krylov.operator(jnp.diag(jnp.asarray([1.0, -1.0])), positive_definite=True)  # a false tag
    jax.grad(lambda b: krylov.bicgstab(indefinite, b, adjoint_callback=seen.append).x.sum())(jnp.ones(2))
    assert [int(s.status) for s in seen] == [krylov.Status.BREAKDOWN]  # CG ran the adjoint


def _rotation():
    """A cyclic shift: GMRES(1) converges in one step on b = ones (an eigenvector), stagnates on e_0."""
    A = np.zeros((N, N))
    A[np.arange(N), (np.arange(N) + 1) % N] = 1.0
    return jnp.asarray(A)


def test_gmres_stagnation_is_reported():
    e0 = np.zeros(N)
    e0[0] = 1.0
    sol = quick_jit(lambda A, b: krylov.gmres(A, b, restart=1, maxiter=50))(_rotation(), e0)
    assert int(sol.status) == krylov.Status.STAGNATION


def test_throw_raises_outside_and_inside_jit_with_what_to_change():
    A, b = jnp.asarray(SPD), jnp.asarray(rhs(N))
    with pytest.raises(krylov.SolveError, match="MAXITER.*raise maxiter"):
        krylov.cg(A, b, rtol=1e-12, maxiter=2, throw=True)
    with pytest.raises(RuntimeError, match="MAXITER.*raise maxiter"):
        jax.block_until_ready(quick_jit(lambda A, b: krylov.cg(A, b, rtol=1e-12, maxiter=2, throw=True).x)(A, b))
    sol = krylov.cg(A, b, rtol=1e-12, maxiter=2)  # throw=False: the status says it
    assert int(sol.status) == krylov.Status.MAXITER


def test_failed_adjoint_solve_raises_or_reports_its_status():
    """The forward CG solve converges exactly in one step (b is an eigenvector of eigenvalue 2); the adjoint's
    right-hand side w = (0, 1, 1) has w^T A w = 0, so its CG breaks down at once."""
    A, b, w = jnp.diag(jnp.asarray([2.0, 1.0, -1.0])), jnp.asarray([1.0, 0.0, 0.0]), jnp.asarray([0.0, 1.0, 1.0])
    loss = lambda b, **kw: jnp.sum(krylov.cg(A, b, **kw).x * w)
    assert bool(krylov.cg(A, b).converged)
    seen = []
    quick_jit(jax.grad(lambda b: loss(b, adjoint_callback=seen.append)))(b)
    assert [int(s.status) for s in seen] == [krylov.Status.BREAKDOWN]
    # The adjoint runs inside JAX's backward pass: JAX reports the callback's SolveError as a JaxRuntimeError.
    with pytest.raises(RuntimeError, match="adjoint solve of the gradient: BREAKDOWN.*use method='gmres'"):
        jax.block_until_ready(jax.grad(lambda b: loss(b, throw=True))(b))


def test_every_status_has_a_message():
    messages = {s: krylov.status_message(s) for s in krylov.Status}
    assert len(set(messages.values())) == len(krylov.Status) and all(len(m) > 20 for m in messages.values())
    assert "maxiter" in messages[krylov.Status.MAXITER] and "preconditioner" in messages[krylov.Status.MAXITER]


def test_indefinite_matrix_with_cg_stops_with_breakdown():
    # r0 = p0 = b gives p0^T A p0 = 1 - 1 = 0: zero curvature in the first step.
    sol = krylov.cg(jnp.diag(jnp.asarray([1.0, -1.0])), jnp.ones(2), maxiter=100)
    assert int(sol.status) == krylov.Status.BREAKDOWN and not bool(sol.converged)


def test_nonfinite_check_runs_on_the_device(monkeypatch):
    """No operand is copied to the host whole: only the few flags of the check cross."""
    A, b = jnp.asarray(SPD), jnp.asarray(rhs(N))
    original = type(A).__array__

    def guarded(self, *args, **kwargs):
        if self.size > 8:
            raise AssertionError(f"a host copy of a {self.shape} array")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(A), "__array__", guarded)
    with pytest.raises(ValueError, match="A contains NaN"):
        krylov.cg(A.at[2, 3].set(jnp.nan), b)
    with pytest.raises(ValueError, match="b contains Inf"):
        krylov.cg(A, b.at[0].set(jnp.inf))
    sol = krylov.cg(A, b, rtol=1e-10)
    assert sol.x.shape == (N,)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"A": np.ones((3, 4)), "b": np.ones(3)}, ValueError, "square"),
    ({"A": SPD, "b": np.ones(N + 1)}, ValueError, "b has"),
    ({"A": SPD, "b": np.ones((N, 2, 2))}, ValueError, "shape"),
    ({"A": SPD, "b": np.ones(N, np.float32)}, TypeError, "dtype"),
    ({"A": SPD, "b": np.arange(N)}, TypeError, "floating"),
    ({"A": SPD, "b": np.full(N, np.nan)}, ValueError, "b contains NaN"),
    ({"A": np.where(np.eye(N) > 0, np.inf, SPD), "b": np.ones(N)}, ValueError, "A contains Inf"),
    ({"A": SPD, "b": np.ones(N), "rtol": -1.0}, ValueError, "rtol must be a finite number >= 0"),
    ({"A": SPD, "b": np.ones(N), "rtol": float("nan")}, ValueError, "rtol must be a finite number"),
    ({"A": SPD, "b": np.ones(N), "atol": float("inf")}, ValueError, "atol must be a finite number"),
    ({"A": SPD, "b": np.ones(N), "rtol": "1e-8"}, TypeError, "rtol must be a number"),
    ({"A": SPD, "b": np.ones(N), "maxiter": 0}, ValueError, "maxiter must be >= 1"),
    ({"A": SPD, "b": np.ones(N), "maxiter": 2.5}, TypeError, "maxiter must be an integer"),
    ({"A": SPD, "b": np.ones(N), "method": "gmres", "restart": 0}, ValueError, "restart must be >= 1"),
    ({"A": SPD, "b": np.ones(N), "method": "ir", "inner_rtol": -1.0}, ValueError, "inner_rtol"),
    ({"A": SPD, "b": np.ones(N), "method": "minres"}, ValueError, "unknown method"),
    ({"A": SPD, "b": np.ones(N), "atol": "small"}, TypeError, "atol must be a number"),
    ({"A": SPD, "b": np.ones(N), "method": "ir", "inner_maxiter": 0}, ValueError, "inner_maxiter must be >= 1"),
    ({"A": SPD, "b": np.ones(N), "preconditioner": "amg"}, ValueError, "unknown preconditioner"),
    ({"A": SPD, "b": np.ones(N), "preconditioner": 123}, TypeError,
     r"preconditioner must be None, one of .*a callable r -> M r.*got int 123"),
    ({"A": SPD, "b": np.ones(N), "preconditioner": krylov.Identity(), "preconditioner_options": {"block_size": 2}},
     TypeError, "apply to named preconditioners only"),
    ({"A": "matrix", "b": np.ones(N)}, TypeError, "A must be a jaxlab.sparse matrix"),
    ({"A": SPD - np.diag(np.diag(SPD)), "b": np.ones(N), "preconditioner": "jacobi"}, ValueError, "row 0"),
    ({"A": SPD - np.diag(np.diag(SPD)), "b": np.ones(N), "preconditioner": "ilu0"}, ValueError, "diagonal"),
    ({"A": NONSYM, "b": np.ones(N), "preconditioner": "ic0"}, ValueError, "symmetric"),
])
@pytest.mark.usefixtures("without_typechecks")  # our messages, as users see them (test_typecheck.py: the checks)
def test_bad_input_is_refused_clearly(kwargs, exc, match):
    kwargs = dict(kwargs)
    A, b = kwargs.pop("A"), kwargs.pop("b")
    A = jnp.asarray(A) if isinstance(A, np.ndarray) else A
    with pytest.raises(exc, match=match):
        krylov.solve(A, jnp.asarray(b), **kwargs)


def test_matrix_free_with_a_named_preconditioner_is_refused():
    with pytest.raises(TypeError, match="needs the matrix entries"):
        krylov.cg(lambda v: v, jnp.ones(N), preconditioner="ilu0")


def test_nan_inside_jit_gives_nonfinite_status():
    b = jnp.ones(N).at[3].set(jnp.nan)
    sol = quick_jit(lambda A, b: krylov.cg(A, b))(jnp.asarray(SPD), b)
    assert int(sol.status) == krylov.Status.NONFINITE and not bool(sol.converged)


def test_traced_matrix_with_ilu_asks_for_setup_outside_jit():
    with pytest.raises(TypeError, match="outside jit"):
        quick_jit(lambda A: krylov.gmres(A, jnp.ones(N), preconditioner="ilu0").x)(jnp.asarray(NONSYM))
