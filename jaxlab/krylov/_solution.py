"""What every solver returns: the solution and how the iteration ended, as arrays usable inside jit."""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Inexact, Int, Real


class Status(enum.IntEnum):
    """How an iteration ended (``Solution.status`` holds these values as int32).

    Every value has a :attr:`message` that says what happened and what to change.
    """

    CONVERGED = 0  # residual norm <= max(rtol * ||b||, atol)
    MAXITER = 1  # maxiter reached first
    BREAKDOWN = 2  # a division by zero in the recurrence (or non-positive curvature in CG/FCG)
    STAGNATION = 3  # a restart cycle (GMRES) or refinement step (IR) did not reduce the residual
    NONFINITE = 4  # NaN or Inf appeared (in A, b, the preconditioner or the iterates)

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    Status.CONVERGED: "converged: the residual norm fell below max(rtol * ||b||, atol)",
    Status.MAXITER: "did not converge within maxiter iterations; raise maxiter, loosen rtol/atol, or add a "
                    "preconditioner (e.g. preconditioner='jacobi' or 'ilu0')",
    Status.BREAKDOWN: "broke down: a division by zero in the recurrence, or non-positive curvature in CG/FCG "
                      "(the matrix or the preconditioner is not symmetric positive definite); use "
                      "method='gmres' or 'bicgstab', or another preconditioner",
    Status.STAGNATION: "stagnated: a GMRES restart cycle (or an IR refinement step) did not reduce the residual; "
                       "raise restart, add a preconditioner, or for IR use a smaller inner_rtol or a wider "
                       "inner_dtype",
    Status.NONFINITE: "produced NaN or Inf: check A, b and x0 for non-finite values and the preconditioner for "
                      "zero pivots, or use a better conditioned formulation",
}


class SolveError(RuntimeError):
    """A solve (or the adjoint solve of its gradient) did not converge and ``throw=True`` was asked for.

    A plain call raises this exception itself. Inside jit (or any transformation), and for the adjoint solve
    of a gradient, the check runs on the host through ``jax.debug.callback``, and JAX reports it as a
    ``JaxRuntimeError`` (also a ``RuntimeError``) carrying the same message when the result is computed.
    """


class Solution(NamedTuple):
    """Result of a Krylov solve.

    Attributes:
      x: the approximate solution, shape of ``b``.
      iterations: iterations done (int32; for GMRES the inner iterations over all restarts).
      residual_norm: the 2-norm of the residual ``b - A x`` as tracked by the recurrence.
      converged: bool, ``status == Status.CONVERGED``.
      status: int32, a :class:`Status` value.
      history: residual norms per iteration (length ``maxiter + 1``, NaN after the end) when asked for
        with ``history=True``; otherwise None.
    """

    x: Inexact[Array, "n *k"]
    iterations: Int[Array, "*k"]
    residual_norm: Real[Array, "*k"]
    converged: Bool[Array, "*k"]
    status: Int[Array, "*k"]
    history: Real[Array, "..."] | None = None


def status_name(status: Any) -> str:
    """The name of a status code, e.g. ``"CONVERGED"`` (for printing outside jit)."""
    return Status(int(status)).name


def status_message(status: Any) -> str:
    """What a status code means and what to change, e.g. for ``Status.MAXITER``: raise maxiter, ..."""
    return Status(int(status)).message


def failure_message(status: Any, what: str, settings: str) -> str | None:
    """The error text for the worst non-converged entry of ``status`` (an int array), or None."""
    codes = np.asarray(status).reshape(-1)
    bad = codes[codes != Status.CONVERGED]
    if bad.size == 0:
        return None
    worst = Status(int(bad.max()))
    count = f" ({bad.size} of {codes.size} systems)" if codes.size > 1 else ""
    return f"{what} {worst.name}{count}: {worst.message} [{settings}]"


def final_status(rnorm, tol, breakdown, stagnated=None):
    """Combines the loop's flags into one status code (int32)."""
    converged = (rnorm < tol) | (rnorm == 0)
    nonfinite = ~jnp.isfinite(rnorm)
    status = jnp.asarray(Status.MAXITER, jnp.int32)  # not converged, no other flag: budget ran out
    if stagnated is not None:
        status = jnp.where(stagnated, Status.STAGNATION, status)
    status = jnp.where(breakdown, Status.BREAKDOWN, status)
    status = jnp.where(converged, Status.CONVERGED, status)
    status = jnp.where(nonfinite, Status.NONFINITE, status)
    return status.astype(jnp.int32)


def raise_on_failure(status: jax.Array, what: str, settings: str) -> None:
    """Inside traced code: a host check that raises :class:`SolveError` when ``status`` is not CONVERGED."""

    def check(s):
        msg = failure_message(s, what, settings)
        if msg is not None:
            raise SolveError(msg)

    jax.debug.callback(check, status)
