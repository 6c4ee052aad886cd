"""What every solver returns: the solution and how the iteration ended, as arrays usable inside jit."""

from __future__ import annotations

import enum
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Status(enum.IntEnum):
    """How an iteration ended (``Solution.status`` holds these values as int32)."""

    CONVERGED = 0  # residual norm <= max(rtol * ||b||, atol)
    MAXITER = 1  # maxiter reached first
    BREAKDOWN = 2  # a division by zero in the recurrence (or non-positive curvature in CG/FCG)
    STAGNATION = 3  # a restart cycle (GMRES) or refinement step (IR) did not reduce the residual
    NONFINITE = 4  # NaN or Inf appeared (in A, b, the preconditioner or the iterates)


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

    x: jax.Array
    iterations: jax.Array
    residual_norm: jax.Array
    converged: jax.Array
    status: jax.Array
    history: jax.Array | None = None


def status_name(status) -> str:
    """The name of a status code, e.g. ``"CONVERGED"`` (for printing outside jit)."""
    return Status(int(status)).name


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
