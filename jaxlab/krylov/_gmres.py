"""Restarted GMRES, right-preconditioned, with delayed classical Gram-Schmidt (DCGS2) and Givens rotations.

Orthogonalisation (Bielich, Langou, Thomas, Swirydowicz, Yamazaki, Boman, "Low-synch Gram-Schmidt with
delayed reorthogonalization for Krylov solvers", Parallel Computing 2022): the new vector ``u_j`` is
projected once and normalised, and ``A M u_j`` is computed at once; its reorthogonalisation (the second
pass of CGS2) is delayed to the next iteration and done in the same two products with the basis as that
iteration's projection (a third, explicit pass is never made: severe cancellation in that correction ends the
cycle, and the restart goes on from the true residual). So each iteration reads the ``(restart + 1) x n`` basis twice, as two matrix
products with two columns (``V^H [u_j, w]`` and ``V^T C``), where CGS2 reads it four times and
``jax.scipy.sparse.linalg.gmres`` (a column-major basis, up to two passes) more. The reorthogonalised
``q_j = (u_j - Q c) / sigma`` has ``A M q_j = (w - A M Q c) / sigma`` with ``A M Q`` from the Arnoldi
relation, so no second product with ``A`` is needed; the Hessenberg column ``j - 1`` is corrected by the
same ``c`` and ``sigma`` and only then rotated, so the residual estimate (and the convergence test) of an
iteration is known one iteration later, and the product computed for the iteration after the last one is
wasted (one matrix-vector product per convergence, none per restart: the last column of a cycle is
finalised by one more product with the basis). The Givens rotations are kept multiplied out in one
``(restart + 1)``-square matrix ``Qt`` (see ``_rotate``): the right-hand side is ``beta Qt[:, 0]`` and the
triangular factor ``Qt H`` is formed once per cycle, so an iteration rotates two rows of ``Qt`` and nothing
else (78 fusions for the whole solver at n = 16 against 90 with rotated copies of H and g and the third pass,
half the compile time).

Memory layout on the CPU (the options' ``"auto"`` there, for a basis of 2 MiB or more; one product over the
whole basis elsewhere and for a basis that fits in the cache): the basis is
kept as column blocks, a tuple of ``(restart + 1) x c`` arrays (``c``: 16384 in float64, so that one block's
slice of the two projected vectors, 256 KiB, stays in the 2 MiB L2 while the basis streams past it; separate
buffers, so no slice of the basis is ever copied), each product reads only the leading blocks of 8 rows that
hold rows ``0..j`` (``row_block``), and the two projected vectors (and the two updated ones) are multiplied as
separate matrix-vector products, which XLA's CPU dot runs faster than one product with two columns. Together
0.74x the CPU time (0.84x the wall time) per iteration of one two-column product over the whole basis on
convdiff_300 (n = 90000) on the idle 2-core host, interleaved in one process, the same 911 iterations as SciPy
(``bench/results/krylov-cpu-gmres-parts-idle-s11.json``; under load 6-8 0.68x and 0.50x,
``krylov-cpu-gmres-parts-s11b.json``). The two passes over the
basis remain: their coefficients depend on the whole projection, so they cannot be fused.

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
    V: tuple  # column blocks of the (m + 1, n) basis: rows < j final, row j tentative, rows > j zero
    H: jax.Array  # (m + 1, m) Hessenberg columns: 0..j-2 final, j-1 tentative, the rest zero
    Qt: jax.Array  # (m + 1, m + 1): the product of the Givens rotations so far
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
    return c.astype(a.dtype), s


def _rotate(Qt, i, col):
    """``Qt`` times the rotation that zeroes row ``i + 1`` of ``Qt @ col``.

    Compact form: the rotations are kept multiplied out in ``Qt`` (two of its rows change per column), so
    ``g = beta Qt[:, 0]`` and ``R = Qt H`` need no rotated copies of H or of the right-hand side, and
    rotating a new column is one row-vector product (row ``i + 1`` of ``Qt`` is still ``e_{i+1}``). With
    ``col = 0`` (the first pass of a cycle, ``i = 0``) the rotation is the identity.
    """
    c, s = _givens(Qt[i] @ col, col[i + 1])
    a = Qt[i]
    b = Qt[i + 1]
    return Qt.at[i].set(c * a + s * b).at[i + 1].set(c * b - jnp.conj(s) * a)


def _dot_h(V, W):
    """``V^H W`` for a basis ``V`` (rows) and a block of column vectors ``W`` (conjugating only the small
    operands: ``V^H W = conj(V conj(W))``)."""
    if jnp.iscomplexobj(V):
        return jnp.conj(V @ jnp.conj(W))
    return V @ W


def _leading_rows(j, total: int, block: int, fn, *operands):
    """``fn(r, *operands)`` for the smallest static ``r`` (a multiple of ``block``, at most ``total``) that
    covers the rows ``0..j`` of the basis, chosen by ``lax.switch``; ``block >= total``: ``fn(total, ...)``.

    Rows ``> j`` of the basis are zero, so reading only the leading blocks reads fewer bytes (``block = 8``,
    ``m = 30``: 19.2 rows on average instead of 31). The slices ``V[:r]`` are copied before each product, so
    alone this was measured slower on the 2-core CPU (``bench/results/krylov-cpu-gmres-parts.json``); on
    column blocks with split products it is part of the faster CPU layout (see the module docstring).
    """
    sizes = sorted({min(block * (i + 1), total) for i in range(-(-total // block))})
    if len(sizes) == 1:
        return fn(sizes[0], *operands)
    index = jnp.minimum(j // block, len(sizes) - 1)
    return lax.switch(index, [functools.partial(fn, r) for r in sizes], *operands)


_COLUMN_BLOCK_BYTES = 1 << 18  # one block's slice of the two projected vectors: an eighth of a 2 MiB L2
_CPU_ROW_BLOCK = 8
_CPU_LAYOUT_MIN_BYTES = 1 << 21  # the basis of a 2 MiB L2: below it, "auto" keeps one product over the whole basis


def _on_cpu() -> bool:
    """The layout is chosen at trace time, where tracers carry no device: the default backend decides."""
    return jax.default_backend() == "cpu"


def column_edges(n: int, dtype, column_block: int | str | None = "auto") -> tuple[int, ...]:
    """Static edges ``0 = e_0 < ... < e_k = n`` of the basis' column blocks (near-equal widths).

    ``column_block``: the widest block in columns; ``None`` or ``0``: one block (the whole basis); ``"auto"``:
    ``256 KiB / (2 * itemsize)`` columns on the CPU backend and one block elsewhere.
    """
    if isinstance(column_block, str):
        if column_block != "auto":
            raise ValueError(f"column_block must be a positive int, None or 'auto', got {column_block!r}")
        column_block = (_COLUMN_BLOCK_BYTES // (2 * jnp.dtype(dtype).itemsize)
                        if _on_cpu() else None)
    if column_block is not None and int(column_block) < 0:
        raise ValueError(f"column_block must be a positive int, None or 'auto', got {column_block!r}")
    k = max(1, -(-n // int(column_block))) if column_block else 1
    k = min(k, max(n, 1))
    return tuple(n * i // k for i in range(k + 1))


def _split(x, edges):
    """The column blocks of ``x`` along its last axis (static slices)."""
    if len(edges) == 2:
        return (x,)
    return tuple(x[..., a:z] for a, z in zip(edges[:-1], edges[1:]))


def _join(parts):
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)


def gmres_loop(matvec, b, x0, precond, tol, maxiter: int, history: bool, restart: int,
               row_block: int | str | None = "auto", column_block: int | str | None = "auto",
               split_products: bool | str = "auto"):
    """Restarted GMRES; ``row_block``, ``column_block`` and ``split_products`` set the memory layout (see the
    module docstring; ``"auto"``: the CPU layout on the CPU backend once the basis outgrows the L2
    (:data:`_CPU_LAYOUT_MIN_BYTES`), ``None``/``False`` elsewhere)."""
    n = b.shape[0]
    m = int(min(restart, max(n, 1)))
    dtype = b.dtype
    # A basis that fits in the cache gains nothing from the CPU layout, whose extra branches only cost compile time.
    cpu_layout = _on_cpu() and (m + 1) * n * jnp.dtype(dtype).itemsize >= _CPU_LAYOUT_MIN_BYTES
    if isinstance(row_block, str):
        if row_block != "auto":
            raise ValueError(f"row_block must be a positive int, None or 'auto', got {row_block!r}")
        row_block = _CPU_ROW_BLOCK if cpu_layout else None
    if isinstance(split_products, str):
        if split_products != "auto":
            raise ValueError(f"split_products must be a bool or 'auto', got {split_products!r}")
        split_products = cpu_layout
    eps = jnp.finfo(dtype).eps
    rows = jnp.arange(m + 1)
    block = m + 1 if row_block is None else int(row_block)
    edges = column_edges(n, dtype, column_block)
    r0 = b - matvec(x0)
    rnorm0 = norm(r0)
    outer = _Outer(x0, r0, jnp.zeros((), jnp.int32), rnorm0, jnp.zeros((), bool),
                   new_history(maxiter, history, rnorm0))

    def outer_cond(s):
        return keep_going(s.rnorm, tol, s.k, maxiter, s.stagnated)

    def inner_body(t: _Inner, beta) -> _Inner:
        j = t.j
        us = tuple(V[j] for V in t.V)
        u = _join(us)
        w = lax.cond(j < m, lambda v: matvec(precond(v)), jnp.zeros_like, u)
        ws = _split(w, edges)
        # One product with the basis: Q^H u (delayed reorthogonalisation), u^H u, Q^H w, u^H w (with row_block,
        # only the leading blocks of V that hold rows 0..j), summed over the column blocks.
        def project(r, V, W):
            if split_products:
                return jnp.zeros((m + 1, 2), dtype).at[:r].set(
                    jnp.stack([_dot_h(V[:r], W[:, 0]), _dot_h(V[:r], W[:, 1])], axis=1))
            return jnp.zeros((m + 1, 2), dtype).at[:r].set(_dot_h(V[:r], W))

        P = functools.reduce(jnp.add, [_leading_rows(j, m + 1, block, project, V, jnp.stack([ui, wi], axis=1))
                                       for V, ui, wi in zip(t.V, us, ws)])
        before = rows < j
        c = jnp.where(before, P[:, 0], 0)
        z = jnp.where(before, P[:, 1], 0)
        uu, uw = jnp.real(P[j, 0]), P[j, 1]
        sigma2 = uu - jnp.real(jnp.vdot(c, c))
        # Severe cancellation (u nearly in span Q, sigma inaccurate) ends the cycle after this column: the
        # restart goes on from the true residual, where a third pass over the basis would cost every iteration
        # code and compile time for a case that ||v|| just above the happy-breakdown threshold makes rare.
        severe = sigma2 < 0.5 * uu
        sigma = jnp.sqrt(jnp.maximum(sigma2, 0))
        inv = 1 / jnp.where(sigma == 0, 1, sigma)
        # Column j - 1 is final now: A M q_{j-1} = Q (h' + tau c) + tau sigma q_j (j = 0: a zero column, an
        # identity rotation, no count).
        prev = jnp.maximum(j - 1, 0)
        tau = t.H[j, prev]
        col = jnp.where(before, t.H[:, prev] + tau * c, 0).at[j].set(tau * sigma)
        H = t.H.at[:, prev].set(col)
        Qt = _rotate(t.Qt, prev, col)
        k = t.k + (j > 0)
        resid = beta * jnp.abs(Qt[j, 0])
        hist = record(t.history, k, resid)
        # After a happy breakdown (t.happy) the column just finalised was the last one of the cycle.
        proceed = (j < m) & ~done(resid, tol) & (k < maxiter) & jnp.isfinite(resid) & ~t.happy & ~severe
        # q_j = (u - Q c) / sigma and the next tentative vector A M q_j - [Q, q_j] h, with h from the products
        # above and A M Q c = [Q, q_j] H c (Arnoldi): the second and last product with the basis.
        Hc = H[:, :m] @ c[:m]
        zz = z.at[j].set((uw - jnp.vdot(c, z)) * inv)
        h = (zz - Hc) * inv
        d = Hc * inv + h
        coef = jnp.stack([c * inv, (d - d[j] * inv * c).at[j].set(d[j] * inv)])
        # (2, m + 1) @ (m + 1, n): contracting V's leading axis needs no transposed copy of V.
        def update(r, C, V):
            if split_products:
                return jnp.stack([C[0, :r] @ V[:r], C[1, :r] @ V[:r]])
            return C[:, :r] @ V[:r]

        outs = [jnp.stack([ui, wi]) * inv - _leading_rows(j, m + 1, block, update, coef, V)
                for V, ui, wi in zip(t.V, us, ws)]
        vn = norm(outs[0][1]) if len(outs) == 1 else jnp.sqrt(sum(jnp.real(jnp.vdot(o[1], o[1])) for o in outs))
        happy = proceed & (vn <= eps * jnp.maximum(norm(h), 1))
        scale = jnp.where(happy | (vn == 0), 0, 1 / jnp.where(vn == 0, 1, vn))
        V = []
        for Vi, ui, o in zip(t.V, us, outs):
            Vi = Vi.at[j].set(jnp.where(proceed, o[0], ui))
            V.append(Vi.at[j + 1].set(jnp.where(proceed, o[1] * scale, Vi[j + 1])))
        V = tuple(V)
        H = H.at[:, j].set(jnp.where(proceed, h.at[j + 1].set(vn), H[:, j]))
        # A happy breakdown leaves u_{j+1} = 0: the next pass finalises column j with c = 0 and then stops.
        return _Inner(jnp.where(proceed, j + 1, j), V, H, Qt, k, proceed, happy, hist)

    def outer_body(s):
        beta = s.rnorm
        V = tuple(jnp.zeros((m + 1, ri.shape[0]), dtype).at[0].set(ri)
                  for ri in _split(s.r / jnp.where(beta == 0, 1, beta), edges))
        k0 = s.k
        inner = _Inner(jnp.zeros((), jnp.int32), V, jnp.zeros((m + 1, m), dtype), jnp.eye(m + 1, dtype=dtype),
                       s.k, jnp.ones((), bool), jnp.zeros((), bool), s.history)
        t = lax.while_loop(lambda t: t.pending, functools.partial(inner_body, beta=beta), inner)
        # R = Qt H is upper triangular in the finalised columns; the rest get an identity so y is 0 there.
        used = jnp.arange(m) < t.k - k0
        R = jnp.where(used[:, None] & used[None, :], (t.Qt[:m] @ t.H), jnp.eye(m, dtype=dtype))
        y = jax.scipy.linalg.solve_triangular(R, jnp.where(used, beta * t.Qt[:m, 0], 0), lower=False)
        ye = jnp.append(y, jnp.zeros((1,), dtype))
        x = s.x + precond(_join([ye @ V for V in t.V]))
        r = b - matvec(x)
        rnorm = norm(r)
        stagnated = (rnorm >= s.rnorm) & ~done(rnorm, tol)
        return _Outer(x, r, t.k, rnorm, stagnated, t.history)

    s = lax.while_loop(outer_cond, outer_body, outer)
    status = final_status(s.rnorm, tol, jnp.zeros((), bool), s.stagnated)
    return s.x, s.k, s.rnorm, status, s.history
