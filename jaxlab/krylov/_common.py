"""Pieces every solver loop shares: dot products, the residual history, the stopping tolerance."""

from __future__ import annotations

import jax.numpy as jnp


def dot(a, b):
    """Real inner product (conjugating the first argument for complex dtypes)."""
    return jnp.vdot(a, b)


def norm(a):
    return jnp.sqrt(jnp.real(jnp.vdot(a, a)))


def tolerance(b, rtol, atol):
    """``max(rtol * ||b||, atol)``, SciPy's stopping threshold, in b's real dtype."""
    bnorm = norm(b)
    return jnp.maximum(jnp.asarray(rtol, bnorm.dtype) * bnorm, jnp.asarray(atol, bnorm.dtype))


def done(rnorm, tol):
    """Converged: below the threshold, or exactly zero (also when the threshold is zero)."""
    return (rnorm < tol) | (rnorm == 0)


def keep_going(rnorm, tol, k, maxiter, stop):
    """The loop condition every solver shares: not converged, budget left, no stop flag, finite residual."""
    return (~done(rnorm, tol)) & (k < maxiter) & (~stop) & jnp.isfinite(rnorm)


def new_history(maxiter: int, enabled: bool, rnorm0):
    if not enabled:
        return jnp.zeros((0,), rnorm0.dtype)
    return jnp.full((maxiter + 1,), jnp.nan, rnorm0.dtype).at[0].set(rnorm0)


def record(history, k, rnorm):
    if history.shape[0] == 0:
        return history
    return history.at[k].set(rnorm)


def safe_div(num, den):
    """``num / den`` with 0 where ``den == 0`` (the caller flags a breakdown)."""
    ok = den != 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), 0), ~ok
