"""Unstructured magnitude masks: global or per layer, with exact counts.

A mask is a pytree of booleans with the structure of the params; ``True`` keeps a weight. Leaves that
are not prunable (by default: anything that is not a floating array of rank >= 2, so biases, norms and
scalars stay dense) get an all-``True`` mask. Counts are exact: with ``n`` prunable weights and sparsity
``s``, ``n - round(s n)`` weights are kept (globally, or in every layer), ties broken by position,
so the density is ``1 - s`` to within one weight per tensor.

Masks are computed on the host with NumPy when the params are concrete arrays (a sort and a scatter per
leaf shape would otherwise compile 20-90 small XLA programs per call, for every model and sparsity of a
sweep), and with ``jax.numpy`` when they are traced (inside ``jax.jit``): both give the same masks, and the
result is a pytree of ``jax.Array`` either way.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import PyTree

Include = Callable[[tuple[str, ...], Any], bool]


def default_include(path: tuple[str, ...], leaf) -> bool:
    """Prunable by default: floating arrays of rank >= 2 (kernels), not biases, norms or scalars."""
    return jnp.ndim(leaf) >= 2 and jnp.issubdtype(jnp.result_type(leaf), jnp.floating)


def _path_keys(path) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _leaves(params: PyTree, include: Include):
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    chosen = [include(_path_keys(p), leaf) for p, leaf in flat]
    return flat, treedef, chosen


def _traced(*trees) -> bool:
    """Whether any leaf is a tracer (then the jnp path runs, inside the caller's trace)."""
    return any(isinstance(x, jax.core.Tracer) for t in trees for x in jax.tree.leaves(t))


def _keep_top(scores, keep: int, xp):
    """A flat boolean mask of the ``keep`` highest scores, ties to the lower position (a stable sort)."""
    if xp is jnp:
        order = jnp.argsort(-scores, stable=True)
        return jnp.zeros(scores.shape, bool).at[order[:keep]].set(True)
    order = np.argsort(-scores, kind="stable")
    mask = np.zeros(scores.shape, bool)
    mask[order[:keep]] = True
    return mask


def _asarray(x, xp):
    """``x`` as an array of ``xp`` in the dtype jax would compute in (float64 only with ``jax_enable_x64``),
    so the host path ranks in the same precision as the jnp path."""
    if xp is jnp:
        return jnp.asarray(x)
    x = np.asarray(x)
    return x.astype(jax.dtypes.canonicalize_dtype(x.dtype), copy=False)


def _as_jax(tree: PyTree) -> PyTree:
    """Host results as ``jax.Array`` (a transfer, nothing compiled), so both paths return the same types."""
    return jax.device_put(tree)


def magnitude_masks(params: PyTree, sparsity: float, *, scope: str = "global",
                    include: Include | None = None, scores: PyTree | None = None) -> PyTree:
    """Masks that keep the largest-magnitude weights.

    Args:
      params: the model's parameters.
      sparsity: fraction of the prunable weights to remove, in [0, 1).
      scope: ``"global"`` (one threshold over every prunable leaf) or ``"layer"`` (the same sparsity in
        each prunable leaf).
      include: ``include(path, leaf) -> bool`` picks the prunable leaves (default :func:`default_include`).
      scores: optional importances with the structure and shapes of ``params`` that replace ``|w|``
        (e.g. :func:`complex_modulus_scores` for complex weights stored as real and imaginary parts).

    Returns:
      a pytree of boolean arrays with the structure of ``params``.

    Examples:
      >>> import jax.numpy as jnp
      >>> m = magnitude_masks({"w": jnp.array([[0.1, -3.0], [2.0, 0.5]])}, 0.5)
      >>> m["w"].tolist()
      [[False, True], [True, False]]
    """
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    flat, treedef, chosen = _leaves(params, include or default_include)
    if not any(chosen):
        raise ValueError("no prunable leaves: every leaf was excluded by `include`")
    xp = jnp if _traced(params, scores) else np
    if scores is None:
        score_leaves = [xp.abs(_asarray(leaf, xp)) for _, leaf in flat]
    else:
        score_leaves = treedef.flatten_up_to(scores)
        for (path, leaf), sc in zip(flat, score_leaves):
            if np.shape(sc) != np.shape(leaf):
                raise ValueError(f"scores of {'/'.join(_path_keys(path))} have shape {np.shape(sc)}, the "
                                 f"parameter {np.shape(leaf)}; give one score per weight")
        score_leaves = [_asarray(sc, xp) for sc in score_leaves]
    masks = [xp.ones(np.shape(leaf), bool) for _, leaf in flat]
    if scope == "layer":
        for i, ((_, leaf), c) in enumerate(zip(flat, chosen)):
            if c:
                n = int(np.prod(np.shape(leaf)))
                masks[i] = _keep_top(xp.ravel(score_leaves[i]), n - round(sparsity * n), xp).reshape(np.shape(leaf))
    else:
        # one threshold over leaves of any float dtypes: the scores are compared in float32 (both paths)
        idx = [i for i, c in enumerate(chosen) if c]
        cat = xp.concatenate([xp.ravel(score_leaves[i]).astype(xp.float32) for i in idx])
        n = cat.shape[0]
        keep = _keep_top(cat, n - round(sparsity * n), xp)
        start = 0
        for i in idx:
            shape = np.shape(flat[i][1])
            size = int(np.prod(shape))
            masks[i] = keep[start:start + size].reshape(shape)
            start += size
    out = jax.tree_util.tree_unflatten(treedef, masks)
    return out if xp is jnp else _as_jax(out)


def complex_modulus_scores(params: PyTree, pairs: Callable[[tuple[str, ...]], tuple[str, ...] | None]) -> PyTree:
    """``|w|`` for every leaf, except that the real and imaginary parts of a complex weight both get its modulus.

    Args:
      params: the parameters.
      pairs: ``pairs(path)`` gives, for the path of a real-part leaf, the path of its imaginary part
        (and for an imaginary-part leaf, its real part); None for ordinary leaves.

    Examples:
      >>> import jax.numpy as jnp
      >>> p = {"re": jnp.array([3.0, 0.1]), "im": jnp.array([4.0, 0.1])}
      >>> pair = lambda path: {("re",): ("im",), ("im",): ("re",)}.get(path)
      >>> [round(v, 4) for v in complex_modulus_scores(p, pair)["im"].tolist()]
      [5.0, 0.1414]
    """
    xp = jnp if _traced(params) else np
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    by_path = {_path_keys(p): _asarray(leaf, xp) for p, leaf in flat}
    out = []
    for p, leaf in flat:
        other = pairs(_path_keys(p))
        leaf = by_path[_path_keys(p)]
        if other is None:
            out.append(xp.abs(leaf))
        else:
            if other not in by_path:
                raise KeyError(f"the partner {'/'.join(other)} of {'/'.join(_path_keys(p))} is not in the params")
            out.append(xp.sqrt(xp.square(leaf) + xp.square(by_path[other])))
    out = jax.tree_util.tree_unflatten(treedef, out)
    return out if xp is jnp else _as_jax(out)


def apply_masks(params: PyTree, masks: PyTree) -> PyTree:
    """``params`` with the masked-out weights set to exactly zero.

    Concrete arrays are masked on the host (``np.where``: nothing compiles) and come back as ``jax.Array``
    (committed ones with their sharding); traced ones (inside ``jax.jit``) with ``jnp.where``.
    """
    if _traced(params, masks) or not all(isinstance(p, (jax.Array, np.ndarray)) for p in jax.tree.leaves(params)):
        return jax.tree.map(lambda p, m: jnp.where(m, p, jnp.zeros_like(p)), params, masks)

    def host(p, m):
        value = np.asarray(p)  # one transfer per leaf
        out = np.where(np.asarray(m), value, np.zeros((), value.dtype))
        # a committed (placed or sharded) input keeps its placement; an uncommitted one stays uncommitted
        committed = isinstance(p, jax.Array) and p.committed
        return jax.device_put(out, p.sharding) if committed else jax.device_put(out)

    return jax.tree.map(host, params, masks)


def density(masks: PyTree, *, params: PyTree | None = None, include: Include | None = None) -> float:
    """Fraction of kept weights over the prunable leaves (all leaves of ``masks`` when ``params`` is None)."""
    if params is None:
        leaves = jax.tree.leaves(masks)
    else:
        flat_m = jax.tree.leaves(masks)
        _, _, chosen = _leaves(params, include or default_include)
        leaves = [m for m, c in zip(flat_m, chosen) if c]
    kept = sum(int(np.count_nonzero(np.asarray(m))) for m in leaves)     # on the host: nothing compiles
    total = sum(int(np.prod(np.shape(m))) for m in leaves)
    return kept / total
