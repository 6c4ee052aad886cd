"""Restarted GMRES, right-preconditioned, with delayed classical Gram-Schmidt (DCGS2) and Givens rotations.

Orthogonalisation (Bielich, Langou, Thomas, Swirydowicz, Yamazaki, Boman, "Low-synch Gram-Schmidt with
delayed reorthogonalization for Krylov solvers", Parallel Computing 2022): the new vector ``u_j`` is
projected once and normalised, and ``A M u_j`` is computed at once; its reorthogonalisation (the second
pass of CGS2) is delayed to the next iteration and done in the same two products with the basis as that
iteration's projection. So each iteration reads the ``(restart + 1) x n`` basis twice, as two matrix
products with two columns (``V^H [u_j, w]`` and ``V^T C``), where CGS2 reads it four times and
``jax.scipy.sparse.linalg.gmres`` (a column-major basis, up to two passes) more. The reorthogonalised
``q_j = (u_j - Q c) / sigma`` has ``A M q_j = (w - A M Q c) / sigma`` with ``A M Q`` from the Arnoldi
relation, so no second product with ``A`` is needed; the Hessenberg column ``j - 1`` is corrected by the
same ``c`` and ``sigma`` and only then rotated, so the residual estimate (and the convergence test) of an
iteration is known one iteration later, and the product computed for the iteration after the last one is
wasted (one matrix-vector product per convergence, none per restart: the last column of a cycle is
finalised by one more product with the basis).

Differences from ``jax.scipy.sparse.linalg.gmres``: ``maxiter`` counts inner iterations over all restarts
(as Ginkgo does; SciPy counts restart cycles), the residual at the end of each cycle is recomputed as
``b - A x`` so convergence is judged on the true residual, and a cycle that does not reduce the residual is
reported as ``STAGNATION`` instead of looping silently (jax#15837). Real and complex dtypes (complex Givens
rotations, conjugated projections).
"""

from __future__ import annotations

import functools
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
    j: jax.Array  # index of the tentative basis vector (row j of V); columns 0..j-1 of H are final
    V: jax.Array  # (m + 1, n): rows < j final, row j tentative, rows > j zero
    H: jax.Array  # (m + 1, m) Hessenberg columns: 0..j-2 final, j-1 tentative
    R: jax.Array  # (m + 1, m) rotated (upper triangular) columns
    Qt: jax.Array  # (m + 1, m + 1): the product of the Givens rotations so far (R = Qt H)
    g: jax.Array
    k: jax.Array
    pending: jax.Array  # a tentative column waits for its correction
    happy: jax.Array
    history: jax.Array


def _givens(a, b):
    """Rotation ``[[c, s], [-conj(s), c]]`` (c real) with ``G [a, b] = [r, 0]``, for real and complex values."""
    absa, absb = jnp.abs(a), jnp.abs(b)
    den = jnp.hypot(absa, absb)
    safe_den = jnp.where(den == 0, 1, den)
    phase = jnp.where(absa == 0, 1, a / jnp.where(absa == 0, 1, absa))  # a / |a|
    c = jnp.where(den == 0, 1, absa / safe_den)
    s = jnp.where(den == 0, 0, phase * jnp.conj(b) / safe_den)
    r = phase * den
    return c.astype(a.dtype), s, r


def _finalise(t: _Inner, col, ci):
    """Rotates the final Hessenberg column ``ci`` into ``R`` and updates the residual estimate."""
    # The rotations so far are kept multiplied out in Qt (rotating two of its rows per iteration), so applying
    # them to a new column is one small matrix-vector product instead of a sequential loop over the rotations.
    col = t.Qt @ col
    c, s, r = _givens(col[ci], col[ci + 1])
    col = col.at[ci].set(r).at[ci + 1].set(0)
    a, b = t.Qt[ci], t.Qt[ci + 1]
    Qt = t.Qt.at[ci].set(c * a + s * b).at[ci + 1].set(-jnp.conj(s) * a + c * b)
    g = t.g.at[ci + 1].set(-jnp.conj(s) * t.g[ci]).at[ci].set(c * t.g[ci])
    k = t.k + 1
    return t._replace(R=t.R.at[:, ci].set(col), Qt=Qt, g=g, k=k,
                      history=record(t.history, k, jnp.abs(g[ci + 1])))


def _select(pred, new: _Inner, old: _Inner) -> _Inner:
    """``new`` where ``pred`` else ``old``, field by field (the fields it selects are small: not V)."""
    return _Inner(*(n if n is o else jnp.where(pred, n, o) for n, o in zip(new, old)))


def _dot_h(V, W):
    """``V^H W`` for a basis ``V`` (rows) and a block of column vectors ``W``."""
    return (jnp.conj(V) if jnp.iscomplexobj(V) else V) @ W


def _leading_rows(j, total: int, block: int, fn, *operands):
    """``fn(r, *operands)`` for the smallest static ``r`` (a multiple of ``block``, at most ``total``) that
    covers the rows ``0..j`` of the basis, chosen by ``lax.switch``; ``block >= total``: ``fn(total, ...)``.

    Rows ``> j`` of the basis are zero, so reading only the leading blocks reads fewer bytes (``block = 8``,
    ``m = 30``: 19.2 rows on average instead of 31). Measured slower on the 2-core CPU all the same
    (``bench/results/krylov-cpu-gmres-parts.json``, ``ours_row_block_*``), so ``gmres_loop`` reads the whole
    basis by default; ``scripts/bench_gmres_parts.py`` times both.
    """
    sizes = sorted({min(block * (i + 1), total) for i in range(-(-total // block))})
    if len(sizes) == 1:
        return fn(sizes[0], *operands)
    index = jnp.minimum(j // block, len(sizes) - 1)
    return lax.switch(index, [functools.partial(fn, r) for r in sizes], *operands)


def gmres_loop(matvec, b, x0, precond, tol, maxiter: int, history: bool, restart: int,
               row_block: int | None = None):
    n = b.shape[0]
    m = int(min(restart, max(n, 1)))
    dtype = b.dtype
    eps = jnp.finfo(dtype).eps
    rows = jnp.arange(m + 1)
    block = m + 1 if row_block is None else int(row_block)
    r0 = b - matvec(x0)
    rnorm0 = norm(r0)
    outer = _Outer(x0, r0, jnp.zeros((), jnp.int32), rnorm0, jnp.zeros((), bool),
                   new_history(maxiter, history, rnorm0))

    def outer_cond(s):
        return keep_going(s.rnorm, tol, s.k, maxiter, s.stagnated)

    def inner_body(t: _Inner) -> _Inner:
        j = t.j
        u = t.V[j]
        w = lax.cond(j < m, lambda v: matvec(precond(v)), jnp.zeros_like, u)
        # One product with the basis: Q^H u (delayed reorthogonalisation), u^H u, Q^H w, u^H w (with row_block,
        # only the leading blocks of V that hold rows 0..j).
        def project(r, V, W):
            return jnp.zeros((m + 1, 2), dtype).at[:r].set(_dot_h(V[:r], W))

        Rd = _leading_rows(j, m + 1, block, project, t.V, jnp.stack([u, w], axis=1))
        before = (rows < j)[:, None]
        c, z = jnp.where(before, Rd, 0).T
        uu, uw = jnp.real(Rd[j, 0]), Rd[j, 1]
        sigma2 = uu - jnp.real(jnp.vdot(c, c))

        def explicit(c):
            # Severe cancellation (u nearly in span Q): reorthogonalise explicitly, once more.
            v = u - c @ t.V
            c2 = jnp.where(rows < j, _dot_h(t.V, v), 0)
            v = v - c2 @ t.V
            return c + c2, jnp.real(jnp.vdot(v, v))

        c, sigma2 = lax.cond(sigma2 < 0.5 * uu, explicit, lambda c: (c, sigma2), c)
        sigma = jnp.sqrt(jnp.maximum(sigma2, 0))
        safe_sigma = jnp.where(sigma == 0, 1, sigma)
        # Column j - 1 is final now: A M q_{j-1} = Q (h' + tau c) + tau sigma q_j.
        prev = jnp.maximum(j - 1, 0)
        tau = t.H[j, prev]
        col = jnp.where(rows < j, t.H[:, prev] + tau * c, 0).at[j].set(tau * sigma)
        t = _select(j > 0, _finalise(t._replace(H=t.H.at[:, prev].set(col)), col, prev), t)
        resid = jnp.abs(t.g[j])
        # After a happy breakdown (t.happy) the column just finalised was the last one of the cycle.
        proceed = (j < m) & ~done(resid, tol) & (t.k < maxiter) & jnp.isfinite(resid) & ~t.happy
        # q_j = (u - Q c) / sigma and the next tentative vector A M q_j - [Q, q_j] h, with h from the products
        # above. Computed unconditionally (no lax.cond around the large products: it compiles twice as
        # slowly), written only if the iteration proceeds.
        Hc = jnp.where(rows[:, None] <= j, t.H, 0) @ jnp.where(jnp.arange(m) < j, c[:m], 0)
        qw = (uw - jnp.vdot(c, z)) / safe_sigma
        zz = jnp.where(rows < j, z, 0).at[j].set(qw)
        h = jnp.where(rows <= j, (zz - Hc) / safe_sigma, 0)
        d = Hc / safe_sigma + h
        a = jnp.where(rows < j, d - d[j] * c / safe_sigma, 0)
        coef = jnp.stack([jnp.where(rows < j, c / safe_sigma, 0), a.at[j].set(d[j] / safe_sigma)])
        # (2, m + 1) @ (m + 1, n): contracting V's leading axis needs no transposed copy of V.
        out = jnp.stack([u, w]) / safe_sigma - _leading_rows(j, m + 1, block, lambda r, C, V: C[:, :r] @ V[:r],
                                                             coef, t.V)
        q, v = out[0], out[1]
        vn = norm(v)
        happy = proceed & (vn <= eps * jnp.maximum(norm(h), 1))
        nxt = jnp.where(happy, 0, v / jnp.where(happy | (vn == 0), 1, vn))
        V = t.V.at[j].set(jnp.where(proceed, q, t.V[j]))
        V = V.at[j + 1].set(jnp.where(proceed, nxt, V[j + 1]))
        H = t.H.at[:, j].set(jnp.where(proceed, h.at[j + 1].set(vn), t.H[:, j]))
        # A happy breakdown leaves u_{j+1} = 0: the next pass finalises column j with c = 0 and then stops.
        return t._replace(j=jnp.where(proceed, j + 1, j), V=V, H=H, pending=proceed, happy=happy)

    def outer_body(s):
        beta = s.rnorm
        V = jnp.zeros((m + 1, n), dtype).at[0].set(s.r / jnp.where(beta == 0, 1, beta))
        g = jnp.zeros((m + 1,), dtype).at[0].set(beta)
        k0 = s.k
        inner = _Inner(jnp.zeros((), jnp.int32), V, jnp.zeros((m + 1, m), dtype), jnp.zeros((m + 1, m), dtype),
                       jnp.eye(m + 1, dtype=dtype), g, s.k, jnp.ones((), bool),
                       jnp.zeros((), bool), s.history)
        t = lax.while_loop(lambda t: t.pending, inner_body, inner)
        # Solve the upper-triangular system of the finalised columns; the rest get an identity so y is 0 there.
        used = jnp.arange(m) < t.k - k0
        R = jnp.where(used[:, None] & used[None, :], t.R[:m], jnp.eye(m, dtype=dtype))
        y = jax.scipy.linalg.solve_triangular(R, jnp.where(used, t.g[:m], 0), lower=False)
        x = s.x + precond(jnp.append(y, jnp.zeros((1,), dtype)) @ t.V)
        r = b - matvec(x)
        rnorm = norm(r)
        stagnated = (rnorm >= s.rnorm) & ~done(rnorm, tol)
        return _Outer(x, r, t.k, rnorm, stagnated, t.history)

    s = lax.while_loop(outer_cond, outer_body, outer)
    status = final_status(s.rnorm, tol, jnp.zeros((), bool), s.stagnated)
    return s.x, s.k, s.rnorm, status, s.history
