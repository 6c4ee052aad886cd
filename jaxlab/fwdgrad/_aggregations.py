"""Aggregations of k directional derivatives into one gradient estimate.

With tangents ``v_1..v_k`` (the columns of ``V``) and directional derivatives ``d = V^T g`` of the
true gradient ``g``, every aggregation here is a linear combination of the tangents,
``g_hat = sum_i c_i v_i``, and differs only in the coefficients ``c``:

* ``sum``: ``c = d``; ``mean``: ``c = d / k`` (Baydin et al. 2022 for k = 1).
* ``max``: only the tangent with the largest ``|d_i|``; ``max_normalized``: only the tangent with the
  largest ``|d_i| / ||v_i||`` (the best cosine).
* ``projection``: ``c = G^{-1} d`` with the k x k Gram matrix ``G = V^T V`` over all parameters at
  once, i.e. ``g_hat = V (V^T V)^{-1} V^T g``, the orthogonal projection of ``g`` onto span(V)
  ("frog", Fluegel et al., "Beyond Backpropagation: Optimization with Multi-Tangent Forward
  Gradients", arXiv 2410.17764). For k = n it is ``g`` itself.
* ``projection_per_leaf``: the reference code's variant: per parameter tensor ``p``,
  ``c_p = G_p^{-1} d`` with ``G_p = V_p^T V_p`` of that tensor's slice but the *global* ``d``. It is
  not a projection of the full gradient (exact only for a single leaf); offered for comparison.

Differences from the reference (Helmholtz-AI-Energy/frog, ``forward_gradient/aggregation.py``):
``G^{-1} d`` is a linear solve of the k x k Gram system with a tiny relative ridge (no explicit
inverse; nearly dependent tangents give bounded coefficients instead of NaN); the
per-leaf form keeps the first ``n_p`` tangents for leaves smaller than k by default, as the reference
does, and the global form applies the k > n selection once for the whole parameter vector, by default
``pivoted`` (``_pivoted``: a pivoted Cholesky's well-conditioned n of the k tangents) rather than the
reference's ``first_n``. Both give the gradient itself in exact arithmetic when the k tangents span
R^n, but in float32 the first n can be nearly dependent (n <= 16): their ridged solve shortens the
estimate, in some samples below the plain mean's cosine to the gradient (n = 2, k = 16), and Rademacher
tangents repeat (the first n are then exactly dependent). The pivoted choice keeps the cosine at 1 to
rounding: bench/results/fwdgrad/selection-cpu.json (n 2-16, k 16-256, 200 samples each, float32) has its
minimum cosine 0.9999999 and no sample below the mean's, against 534 samples below for ``first_n``
(all Rademacher; normal tangents: minimum 0.9977 there, and below the mean only in rare samples, such as
those of tests/fwdgrad/test_selection.py at n = 2, k = 16). In the per-leaf form, with the global ``d``,
the kept subset changes the result even in exact arithmetic, so there the default stays the reference's.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import Array, PyTree

from ._pivoted import pivoted_projection_coefficients
from ._samplers import tangent_sq_norms
from ._schedule import after

AGGREGATIONS: tuple[str, ...] = ("sum", "mean", "max", "max_normalized", "projection", "projection_per_leaf")
#: How to keep n of k > n tangents for the projection: the first n, those with the largest or smallest
#: |d_i| / ||v_i||, or a pivoted Cholesky's choice of well-conditioned ones (``_pivoted``).
SELECTIONS: tuple[str, ...] = ("first_n", "max", "min", "pivoted")
#: The selection that ``selection=None`` means, per aggregation.
DEFAULT_SELECTIONS: dict[str, str] = {"projection": "pivoted", "projection_per_leaf": "first_n"}


def check_aggregation(aggregation: str, selection: str | None = None) -> None:
    """Raises a ValueError naming the choices for an unknown aggregation or selection."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; choose one of {AGGREGATIONS}")
    if selection is not None and selection not in SELECTIONS:
        raise ValueError(f"unknown tangent selection {selection!r}; choose one of {SELECTIONS} or None (the "
                         f"default per aggregation, {DEFAULT_SELECTIONS})")


def resolve_selection(aggregation: str, selection: str | None) -> str:
    """``selection``, or for None the aggregation's default (``DEFAULT_SELECTIONS``; "first_n" otherwise)."""
    check_aggregation(aggregation, selection)
    return DEFAULT_SELECTIONS.get(aggregation, "first_n") if selection is None else selection


def needs_gram(aggregation: str) -> bool:
    """Whether the aggregation needs Gram matrices of the tangents."""
    return aggregation in ("projection", "projection_per_leaf")


def leaf_gram_matrices(tangents: PyTree) -> list[Array]:
    """Per-leaf Gram matrices ``V_p^T V_p`` (each k x k) of stacked tangents (leading axis k)."""
    out = []
    for v in jax.tree_util.tree_leaves(tangents):
        flat = v.reshape(v.shape[0], -1)
        out.append(flat @ flat.T)
    return out


def gram_matrix(tangents: PyTree) -> Array:
    """The k x k Gram matrix ``V^T V`` of stacked tangents over all parameters at once."""
    return sum(leaf_gram_matrices(tangents))


def _psd_solve(gram: Array, d: Array) -> Array:
    """``G^{-1} d`` for a symmetric positive semi-definite Gram matrix, with a tiny relative ridge.

    The ridge ``eps * trace(G) / k`` (eps times the mean eigenvalue) is below the rounding of a
    well-conditioned solve, but it keeps nearly dependent tangents (small n, float32) from producing
    NaN or huge coefficients. (An eigendecomposition-based pseudo-inverse hung inside ``lax.map`` on
    XLA CPU in JAX 0.10.2.)
    """
    k = gram.shape[0]
    ridge = jnp.finfo(gram.dtype).eps * jnp.trace(gram) / k
    return jnp.linalg.solve(gram + ridge * jnp.eye(k, dtype=gram.dtype), d)


def _projection_coefficients(d: Array, gram: Array, n: int, selection: str) -> Array:
    k = d.shape[0]
    if k <= n:
        return _psd_solve(gram, d)
    # More tangents than dimensions: they cannot be independent. Keep n of them.
    if selection == "pivoted":
        return pivoted_projection_coefficients(d, gram, n)
    if selection == "first_n":
        idx = jnp.arange(n)
    else:
        score = jnp.abs(d) * jax.lax.rsqrt(jnp.diagonal(gram))
        idx = jax.lax.top_k(score if selection == "max" else -score, n)[1]
    sub = gram[idx][:, idx]
    return jnp.zeros_like(d).at[idx].set(_psd_solve(sub, d[idx]))


def aggregation_coefficients(d: Array, aggregation: str, *, gram: Array | None = None,
                             sq_norms: Array | None = None, leaf_grams: Sequence[Array] | None = None,
                             leaf_sizes: Sequence[int] | None = None, selection: str | None = None) -> Array:
    """Coefficients ``c`` with ``g_hat = sum_i c_i v_i``.

    Args:
      d: directional derivatives, shape (k,).
      aggregation: one of ``AGGREGATIONS``.
      gram: the global Gram matrix (needed by ``projection``).
      sq_norms: ``||v_i||^2`` (needed by ``max_normalized``; the Gram diagonal is used if given).
      leaf_grams, leaf_sizes: per-leaf Gram matrices and sizes (``projection_per_leaf``; ``leaf_sizes``
        also gives n for ``projection``).
      selection: which n tangents the projection keeps when k > n (``SELECTIONS``); None: "pivoted" for
        ``projection``, "first_n" (the reference's) for ``projection_per_leaf``.

    Returns:
      Shape (k,), or (num_leaves, k) for ``projection_per_leaf``.
    """
    selection = resolve_selection(aggregation, selection)
    k = d.shape[0]
    if aggregation == "sum":
        return d
    if aggregation == "mean":
        return d / k
    if aggregation in ("max", "max_normalized"):
        score = jnp.abs(d)
        if aggregation == "max_normalized":
            sq = jnp.diagonal(gram) if sq_norms is None else sq_norms
            score = score * jax.lax.rsqrt(sq)
        return jnp.where(jnp.arange(k) == jnp.argmax(score), d, jnp.zeros_like(d))
    if leaf_sizes is None:
        raise ValueError(f"aggregation {aggregation!r} needs leaf_sizes")
    if aggregation == "projection":
        if gram is None:
            gram = sum(leaf_grams)
        return _projection_coefficients(d, gram, int(sum(leaf_sizes)), selection)
    # One leaf's solve after another: under vmap each is a batched LAPACK kernel, and independent ones side by
    # side deadlock XLA's CPU runtime once as many run as its intra-op pool has threads (jaxlib 0.10.2: each
    # blocks its pool thread on chunks queued behind the others; 2 threads on a 2-core machine).
    out: list[Array] = []
    for g, s in zip(leaf_grams, leaf_sizes):
        out.append(_projection_coefficients(d, after(g, out[-1]) if out else g, int(s), selection))
    return jnp.stack(out)


def combine_tangents(tangents: PyTree, coefficients: Array) -> PyTree:
    """``sum_i c_i v_i`` per leaf; ``coefficients`` of shape (k,) or (num_leaves, k)."""
    leaves, treedef = jax.tree_util.tree_flatten(tangents)
    out = []
    for l, v in enumerate(leaves):
        c = coefficients if coefficients.ndim == 1 else coefficients[l]
        out.append(jnp.tensordot(c.astype(v.dtype), v, axes=1))
    return jax.tree_util.tree_unflatten(treedef, out)


def aggregate(tangents: PyTree, d: Array, aggregation: str = "projection", *,
              selection: str | None = None) -> PyTree:
    """Combines stacked tangents (leading axis k) and their directional derivatives into one estimate.

    Args:
      tangents: pytree of arrays of shape ``(k, *param.shape)``.
      d: ``(k,)`` directional derivatives ``d_i = <grad, v_i>``.
      aggregation: "sum", "mean", "max", "max_normalized", "projection" or "projection_per_leaf".
      selection: for the projections with k > n: keep the ``first_n`` tangents, those with the
        ``max``/``min`` |d_i| / ||v_i||, or the ``pivoted`` (well-conditioned) ones; None (default):
        "pivoted" for ``projection``, "first_n" for ``projection_per_leaf``.

    Returns:
      A pytree like one tangent.

    Examples:
      >>> import jax.numpy as jnp
      >>> v = {"w": jnp.eye(2)}            # k = n = 2: the projection recovers the gradient
      >>> [round(x, 5) for x in aggregate(v, jnp.array([3.0, -1.0]), "projection")["w"].tolist()]
      [3.0, -1.0]
    """
    check_aggregation(aggregation, selection)
    leaves = jax.tree_util.tree_leaves(tangents)
    if d.ndim != 1 or any(v.shape[0] != d.shape[0] for v in leaves):
        raise ValueError(f"d must have shape (k,) matching the tangents' leading axis, got d {d.shape} and "
                         f"tangent leaves {[v.shape for v in leaves]}")
    leaf_grams = leaf_gram_matrices(tangents) if needs_gram(aggregation) else None
    gram = sum(leaf_grams) if leaf_grams is not None else None
    sq = tangent_sq_norms(tangents) if aggregation == "max_normalized" else None
    sizes = [math.prod(v.shape[1:]) for v in leaves]
    c = aggregation_coefficients(d, aggregation, gram=gram, sq_norms=sq, leaf_grams=leaf_grams,
                                 leaf_sizes=sizes, selection=selection)
    return combine_tangents(tangents, c)


def aggregate_reference(tangents: np.ndarray, d: np.ndarray, aggregation: str, *,
                        leaf_sizes: Sequence[int] | None = None) -> np.ndarray:
    """NumPy oracle on flattened tangents (k, n) (k <= n for the projections), straight from the formulas.

    ``projection`` is ``V (V^T V)^+ V^T g`` written as a least-squares fit of ``d``; the per-leaf
    variant applies it to each slice of ``leaf_sizes`` (default: one leaf), keeping the first n_p
    tangents of small leaves.
    """
    V = np.asarray(tangents, dtype=np.float64)
    d = np.asarray(d, dtype=np.float64)
    k, n = V.shape
    if aggregation == "sum":
        return d @ V
    if aggregation == "mean":
        return d @ V / k
    if aggregation == "max":
        j = int(np.argmax(np.abs(d)))
        return d[j] * V[j]
    if aggregation == "max_normalized":
        j = int(np.argmax(np.abs(d) / np.linalg.norm(V, axis=1)))
        return d[j] * V[j]

    def proj(Vp: np.ndarray) -> np.ndarray:
        m = min(Vp.shape)
        B = Vp[:m].T  # n_p x m basis
        return B @ np.linalg.solve(B.T @ B, d[:m])

    if aggregation == "projection":
        return proj(V)
    if aggregation == "projection_per_leaf":
        sizes = [n] if leaf_sizes is None else list(leaf_sizes)
        bounds = np.cumsum([0, *sizes])
        return np.concatenate([proj(V[:, a:b]) for a, b in zip(bounds[:-1], bounds[1:])])
    raise ValueError(f"unknown aggregation {aggregation!r}; choose one of {AGGREGATIONS}")


def expected_chi(k: int) -> float:
    """E[chi_k] = sqrt(2) Gamma((k+1)/2) / Gamma(k/2) (via lgamma, so any k works)."""
    return math.sqrt(2.0) * math.exp(math.lgamma((k + 1) / 2) - math.lgamma(k / 2))


def length_correction_factor(aggregation: str, num_tangents: int, n: int, expected_sq_norm: float) -> float:
    """The paper's optional scaling correction: multiply the estimate by this factor.

    It is ``1 / E``, with ``E`` the estimate's expected length relative to the gradient's:
    ``projection``: ``E[chi_k] / E[chi_n]`` (1 for k >= n); ``mean``: ``E||v||^2 * sqrt(2/(pi n))`` for
    k = 1 and ``E||v||^2 * sqrt((n+k)/(1+k)) / n`` otherwise; ``sum``: the mean's factor over k.

    Args:
      aggregation: "projection", "mean" or "sum".
      num_tangents: k.
      n: number of parameters.
      expected_sq_norm: ``E||v||^2`` of one tangent (n for normal or Rademacher tangents, 1 for
        normalised or orthonormal ones).

    Raises:
      ValueError: for other aggregations (no closed form).
    """
    k = int(num_tangents)
    if aggregation == "projection":
        return 1.0 if k >= n else expected_chi(n) / expected_chi(k)
    if aggregation in ("mean", "sum"):
        shape = math.sqrt(2.0 / (math.pi * n)) if k == 1 else math.sqrt((n + k) / (1 + k)) / n
        factor = 1.0 / (expected_sq_norm * shape)
        return factor / k if aggregation == "sum" else factor
    raise ValueError(f"no length correction for aggregation {aggregation!r}; use 'projection', 'mean' or 'sum' "
                     "or pass length_correction=False")
