"""BiCGSTAB and CGS (right-preconditioned), with SciPy's recurrences and stopping tests."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ._common import done, dot, keep_going, new_history, norm, record, safe_div
from ._solution import final_status


class _BiCGState(NamedTuple):
    x: jax.Array
    r: jax.Array
    p: jax.Array
    v: jax.Array
    rho: jax.Array
    alpha: jax.Array
    omega: jax.Array
    k: jax.Array
    rnorm: jax.Array
    breakdown: jax.Array
    history: jax.Array


def bicgstab_loop(matvec, b, x0, precond, tol, maxiter: int, history: bool):
    r0 = b - matvec(x0)
    rhat = r0
    rnorm0 = norm(r0)
    one = jnp.ones((), r0.dtype)
    zero = jnp.zeros_like(r0)
    state = _BiCGState(x0, r0, zero, zero, one, one, one, jnp.zeros((), jnp.int32), rnorm0,
                       jnp.zeros((), bool), new_history(maxiter, history, rnorm0))

    def cond(s):
        return keep_going(s.rnorm, tol, s.k, maxiter, s.breakdown)

    def body(s):
        rho = dot(rhat, s.r)
        ratio, z1 = safe_div(rho, s.rho)
        ao, z2 = safe_div(s.alpha, s.omega)
        beta = ratio * ao
        p = jnp.where(s.k == 0, s.r, s.r + beta * (s.p - s.omega * s.v))
        phat = precond(p)
        v = matvec(phat)
        alpha, z3 = safe_div(rho, dot(rhat, v))
        sres = s.r - alpha * v
        snorm = norm(sres)
        early = done(snorm, tol)  # converged at the half step: x += alpha phat and stop
        shat = precond(sres)
        t = matvec(shat)
        omega, z4 = safe_div(dot(t, sres), dot(t, t))
        omega = jnp.where(early, s.omega, omega)
        x = s.x + alpha * phat + jnp.where(early, 0, omega) * shat
        r = jnp.where(early, sres, sres - omega * t)
        rnorm = jnp.where(early, snorm, norm(r))
        k = s.k + 1
        first = s.k == 0
        bad = (rho == 0) | (~first & (z1 | z2)) | z3 | (~early & (z4 | (omega == 0)))
        bad = bad & ~done(rnorm, tol)
        return _BiCGState(x, r, p, v, rho, alpha, omega, k, rnorm, bad, record(s.history, k, rnorm))

    s = lax.while_loop(cond, body, state)
    return s.x, s.k, s.rnorm, final_status(s.rnorm, tol, s.breakdown), s.history


class _CGSState(NamedTuple):
    x: jax.Array
    r: jax.Array
    p: jax.Array
    q: jax.Array
    rho: jax.Array
    k: jax.Array
    rnorm: jax.Array
    breakdown: jax.Array
    history: jax.Array


def cgs_loop(matvec, b, x0, precond, tol, maxiter: int, history: bool):
    r0 = b - matvec(x0)
    rtilde = r0
    rnorm0 = norm(r0)
    zero = jnp.zeros_like(r0)
    state = _CGSState(x0, r0, zero, zero, jnp.ones((), r0.dtype), jnp.zeros((), jnp.int32), rnorm0,
                      jnp.zeros((), bool), new_history(maxiter, history, rnorm0))

    def cond(s):
        return keep_going(s.rnorm, tol, s.k, maxiter, s.breakdown)

    def body(s):
        rho = dot(rtilde, s.r)
        beta, z1 = safe_div(rho, s.rho)
        first = s.k == 0
        u = jnp.where(first, s.r, s.r + beta * s.q)
        p = jnp.where(first, s.r, u + beta * (s.q + beta * s.p))
        phat = precond(p)
        vhat = matvec(phat)
        alpha, z2 = safe_div(rho, dot(rtilde, vhat))
        q = u - alpha * vhat
        uhat = precond(u + q)
        x = s.x + alpha * uhat
        r = s.r - alpha * matvec(uhat)
        rnorm = norm(r)
        k = s.k + 1
        bad = ((rho == 0) | (~first & z1) | z2) & ~done(rnorm, tol)
        return _CGSState(x, r, p, q, rho, k, rnorm, bad, record(s.history, k, rnorm))

    s = lax.while_loop(cond, body, state)
    return s.x, s.k, s.rnorm, final_status(s.rnorm, tol, s.breakdown), s.history
