"""Iterative refinement: inner solves in a lower precision, residuals in the working precision."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ._common import done, keep_going, new_history, norm, record
from ._solution import final_status


class _IRState(NamedTuple):
    x: jax.Array
    r: jax.Array
    k: jax.Array
    rnorm: jax.Array
    stagnated: jax.Array
    history: jax.Array


def ir_loop(matvec, b, x0, inner_solve: Callable[[jax.Array], jax.Array], tol, maxiter: int, history: bool):
    """``x += inner_solve(b - A x)`` until converged; ``inner_solve`` maps a residual to a correction.

    The inner solve may run in float32 (or bfloat16) while ``x`` and the residual stay in ``b``'s dtype:
    the attainable accuracy is that of the working precision as long as the inner solve reduces the
    residual by a constant factor (classic mixed-precision refinement).
    """
    r0 = b - matvec(x0)
    rnorm0 = norm(r0)
    state = _IRState(x0, r0, jnp.zeros((), jnp.int32), rnorm0, jnp.zeros((), bool),
                     new_history(maxiter, history, rnorm0))

    def cond(s):
        return keep_going(s.rnorm, tol, s.k, maxiter, s.stagnated)

    def body(s):
        d = inner_solve(s.r)
        x = s.x + d.astype(s.x.dtype)
        r = b - matvec(x)
        rnorm = norm(r)
        k = s.k + 1
        stagnated = (rnorm >= s.rnorm) & ~done(rnorm, tol)
        return _IRState(x, r, k, rnorm, stagnated, record(s.history, k, rnorm))

    s = lax.while_loop(cond, body, state)
    status = final_status(s.rnorm, tol, jnp.zeros((), bool), s.stagnated)
    return s.x, s.k, s.rnorm, status, s.history
