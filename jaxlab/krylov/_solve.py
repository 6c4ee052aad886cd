"""``solve`` and the named solvers: validation, preconditioner setup, multi-RHS, and differentiation.

Every solve is one ``lax.custom_linear_solve``: the Krylov loop is its ``solve``, and a second loop on
``A^T`` its ``transpose_solve``. So reverse mode (``grad``, ``vjp``) runs one adjoint solve, forward mode
(``jvp``, ``jacfwd``, ``hessian``, forward gradients) runs one tangent solve per tangent, and gradients with
respect to the matrix values flow through ``A``'s product (the sparse product's own JVP and transpose rules),
never through the iterations. The structure tags of the :class:`Operator` decide the adjoint: ``symmetric``
reuses ``A`` and the preconditioner; otherwise the adjoint multiplies by ``A^T`` and uses ``M.T``.
"""

from __future__ import annotations

import inspect
import math
from functools import partial
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
from jax.core import Tracer
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import ArrayLike, Inexact

from ._bicgstab import bicgstab_loop, cgs_loop
from ._cg import cg_loop, fcg_loop
from ._common import tolerance
from ._gmres import gmres_loop
from ._ir import ir_loop
from ._operator import Operator, check_system, operator
from ._precond import AbstractPreconditioner, cast_preconditioner, make_preconditioner, transpose_preconditioner
from ._solution import Solution, SolveError, Status, failure_message, raise_on_failure

METHODS = ("cg", "bicgstab", "gmres", "cgs", "fcg", "ir")
_LOOPS = {"cg": cg_loop, "fcg": fcg_loop, "bicgstab": bicgstab_loop, "cgs": cgs_loop}
_COMPLEX_OF = {"bfloat16": "complex64", "float16": "complex64", "float32": "complex64", "float64": "complex128"}


class _Config(NamedTuple):
    """Static solver settings (hashable: part of the jit cache key)."""

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
    throw_forward: bool  # raise through a host callback (traced calls; eager calls check afterwards)
    throw_adjoint: bool
    adjoint_callback: Callable[[Solution], Any] | None

    def settings(self) -> str:
        return f"method={self.method!r}, rtol={self.rtol:g}, atol={self.atol:g}, maxiter={self.maxiter}"


def _loop(cfg: _Config, mv, M, b, x0):
    tol = tolerance(b, cfg.rtol, cfg.atol)
    if cfg.method == "gmres":
        return gmres_loop(mv, b, x0, M, tol, cfg.maxiter, cfg.history, cfg.restart)
    return _LOOPS[cfg.method](mv, b, x0, M, tol, cfg.maxiter, cfg.history)


def _low_dtype(cfg: _Config, dtype) -> jnp.dtype:
    if cfg.inner_dtype is None:
        return jnp.dtype(dtype)
    low = jnp.dtype(cfg.inner_dtype)
    if jnp.issubdtype(dtype, jnp.complexfloating) and not jnp.issubdtype(low, jnp.complexfloating):
        low = jnp.dtype(_COMPLEX_OF[low.name])
    return low


def _forward(cfg: _Config, op: Operator, mv, M, b, x0):
    if cfg.method != "ir":
        return _loop(cfg, mv, M, b, x0)
    low = _low_dtype(cfg, b.dtype)
    op_low = op.astype(low, b.dtype)
    M_low = cast_preconditioner(M, low, b.dtype)
    inner_cfg = cfg._replace(method=cfg.inner, rtol=cfg.inner_rtol, atol=0.0, maxiter=cfg.inner_maxiter,
                             history=False)

    def inner_solve(r):
        r_low = r.astype(low)
        x, *_ = _loop(inner_cfg, op_low.mv, M_low, r_low, jnp.zeros_like(r_low))
        return x

    return ir_loop(mv, b, x0, inner_solve, tolerance(b, cfg.rtol, cfg.atol), cfg.maxiter, cfg.history)


def _adjoint_config(cfg: _Config, op: Operator, n: int) -> _Config:
    method = cfg.inner if cfg.method == "ir" else cfg.method
    if op.positive_definite:  # A^T is Hermitian positive definite too: CG is the cheapest safe choice
        method = "cg"
    budget = cfg.maxiter * (cfg.inner_maxiter if cfg.method == "ir" else 1)
    return cfg._replace(method=method, atol=0.0, history=False, maxiter=max(budget, 10 * n))


def _solve_one(cfg: _Config, op: Operator, M: AbstractPreconditioner, b, x0):
    """One right-hand side: the forward loop and its adjoint, tied together by ``custom_linear_solve``."""
    hist_len = cfg.maxiter + 1 if cfg.history else 0
    real = jnp.finfo(b.dtype).dtype

    def forward(matvec, rhs):
        x, k, rnorm, status, hist = _forward(cfg, op, matvec, M, rhs, x0)
        if cfg.throw_forward:
            raise_on_failure(status, "krylov.solve:", cfg.settings())
        return x, (k, rnorm, status, hist)

    def adjoint(vecmat, rhs):
        acfg = _adjoint_config(cfg, op, rhs.shape[0])
        Mt = M if op.symmetric else transpose_preconditioner(M, rhs)
        lam, k, rnorm, status, _ = _loop(acfg, vecmat, Mt, rhs, jnp.zeros_like(rhs))
        if cfg.throw_adjoint:
            raise_on_failure(status, "krylov.solve, adjoint solve of the gradient:", acfg.settings())
        if cfg.adjoint_callback is not None:
            sol = Solution(lam, k, rnorm, status == Status.CONVERGED, status)
            jax.debug.callback(cfg.adjoint_callback, sol)
        return lam, (k, rnorm, status, jnp.full((hist_len,), jnp.nan, real))

    x, (k, rnorm, status, hist) = lax.custom_linear_solve(
        op.mv, b, forward, adjoint, symmetric=op.symmetric, has_aux=True)
    return x, k, rnorm, status, hist


def _run(cfg: _Config, op: Operator, M: AbstractPreconditioner, b, x0):
    one = partial(_solve_one, cfg, op, M)
    if b.ndim == 2:
        return jax.vmap(one, in_axes=(1, 1), out_axes=(1, 0, 0, 0, 0))(b, x0)
    return one(b, x0)


# -- one compiled runner per settings, structure and shapes -----------------------------------------------------

def _is_array(leaf) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic))


class _Static:
    """A non-array pytree leaf (a function, a Python number) as part of the jit cache key."""

    def __init__(self, value):
        self.value = value
        try:
            self._key = (type(value), hash(value))
            self._by_value = True
        except TypeError:
            self._key, self._by_value = (type(value), id(value)), False

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        if not isinstance(other, _Static) or self._key != other._key:
            return False
        return self.value is other.value or (self._by_value and bool(self.value == other.value))


def _split(tree):
    leaves, treedef = jax.tree.flatten(tree)
    dynamic = [leaf if _is_array(leaf) else None for leaf in leaves]
    static = tuple(None if _is_array(leaf) else _Static(leaf) for leaf in leaves)
    return dynamic, (treedef, static)


def _merge(static, dynamic):
    treedef, fixed = static
    leaves = [d if s is None else s.value for d, s in zip(dynamic, fixed)]
    return jax.tree.unflatten(treedef, leaves)


@partial(jax.jit, static_argnums=(0, 1))
def _run_jit(cfg, static, dynamic, b, x0):
    op, M = _merge(static, dynamic)
    return _run(cfg, op, M, b, x0)


@jax.jit
def _finite_flags(leaf):
    return jnp.stack([jnp.isnan(leaf).any(), jnp.isinf(leaf).any()])


def _nonfinite_inputs(named: dict[str, Any]) -> tuple[str, str] | None:
    """On the device: which input holds NaN or Inf (one small transfer for all of them), or None."""
    flags, names = [], []
    for name, tree in named.items():
        for leaf in jax.tree.leaves(tree):
            if _is_array(leaf) and jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact):
                flags.append(_finite_flags(leaf))
                names.append(name)
    if not flags:
        return None
    host = np.asarray(jax.device_get(jnp.stack(flags)))
    for name, (nan, inf) in zip(names, host):
        if nan or inf:
            return name, "NaN" if nan else "Inf"
    return None


# -- validation ----------------------------------------------------------------------------------------------------

def _number(name: str, value: Any, example: str) -> float:
    if isinstance(value, Tracer):
        raise TypeError(f"{name} must be a Python number (it is part of the compiled solver), not a traced value")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) and not (
            isinstance(value, (jax.Array, np.ndarray)) and np.ndim(value) == 0):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}; e.g. {name}={example}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {v}; e.g. {name}={example}")
    return v


def _count(name: str, value: Any, example: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= 1, got {type(value).__name__} {value!r}; e.g. "
                        f"{name}={example}")
    if int(value) < 1:
        raise ValueError(f"{name} must be >= 1, got {int(value)}; e.g. {name}={example}")
    return int(value)


def solve(
    A: Any,
    b: Inexact[ArrayLike, " n"] | Inexact[ArrayLike, "n k"],
    method: str = "cg",
    preconditioner: Any = None,
    *,
    rtol: float = 1e-5,
    atol: float = 0.0,
    maxiter: int | None = None,
    x0: Inexact[ArrayLike, " n"] | Inexact[ArrayLike, "n k"] | None = None,
    restart: int = 30,
    history: bool = False,
    preconditioner_options: dict | None = None,
    inner: str = "cg",
    inner_dtype: Any = jnp.float32,
    inner_rtol: float = 1e-3,
    inner_maxiter: int = 100,
    throw: bool = False,
    adjoint_callback: Callable[[Solution], Any] | None = None,
) -> Solution:
    r"""Solves ``A x = b`` with a Krylov method.

    Stops when :math:`\|b - A x\|_2 < \max(\text{rtol}\,\|b\|_2, \text{atol})` (SciPy's criterion) or after
    ``maxiter`` iterations. Works inside ``jit`` and ``vmap`` (batches of systems sharing a pattern: vmap over
    the matrix values and ``b``; each system stops on its own). Real and complex dtypes.

    Differentiation: ``jax.grad``/``vjp`` run one adjoint solve ``A^T lam = g`` (implicit differentiation,
    never through the iterations); ``jax.jvp``/``jacfwd``/``hessian`` run one tangent solve per tangent. Both
    reach ``b`` and the matrix values (``jax.grad(lambda v: f(solve(A.with_data(v), b)))(A.data)``) or the
    arrays a matrix-free function closes over. The adjoint uses ``A`` itself when ``A`` is tagged symmetric
    (``krylov.operator(A, symmetric=True)``), else ``A^T``; CG when tagged positive definite, else the forward
    method; the preconditioner's ``.T`` (for a user function: ``jax.linear_transpose`` of it, or no
    preconditioner if it is not linear).

    Args:
      A: a jaxlab sparse matrix (any format), a SciPy sparse matrix (converted to the default format), a
        dense ``(n, n)`` array, a callable ``x -> A x`` (matrix-free: a function, a
        ``jax.tree_util.Partial``, any callable pytree) or an :class:`Operator` with structure tags.
      b: right-hand side, shape ``(n,)`` or ``(n, k)`` (k systems, each with its own convergence).
      method: ``"cg"``, ``"bicgstab"``, ``"gmres"``, ``"cgs"``, ``"fcg"`` or ``"ir"``.
      preconditioner: None, ``"jacobi"``, ``"block_jacobi"``, ``"ilu0"``, ``"ic0"``, ``"isai"``, an object
        from :func:`make_preconditioner`, a matrix approximating ``A^-1``, an :class:`Operator`, or any
        callable ``r -> M r`` (a function or ``jax.tree_util.Partial``; pass a Partial to reuse compilations).
      rtol, atol: relative and absolute residual tolerances (finite, >= 0).
      maxiter: iteration limit >= 1 (default ``10 n``); for GMRES it counts inner iterations over all restarts.
      x0: initial guess (default zeros).
      restart: GMRES restart length (>= 1).
      history: also return the residual norm of every iteration (``Solution.history``).
      preconditioner_options: options for a named preconditioner (``block_size``, ``triangular``).
      inner, inner_dtype, inner_rtol, inner_maxiter: for ``method="ir"``: the inner solver, its precision
        (default float32; complex64 for complex systems) and its stopping rule; the residual is computed in
        ``b``'s precision.
      throw: raise :class:`SolveError` when the solve, or the adjoint solve of a gradient, ends in any status
        but ``CONVERGED``, with a message that says what to change. A plain call (outside any transformation)
        raises it itself; inside ``jit``/``vmap``/``grad`` (and always for the adjoint solve, which runs in
        JAX's backward pass) a host callback raises it and JAX reports a ``JaxRuntimeError`` (a
        ``RuntimeError``) with that message when the result is computed. With ``throw=False`` (the default)
        the status is returned in the :class:`Solution`, and the adjoint's only through ``adjoint_callback``.
      adjoint_callback: called on the host (``jax.debug.callback``) with the adjoint solve's
        :class:`Solution` every time a reverse-mode pass runs it, inside jit too: the way to see the adjoint's
        status without raising.

    Returns:
      A :class:`Solution`.

    Raises:
      ValueError / TypeError: for a non-square ``A``, a ``b`` of the wrong shape or dtype, NaN or Inf in a
        concrete ``A``, ``b`` or ``x0`` (inside jit they give ``Status.NONFINITE`` instead), a negative or
        non-finite ``rtol``/``atol``, ``maxiter < 1``, ``restart < 1``, an unknown method, a preconditioner of
        an unknown kind, or a preconditioner whose setup fails.
      SolveError: with ``throw=True``, outside jit, when the solve does not converge.

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
    op = operator(A)
    b = jnp.asarray(b)
    check_system(op, b)
    n = b.shape[0]
    rtol = _number("rtol", rtol, "1e-8")
    atol = _number("atol", atol, "0.0")
    maxiter = 10 * n if maxiter is None else _count("maxiter", maxiter, str(10 * n))
    restart = _count("restart", restart, "30")
    if method == "ir":
        if inner not in METHODS[:-1]:
            raise ValueError(f"inner must be one of {list(METHODS[:-1])}, got {inner!r}")
        inner_rtol = _number("inner_rtol", inner_rtol, "1e-3")
        inner_maxiter = _count("inner_maxiter", inner_maxiter, "100")
    if not isinstance(throw, (bool, np.bool_)):
        raise TypeError(f"throw must be True or False, got {throw!r}")
    if adjoint_callback is not None and not callable(adjoint_callback):
        raise TypeError(f"adjoint_callback must be a callable taking a Solution, got {type(adjoint_callback).__name__}")
    if x0 is None:
        x0 = jnp.zeros_like(b)
    else:
        x0 = jnp.asarray(x0)
        if x0.shape != b.shape or x0.dtype != b.dtype:
            raise ValueError(f"x0 has shape {x0.shape} and dtype {x0.dtype}, b has {b.shape} and {b.dtype}: they "
                             "must match")
    if isinstance(preconditioner, str) and not op.is_matrix:
        raise TypeError(f"preconditioner={preconditioner!r} needs the matrix entries, but A is a callable "
                        "(matrix-free); pass A as a matrix, or give a callable preconditioner")
    M = make_preconditioner(op, preconditioner, **(preconditioner_options or {}))
    traced = any(isinstance(leaf, Tracer) for leaf in jax.tree.leaves((op, M, b, x0)))
    if not traced:
        bad = _nonfinite_inputs({"b": b, "A": op if op.is_matrix else None, "x0": x0})
        if bad:
            raise ValueError(f"{bad[0]} contains {bad[1]}; remove it (inside jit the solve returns status "
                             "NONFINITE instead)")
    cfg = _Config(method, rtol, atol, maxiter, bool(history), restart, inner,
                  None if inner_dtype is None else jnp.dtype(inner_dtype).name, float(inner_rtol),
                  int(inner_maxiter), bool(throw) and traced, bool(throw), adjoint_callback)
    # Always through the jitted runner: eager calls compile once per settings and shapes, transformed calls
    # (jvp, grad, vmap outside jit) run as one compiled program, and inside jit it is inlined.
    dynamic, static = _split((op, M))
    x, k, rnorm, status, hist = _run_jit(cfg, static, dynamic, b, x0)
    if throw and not traced:
        msg = failure_message(jax.device_get(status), "krylov.solve:", cfg.settings())
        if msg is not None:
            raise SolveError(msg)
    return Solution(x=x, iterations=k, residual_norm=rnorm, converged=status == Status.CONVERGED, status=status,
                    history=hist if history else None)


def _named(method: str):
    def solver(A: Any, b: Inexact[ArrayLike, " n"] | Inexact[ArrayLike, "n k"], preconditioner: Any = None, **kwargs: Any) -> Solution:
        return solve(A, b, method, preconditioner, **kwargs)

    solver.__name__ = solver.__qualname__ = method
    solver.__doc__ = f"``solve(A, b, method={method!r}, ...)``; see :func:`solve` for the arguments."
    params = [p for p in inspect.signature(solve).parameters.values() if p.name != "method"]
    solver.__signature__ = inspect.Signature(params, return_annotation=Solution)  # type: ignore[attr-defined]
    return solver


cg = _named("cg")
bicgstab = _named("bicgstab")
gmres = _named("gmres")
cgs = _named("cgs")
fcg = _named("fcg")
ir = _named("ir")
