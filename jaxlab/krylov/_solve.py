"""``solve`` and the named solvers: validation, preconditioner setup, multi-RHS, implicit differentiation."""

from __future__ import annotations

import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxlab.sparse as jsparse

from ._bicgstab import bicgstab_loop, cgs_loop
from ._cg import cg_loop, fcg_loop
from ._common import tolerance
from ._gmres import gmres_loop
from ._ir import ir_loop
from ._operator import check_system, operator_shape
from ._precond import Identity, make_preconditioner
from ._solution import Solution, Status

METHODS = ("cg", "bicgstab", "gmres", "cgs", "fcg", "ir")
_SYMMETRIC = ("cg", "fcg")


class _Config(NamedTuple):
    """Static solver settings (hashable: a nondiff argument of the custom VJP)."""

    method: str
    rtol: float
    atol: float
    maxiter: int
    history: bool
    restart: int
    inner: str
    inner_dtype: str | None
    inner_rtol: float
    inner_maxiter: int


def _is_scipy_sparse(A) -> bool:
    return type(A).__module__.startswith("scipy.sparse")


def _is_callable_operator(A) -> bool:
    return callable(A) and not hasattr(A, "shape")


def _apply(A, x):
    return A(x) if _is_callable_operator(A) else A @ x


def _apply_t(A, y):
    return A.T @ y


def _cast_tree(tree, dtype):
    return jax.tree.map(lambda l: l.astype(dtype) if jnp.issubdtype(jnp.asarray(l).dtype, jnp.floating) else l, tree)


def _astype(A, dtype):
    if hasattr(A, "astype"):
        return A.astype(dtype)
    return _cast_tree(A, dtype)


def _loop(cfg: _Config, mv, M, b, x0):
    tol = tolerance(b, cfg.rtol, cfg.atol)
    m = cfg.method
    if m == "cg":
        return cg_loop(mv, b, x0, M, tol, cfg.maxiter, cfg.history)
    if m == "fcg":
        return fcg_loop(mv, b, x0, M, tol, cfg.maxiter, cfg.history)
    if m == "bicgstab":
        return bicgstab_loop(mv, b, x0, M, tol, cfg.maxiter, cfg.history)
    if m == "cgs":
        return cgs_loop(mv, b, x0, M, tol, cfg.maxiter, cfg.history)
    if m == "gmres":
        return gmres_loop(mv, b, x0, M, tol, cfg.maxiter, cfg.history, cfg.restart)
    raise ValueError(f"unknown method {m!r}")


def _forward(cfg: _Config, A, M, b, x0):
    mv = partial(_apply, A)
    if cfg.method != "ir":
        return _loop(cfg, mv, M, b, x0)
    low = jnp.dtype(cfg.inner_dtype) if cfg.inner_dtype else b.dtype
    A_low = A if _is_callable_operator(A) else _astype(A, low)
    M_low = _cast_tree(M, low)
    inner_cfg = cfg._replace(method=cfg.inner, rtol=cfg.inner_rtol, atol=0.0, maxiter=cfg.inner_maxiter,
                             history=False)

    def mv_low(v):
        if _is_callable_operator(A):
            return A(v.astype(b.dtype)).astype(low)
        return A_low @ v

    def inner_solve(r):
        r_low = r.astype(low)
        x, *_ = _loop(inner_cfg, mv_low, M_low, r_low, jnp.zeros_like(r_low))
        return x

    return ir_loop(mv, b, x0, inner_solve, tolerance(b, cfg.rtol, cfg.atol), cfg.maxiter, cfg.history)


def _zero_cotangent(tree):
    def z(l):
        l = jnp.asarray(l)
        if jnp.issubdtype(l.dtype, jnp.inexact):
            return jnp.zeros_like(l)
        return np.zeros(l.shape, jax.dtypes.float0)
    return jax.tree.map(z, tree)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _matrix_solve(cfg: _Config, A, M, b, x0):
    return _forward(cfg, A, M, b, x0)


def _matrix_solve_fwd(cfg, A, M, b, x0):
    out = _forward(cfg, A, M, b, x0)
    return out, (A, M, out[0], b)


def _matrix_solve_bwd(cfg, res, cts):
    A, M, x, b = res
    gx = cts[0]
    # Adjoint system A^T lam = gx, by the same method (CG/FCG assume A symmetric).
    if cfg.method in _SYMMETRIC:
        mv_t, Mt = partial(_apply, A), M
    else:
        mv_t, Mt = partial(_apply_t, A), M.T
    adj_cfg = cfg._replace(history=False, atol=0.0)
    if cfg.method == "ir":
        adj_cfg = adj_cfg._replace(method="gmres" if cfg.inner not in _SYMMETRIC else cfg.inner)
    lam, *_ = _loop(adj_cfg._replace(maxiter=max(cfg.maxiter, 10 * b.shape[0])), mv_t, Mt, gx, jnp.zeros_like(gx))
    _, vjp_a = jax.vjp(lambda A_: _apply(A_, x), A)
    (dA,) = vjp_a(-lam)
    return dA, _zero_cotangent(M), lam, jnp.zeros_like(x)


_matrix_solve.defvjp(_matrix_solve_fwd, _matrix_solve_bwd)


def _callable_solve(cfg: _Config, A, M, b, x0):
    """Matrix-free: differentiate with ``lax.custom_linear_solve`` (gradients flow to b and A's closure)."""

    def run(matvec, rhs):
        x, k, rnorm, status, hist = _loop(cfg if cfg.method != "ir" else cfg._replace(method="gmres"),
                                          matvec, M, rhs, x0)
        return x, (k, rnorm, status, hist)

    x, (k, rnorm, status, hist) = lax.custom_linear_solve(
        A, b, run, transpose_solve=run, symmetric=cfg.method in _SYMMETRIC, has_aux=True)
    return x, k, rnorm, status, hist


def _concrete_nonfinite(tree) -> str | None:
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, jax.core.Tracer):
            return None
        arr = np.asarray(leaf)
        if np.issubdtype(arr.dtype, np.inexact) and not np.isfinite(arr).all():
            return "NaN" if np.isnan(arr).any() else "Inf"
    return None


def solve(
    A: Any,
    b: jax.Array,
    method: str = "cg",
    preconditioner: Any = None,
    *,
    rtol: float = 1e-5,
    atol: float = 0.0,
    maxiter: int | None = None,
    x0: jax.Array | None = None,
    restart: int = 30,
    history: bool = False,
    preconditioner_options: dict | None = None,
    inner: str = "cg",
    inner_dtype: Any = jnp.float32,
    inner_rtol: float = 1e-3,
    inner_maxiter: int = 100,
) -> Solution:
    r"""Solves ``A x = b`` with a Krylov method.

    Stops when :math:`\|b - A x\|_2 < \max(\text{rtol}\,\|b\|_2, \text{atol})` (SciPy's criterion) or after
    ``maxiter`` iterations. Works inside ``jit`` and ``vmap`` (batches of systems sharing a pattern: vmap over
    the matrix values and ``b``; each system stops on its own). ``jax.grad`` flows to ``b`` and to the
    matrix values through the adjoint solve (implicit differentiation), never through the iterations.

    Args:
      A: a jaxlab sparse matrix (any format), a SciPy sparse matrix (converted to the default format), a
        dense ``(n, n)`` array, or a callable ``x -> A x`` (matrix-free). Gradients with respect to a sparse
        matrix are taken through its values: ``jax.grad(lambda v: f(solve(A.with_data(v), b)))(A.data)``.
      b: right-hand side, shape ``(n,)`` or ``(n, k)`` (k systems, each with its own convergence).
      method: ``"cg"``, ``"bicgstab"``, ``"gmres"``, ``"cgs"``, ``"fcg"`` or ``"ir"``.
      preconditioner: None, ``"jacobi"``, ``"block_jacobi"``, ``"ilu0"``, ``"ic0"``, ``"isai"``, an object
        from :func:`make_preconditioner`, or any callable ``r -> M r`` approximating ``A^-1 r``.
      rtol, atol: relative and absolute residual tolerances.
      maxiter: iteration limit (default ``10 n``); for GMRES it counts inner iterations over all restarts.
      x0: initial guess (default zeros).
      restart: GMRES restart length.
      history: also return the residual norm of every iteration (``Solution.history``).
      preconditioner_options: options for the preconditioner builder (``block_size``, ``triangular``).
      inner, inner_dtype, inner_rtol, inner_maxiter: for ``method="ir"``: the inner solver, its precision
        (default float32) and its stopping rule; the residual is computed in ``b``'s precision.

    Returns:
      A :class:`Solution`.

    Raises:
      ValueError / TypeError: for a non-square ``A``, a ``b`` of the wrong shape or dtype, NaN or Inf in a
        concrete ``A`` or ``b`` (inside jit they give ``Status.NONFINITE`` instead), ``maxiter < 1``,
        ``restart < 1``, an unknown method or preconditioner, or a preconditioner whose setup fails.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxlab import krylov
      >>> A = jnp.array([[4.0, 1.0], [1.0, 3.0]])
      >>> sol = krylov.solve(A, jnp.array([1.0, 2.0]), method="cg", rtol=1e-6)
      >>> bool(sol.converged), int(sol.iterations)
      (True, 2)
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
    b = jnp.asarray(b)
    if not _is_callable_operator(A) and isinstance(A, np.ndarray):
        A = jnp.asarray(A)
    elif _is_scipy_sparse(A):
        A = jsparse.from_scipy(A)
    check_system(A, b)
    n = operator_shape(A, b)[0]
    if maxiter is None:
        maxiter = 10 * n
    if int(maxiter) < 1:
        raise ValueError(f"maxiter must be >= 1, got {maxiter}")
    if int(restart) < 1:
        raise ValueError(f"restart must be >= 1, got {restart}")
    if int(inner_maxiter) < 1:
        raise ValueError(f"inner_maxiter must be >= 1, got {inner_maxiter}")
    for name, value in (("rtol", rtol), ("atol", atol), ("inner_rtol", inner_rtol)):
        try:
            ok = math.isfinite(float(value)) and float(value) >= 0
        except (TypeError, ValueError, jax.errors.ConcretizationTypeError):
            ok = False
        if not ok:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if method == "ir" and inner not in METHODS[:-1]:
        raise ValueError(f"inner must be one of {list(METHODS[:-1])}, got {inner!r}")
    for name, value in (("b", b), ("A", None if _is_callable_operator(A) else A), ("x0", x0)):
        bad = _concrete_nonfinite(value) if value is not None else None
        if bad:
            raise ValueError(f"{name} contains {bad}; remove it (in jit the solve returns status NONFINITE)")
    if x0 is None:
        x0 = jnp.zeros_like(b)
    else:
        x0 = jnp.asarray(x0, b.dtype)
        if x0.shape != b.shape:
            raise ValueError(f"x0 has shape {x0.shape}, b has {b.shape}: they must match")
    M = preconditioner
    if M is None or isinstance(M, str) or not callable(M):  # make_preconditioner says what M may be
        M = make_preconditioner(A, M, **(preconditioner_options or {}))
    cfg = _Config(method, float(rtol), float(atol), int(maxiter), bool(history), int(restart), inner,
                  None if inner_dtype is None else jnp.dtype(inner_dtype).name, float(inner_rtol),
                  int(inner_maxiter))
    if _is_callable_operator(A):
        x, k, rnorm, status, hist = _dispatch(cfg, A, M, b, x0)
    else:
        if not hasattr(M, "T") and cfg.method not in _SYMMETRIC:
            M = _NoTranspose(M)
        if _is_pytree_operator(M):
            x, k, rnorm, status, hist = _dispatch_jit(cfg, A, M, b, x0)
        else:  # a plain Python callable preconditioner cannot be a jit argument
            x, k, rnorm, status, hist = _dispatch(cfg, A, M, b, x0)
    return Solution(x=x, iterations=k, residual_norm=rnorm, converged=status == Status.CONVERGED, status=status,
                    history=hist if history else None)


def _dispatch(cfg: _Config, A, M, b, x0):
    run = partial(_callable_solve if _is_callable_operator(A) else _matrix_solve, cfg, A, M)
    if b.ndim == 2:
        return jax.vmap(run, in_axes=(1, 1), out_axes=(1, 0, 0, 0, 0))(b, x0)
    return run(b, x0)


# Eager calls reuse the compiled solver for the same settings and shapes instead of retracing.
_dispatch_jit = jax.jit(_dispatch, static_argnums=(0,))


def _is_pytree_operator(M) -> bool:
    leaves, treedef = jax.tree.flatten(M)
    return not (treedef.num_leaves == 1 and leaves and leaves[0] is M and not hasattr(M, "shape"))


class _NoTranspose:
    """A user callable preconditioner without ``.T``: the adjoint solve runs unpreconditioned."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, x):
        return self.fn(x)

    @property
    def T(self):
        return Identity()


def _named(method: str):
    def solver(A, b, preconditioner=None, **kwargs) -> Solution:
        return solve(A, b, method=method, preconditioner=preconditioner, **kwargs)

    solver.__name__ = solver.__qualname__ = method
    solver.__doc__ = f"``solve(A, b, method={method!r}, ...)``; see :func:`solve` for the arguments."
    return solver


cg = _named("cg")
bicgstab = _named("bicgstab")
gmres = _named("gmres")
cgs = _named("cgs")
fcg = _named("fcg")
ir = _named("ir")
