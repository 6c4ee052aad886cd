"""Structured pruning over declared dependency groups: importance, kept units, shrink, masks.

``shrink`` returns an ordinary, smaller model: a config whose sizes say so (so it reloads and
re-initialises like any other) and variables with the removed units taken out of every array the
groups name. Torch-Pruning finds groups by tracing and has left ``num_heads`` stale and failed to
reload pruned models (its issues #287 and #436); here every model declares its groups
(:class:`jaxlab.core.Group`), and the declaration is what gets tested.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core._groups import Group, Prunable, unit_merge, unit_view
from jaxlab.core._host import host_value


def _wrap(variables: Mapping) -> tuple[dict, bool]:
    """A bare params tree is treated as ``{"params": tree}``; paths start with the collection."""
    if "params" in variables:
        return dict(variables), False
    return {"params": variables}, True


def get_path(tree: Mapping, path: tuple[str, ...]):
    node = tree
    for i, key in enumerate(path):
        if not isinstance(node, Mapping) or key not in node:
            raise KeyError(f"the variables have no entry {'/'.join(path[:i + 1])} (declared by a dependency "
                           "group); check that the config matches the variables")
        node = node[key]
    return node


def set_path(tree: Mapping, path: tuple[str, ...], value) -> dict:
    """A copy of ``tree`` with ``path`` replaced (the dicts along the path are copied, leaves shared)."""
    out = dict(tree)
    if len(path) == 1:
        out[path[0]] = value
    else:
        out[path[0]] = set_path(tree[path[0]], path[1:], value)
    return out


def _present(tree: Mapping, group: Group):
    """The group's axes whose collection the tree holds (a params-only tree skips ``batch_stats``)."""
    return [ax for ax in group.axes if ax.path[0] in tree]


def group_importance(variables: Mapping, group: Group, *, p: float = 2.0) -> np.ndarray:
    """Per-unit magnitude importance: the mean over the group's scored axes of each unit's sum of |w|^p.

    This is torch-pruning's ``MagnitudeImportance(p, group_reduction="mean")`` (the importance
    Neuron Transplantation prunes by): each array contributes the sum over a unit's slice,
    and the group averages the contributions.

    Returns:
      a float64 NumPy array of shape ``(group.size,)``.
    """
    tree, _ = _wrap(variables)
    scores = []
    for ax in _present(tree, group):
        if not ax.score:
            continue
        arr = np.asarray(get_path(tree, ax.path))
        view = np.abs(unit_view(arr, ax, group.size).astype(np.float64)) ** p
        axis = ax.axis % arr.ndim + 1
        scores.append(np.moveaxis(view, axis, 0).reshape(group.size, -1).sum(axis=1))
    if not scores:
        raise ValueError(f"group {group.name!r} has no scored axis in these variables")
    return np.mean(scores, axis=0)


def top_units(scores, keep: int) -> np.ndarray:
    """Indices of the ``keep`` highest scores, ties broken by the lower index; returned sorted.

    Examples:
      >>> top_units([1.0, 3.0, 3.0, 0.5], 2)
      array([1, 2])
    """
    scores = np.asarray(scores)
    if not 0 <= keep <= scores.shape[0]:
        raise ValueError(f"keep must be in [0, {scores.shape[0]}], got {keep}")
    return np.sort(np.argsort(-scores, kind="stable")[:keep])


def _groups(config: Prunable) -> dict[str, Group]:
    groups = {g.name: g for g in config.dependency_groups()}
    if len(groups) != len(config.dependency_groups()):
        raise ValueError(f"{type(config).__name__} declares two dependency groups with the same name")
    return groups


def _kept(group: Group, indices) -> np.ndarray:
    kept = np.asarray(indices)
    if kept.ndim != 1 or (kept.size and not np.issubdtype(kept.dtype, np.integer)):
        raise ValueError(f"keep[{group.name!r}] must be a 1-D array of unit indices, got {kept!r}")
    kept = np.sort(kept.astype(np.int64))
    if kept.size == 0:
        raise ValueError(f"keep[{group.name!r}] is empty: a group must keep at least one unit")
    if kept[0] < 0 or kept[-1] >= group.size or np.any(np.diff(kept) == 0):
        raise ValueError(f"keep[{group.name!r}] must hold distinct indices in [0, {group.size}), got {kept.tolist()}")
    return kept


def shrink(config: Prunable, variables: Mapping, keep: Mapping[str, Any]) -> tuple[Any, Any]:
    """Removes units: ``(config, variables) -> (smaller config, smaller variables)``.

    Args:
      config: a model config that declares ``dependency_groups()``.
      variables: the model's variables (``{"params": ..., "batch_stats": ...}``) or its bare params tree.
      keep: group name -> indices of the units to keep. Groups not named keep every unit.

    Returns:
      the config with every named group resized, and variables of the same form as the input with the
      removed units taken out along every declared axis.

    Raises:
      ValueError: for an unknown group name or bad indices (the message lists the valid groups).
    """
    groups = _groups(config)
    unknown = sorted(set(keep) - set(groups))
    if unknown:
        raise ValueError(f"unknown dependency groups {unknown}; {type(config).__name__} declares {sorted(groups)}")
    tree, bare = _wrap(variables)
    new_config = config
    # Concrete one-device or replicated leaves are cut with NumPy (the jnp path, a reshape, a take and a reshape
    # per array and group, compiled three small programs per leaf: 24 for an Informer on every call) and put back
    # where they were at the end; one transfer per leaf, however many groups take from it.
    placed: dict[tuple[str, ...], Any] = {}  # path -> back
    for name, indices in keep.items():
        group = groups[name]
        kept = _kept(group, indices)
        for ax in _present(tree, group):
            arr: Any = get_path(tree, ax.path)
            if ax.path not in placed:
                arr, placed[ax.path] = host_value(arr)
            view = unit_view(arr, ax, group.size)
            take = jnp.take if isinstance(arr, jax.Array) else np.take
            taken = take(view, kept, axis=ax.axis % arr.ndim + 1)
            tree = set_path(tree, ax.path, unit_merge(taken, ax, arr.ndim))
        new_config = group.resize(new_config, kept)
    for path, back in placed.items():
        tree = set_path(tree, path, back(get_path(tree, path)))
    return new_config, (tree["params"] if bare else tree)


def structured_masks(config: Prunable, variables: Mapping, keep: Mapping[str, Any]):
    """0/1 masks (same tree form as ``variables``) that zero every entry of the units ``shrink`` would remove.

    The masked dense model and the shrunk model compute the same function wherever a removed unit's
    output cannot leak through a nonlinearity that is non-zero at zero; the pruning tests check this
    per model.
    """
    groups = _groups(config)
    tree, bare = _wrap(variables)
    masks = {c: _ones_like(v) for c, v in tree.items()}
    for name, indices in keep.items():
        group = groups[name]
        kept = _kept(group, indices)
        for ax in _present(tree, group):
            m = np.asarray(get_path(masks, ax.path)).copy()
            view = unit_view(m, ax, group.size)
            drop = np.setdiff1d(np.arange(group.size), kept)
            idx = [slice(None)] * view.ndim
            idx[ax.axis % m.ndim + 1] = drop
            view[tuple(idx)] = 0
            masks = set_path(masks, ax.path, unit_merge(view, ax, m.ndim))
    return masks["params"] if bare else masks


def _ones_like(tree):
    if isinstance(tree, Mapping):
        return {k: _ones_like(v) for k, v in tree.items()}
    return np.ones(np.shape(tree), dtype=np.asarray(tree).dtype)
