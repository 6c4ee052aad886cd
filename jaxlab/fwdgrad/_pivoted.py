"""A well-conditioned choice of n of k > n tangents: greedy pivoted Cholesky of their Gram matrix.

With k > n tangents that span R^n, the orthogonal projection of the gradient onto their span is the
gradient itself, and so is the projection onto *any* n of them that are independent. Which n are kept
matters only numerically: the first n (the reference's choice) can be nearly dependent (two random
directions in R^2 a fraction of a degree apart), and then the float32 solve of their n x n Gram system,
whose condition number is the square of theirs, loses the component along the short side (or, with a
ridge, shortens it). Pivoting picks, n times, the tangent with the largest part orthogonal to those
already kept (the largest diagonal of the remaining Schur complement), a rank-revealing choice
(Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., section 10.3), and its Cholesky
factor is the one the solve needs.

The factorisation stops cleanly when fewer than n tangents are independent: a pivot at or below
``k * eps * max_i G_ii`` is rounding noise, so it and every later step get a zero column and a zero
coefficient; the coefficients then give the projection onto the span of the independent ones found
(what a pseudo-inverse would give), without NaN.

Everything is ``lax.fori_loop`` over plain array operations, no LAPACK call: several batched LAPACK
kernels side by side deadlock XLA CPU's intra-op pool in jaxlib 0.10.2 (see ``jaxlab.core.after``),
and a loop of vector operations cannot.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import Array


def pivoted_cholesky(gram: Array, steps: int) -> tuple[Array, Array, Array]:
    """Greedy pivoted Cholesky of a symmetric PSD ``gram`` (k x k), stopped after ``steps`` pivots.

    Args:
      gram: a k x k symmetric positive semi-definite matrix (a Gram matrix of k tangents).
      steps: number of pivots m, 1 <= m <= k.

    Returns:
      ``(idx, factor, valid)``: ``idx`` (m,) int32, the chosen rows in the order chosen (distinct);
      ``factor`` (m, m), lower triangular, with ``factor @ factor.T == gram[idx][:, idx]`` on the valid
      block; ``valid`` (m,) bool, a prefix of True: steps whose pivot was above the rank tolerance
      ``k * eps * max(diag(gram))`` (the invalid ones have zero rows and columns in ``factor``).

    Examples:
      >>> import jax.numpy as jnp
      >>> idx, L, valid = pivoted_cholesky(jnp.array([[1.0, 0.0], [0.0, 4.0]]), 1)
      >>> idx.tolist(), L.tolist(), valid.tolist()
      ([1], [[2.0]], [True])
    """
    k = gram.shape[0]
    if gram.shape != (k, k) or not 1 <= steps <= k:
        raise ValueError(f"pivoted_cholesky needs a square gram and 1 <= steps <= k, got gram {gram.shape} "
                         f"and steps={steps}")
    dtype = gram.dtype
    diag = jnp.diagonal(gram)
    tol = k * jnp.finfo(dtype).eps * jnp.max(diag)

    def step(j, state):
        cols, resid, chosen, idx, valid, going = state
        p = jnp.argmax(jnp.where(chosen, -jnp.inf, resid)).astype(jnp.int32)  # unchosen rows remain: steps <= k
        pivot = resid[p]
        ok = going & (pivot > tol)
        root = jnp.sqrt(jnp.where(ok, pivot, 1.0))
        col = (gram[:, p] - cols @ cols[p]) / root  # columns >= j of ``cols`` are still zero
        col = jnp.where(chosen | ~ok, 0.0, col).at[p].set(jnp.where(ok, root, 0.0))
        return (cols.at[:, j].set(col), resid - col * col, chosen.at[p].set(True), idx.at[j].set(p),
                valid.at[j].set(ok), ok)

    init = (jnp.zeros((k, steps), dtype), diag, jnp.zeros(k, bool), jnp.zeros(steps, jnp.int32),
            jnp.zeros(steps, bool), jnp.array(True))
    cols, _, _, idx, valid, _ = jax.lax.fori_loop(0, steps, step, init)
    # Row idx[i] was chosen at step i and is zero in every later column: lower triangular. The rows of
    # invalid steps keep their parts along the valid columns; they are dropped (the block is not factored).
    return idx, jnp.where(valid[:, None], cols[idx], 0.0), valid


def cholesky_solve(factor: Array, valid: Array, b: Array) -> Array:
    """``(L L^T)^{-1} b`` on the valid leading block of a lower-triangular ``factor``; 0 elsewhere.

    Forward then back substitution, each a ``lax.fori_loop`` over the rows (no LAPACK triangular solve).
    """
    m = factor.shape[0]
    diag = jnp.where(valid, jnp.diagonal(factor), 1.0)
    b = jnp.where(valid, b, 0.0)

    def forward(i, y):  # y_i = (b_i - sum_{j<i} L_ij y_j) / L_ii; entries >= i of y are still zero
        return y.at[i].set(jnp.where(valid[i], (b[i] - factor[i] @ y) / diag[i], 0.0))

    def backward(t, x):  # x_i = (y_i - sum_{j>i} L_ji x_j) / L_ii, i = m-1 .. 0; entries <= i still zero
        i = m - 1 - t
        return x.at[i].set(jnp.where(valid[i], (y[i] - factor[:, i] @ x) / diag[i], 0.0))

    y = jax.lax.fori_loop(0, m, forward, jnp.zeros_like(b))
    return jax.lax.fori_loop(0, m, backward, jnp.zeros_like(b))


def pivoted_projection_coefficients(d: Array, gram: Array, n: int) -> Array:
    """Coefficients ``c`` (k,) of the projection onto n pivoted tangents: ``c_S = G_SS^{-1} d_S``, 0 elsewhere."""
    idx, factor, valid = pivoted_cholesky(gram, n)
    return jnp.zeros_like(d).at[idx].set(cholesky_solve(factor, valid, d[idx]))


def projection_reference(tangents: np.ndarray, d: np.ndarray) -> np.ndarray:
    """NumPy/SciPy oracle: the minimum-norm least-squares fit in float64, ``V^T (V V^T)^+ d``.

    For consistent ``d = V g`` it is the orthogonal projection of ``g`` onto the span of the rows of
    ``tangents`` (k, n), whatever k, n and the rank (``scipy.linalg.lstsq`` of ``V x = d``).
    """
    import scipy.linalg

    fit = scipy.linalg.lstsq(np.asarray(tangents, np.float64), np.asarray(d, np.float64))
    assert fit is not None  # (its stubs allow None; it raises on failure instead)
    return fit[0]
