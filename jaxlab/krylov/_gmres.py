"""Restarted GMRES, right-preconditioned, with classical Gram-Schmidt (reorthogonalised when needed) and Givens rotations.

Differences from ``jax.scipy.sparse.linalg.gmres``: ``maxiter`` counts inner iterations over all restarts
(as Ginkgo does; SciPy counts restart cycles), the residual at the end of each cycle is recomputed as
``b - A x`` so convergence is judged on the true residual, a cycle that does not reduce the residual is
reported as ``STAGNATION`` instead of looping silently (jax#15837), and orthogonalisation is classical
Gram-Schmidt with a conditional second pass (two
matrix-vector products with the basis, the second only when the first lost more than half the norm;
as stable as modified Gram-Schmidt and vectorised).
Real dtypes only.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ._common import done, keep_going, new_history, norm, record
from ._solution import final_status


class _Outer(NamedTuple):
    x: jax.Array
    r: jax.Array
    k: jax.Array
    rnorm: jax.Array
    stagnated: jax.Array
    history: jax.Array


class _Inner(NamedTuple):
    j: jax.Array
    V: jax.Array
    R: jax.Array
    cs: jax.Array
    sn: jax.Array
    g: jax.Array
    k: jax.Array
    happy: jax.Array
    history: jax.Array


def _apply_rotations(col, cs, sn, j):
    """Applies the first ``j`` Givens rotations to a Hessenberg column (sequential by nature)."""

    def rot(i, c):
        a, b = c[i], c[i + 1]
        t = cs[i] * a + sn[i] * b
        u = -sn[i] * a + cs[i] * b
        keep = i < j
        return c.at[i].set(jnp.where(keep, t, a)).at[i + 1].set(jnp.where(keep, u, b))

    return lax.fori_loop(0, cs.shape[0], rot, col)


def gmres_loop(matvec, b, x0, precond, tol, maxiter: int, history: bool, restart: int):
    n = b.shape[0]
    m = int(min(restart, max(n, 1)))
    dtype = b.dtype
    r0 = b - matvec(x0)
    rnorm0 = norm(r0)
    outer = _Outer(x0, r0, jnp.zeros((), jnp.int32), rnorm0, jnp.zeros((), bool),
                   new_history(maxiter, history, rnorm0))

    def outer_cond(s):
        return keep_going(s.rnorm, tol, s.k, maxiter, s.stagnated)

    def outer_body(s):
        beta = s.rnorm
        V = jnp.zeros((m + 1, n), dtype).at[0].set(s.r / jnp.where(beta == 0, 1, beta))
        g = jnp.zeros((m + 1,), dtype).at[0].set(beta)
        inner = _Inner(jnp.zeros((), jnp.int32), V, jnp.zeros((m + 1, m), dtype), jnp.zeros((m,), dtype),
                       jnp.zeros((m,), dtype), g, s.k, jnp.zeros((), bool), s.history)

        def inner_cond(t):
            return (t.j < m) & (t.k < maxiter) & (~done(jnp.abs(t.g[t.j]), tol)) & (~t.happy) \
                & jnp.isfinite(t.g[t.j])

        def inner_body(t):
            w = matvec(precond(t.V[t.j]))
            wn = norm(w)
            h = t.V @ w  # rows above j are zero, so this is the projection on the basis so far
            w = w - t.V.T @ h
            hn = norm(w)

            def reorthogonalise(args):
                w, h = args
                h2 = t.V @ w
                w = w - t.V.T @ h2
                return w, h + h2

            # "Twice is enough" (Kahan-Parlett): a second pass only when cancellation was severe.
            w, h = lax.cond(hn < 0.7071 * wn, reorthogonalise, lambda a: a, (w, h))
            hn = norm(w)
            happy = hn <= jnp.finfo(dtype).eps * jnp.maximum(norm(h), 1)
            V = t.V.at[t.j + 1].set(jnp.where(happy, 0, w / jnp.where(happy, 1, hn)))
            col = h.at[t.j + 1].set(hn)
            col = _apply_rotations(col, t.cs, t.sn, t.j)
            a, bb = col[t.j], col[t.j + 1]
            den = jnp.hypot(a, bb)
            c = jnp.where(den == 0, 1, a / jnp.where(den == 0, 1, den))
            sgn = jnp.where(den == 0, 0, bb / jnp.where(den == 0, 1, den))
            col = col.at[t.j].set(den).at[t.j + 1].set(0)
            g = t.g.at[t.j + 1].set(-sgn * t.g[t.j]).at[t.j].set(c * t.g[t.j])
            k = t.k + 1
            return _Inner(t.j + 1, V, t.R.at[:, t.j].set(col), t.cs.at[t.j].set(c), t.sn.at[t.j].set(sgn), g, k,
                          happy, record(t.history, k, jnp.abs(g[t.j + 1])))

        t = lax.while_loop(inner_cond, inner_body, inner)
        # Solve the j x j upper-triangular system; unused rows/cols get an identity so y is 0 there.
        used = jnp.arange(m) < t.j
        R = t.R[:m]
        R = jnp.where(used[:, None] & used[None, :], R, jnp.eye(m, dtype=dtype))
        y = jax.scipy.linalg.solve_triangular(R, jnp.where(used, t.g[:m], 0), lower=False)
        x = s.x + precond(t.V[:m].T @ y)
        r = b - matvec(x)
        rnorm = norm(r)
        stagnated = (rnorm >= s.rnorm) & ~done(rnorm, tol)
        return _Outer(x, r, t.k, rnorm, stagnated, t.history)

    s = lax.while_loop(outer_cond, outer_body, outer)
    status = final_status(s.rnorm, tol, jnp.zeros((), bool), s.stagnated)
    return s.x, s.k, s.rnorm, status, s.history
