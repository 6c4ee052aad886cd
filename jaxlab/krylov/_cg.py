"""Preconditioned conjugate gradients (and flexible CG), following SciPy's recurrence step for step.

Differences from ``jax.scipy.sparse.linalg.cg``: the loop returns iterations, residual norm and a status
(breakdown on non-positive curvature, non-finite values) instead of ``info=None``; the stopping test is
SciPy's (``||r|| < max(rtol ||b||, atol)`` on the recursively updated residual), so iteration counts agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ._common import done, dot, keep_going, new_history, norm, record, safe_div
from ._solution import final_status


class _CGState(NamedTuple):
    x: jax.Array
    r: jax.Array
    z: jax.Array
    p: jax.Array
    rz: jax.Array
    k: jax.Array
    rnorm: jax.Array
    breakdown: jax.Array
    history: jax.Array


def _cg_loop(matvec: Callable, b, x0, precond: Callable, tol, maxiter: int, history: bool, flexible: bool):
    r0 = b - matvec(x0)
    z0 = precond(r0)
    rnorm0 = norm(r0)
    state = _CGState(x=x0, r=r0, z=z0, p=z0, rz=dot(r0, z0), k=jnp.zeros((), jnp.int32), rnorm=rnorm0,
                     breakdown=jnp.zeros((), bool), history=new_history(maxiter, history, rnorm0))

    def cond(s):
        return keep_going(s.rnorm, tol, s.k, maxiter, s.breakdown)

    def body(s):
        q = matvec(s.p)
        pq = dot(s.p, q)
        alpha, zero = safe_div(s.rz, pq)
        curvature_bad = zero | (jnp.real(pq) <= 0)
        x = s.x + alpha * s.p
        r = s.r - alpha * q
        z = precond(r)
        rz_new = dot(r, z)
        # FCG (Notay): Polak-Ribiere beta, robust to a preconditioner that changes between iterations.
        num = dot(r - s.r, z) if flexible else rz_new
        beta, zero_rz = safe_div(num, s.rz)
        p = z + beta * s.p
        rnorm = norm(r)
        k = s.k + 1
        bad = curvature_bad | (zero_rz & ~done(rnorm, tol))
        return _CGState(x, r, z, p, rz_new, k, rnorm, bad, record(s.history, k, rnorm))

    s = lax.while_loop(cond, body, state)
    status = final_status(s.rnorm, tol, s.breakdown)
    return s.x, s.k, s.rnorm, status, s.history


def cg_loop(matvec, b, x0, precond, tol, maxiter, history):
    return _cg_loop(matvec, b, x0, precond, tol, maxiter, history, flexible=False)


def fcg_loop(matvec, b, x0, precond, tol, maxiter, history):
    return _cg_loop(matvec, b, x0, precond, tol, maxiter, history, flexible=True)
