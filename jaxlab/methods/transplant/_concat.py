"""``concat``: one wide model that computes the output-averaged ensemble of its members exactly.

Every dependency group of the wide model holds the units of all members side by side (member 0's first).
Per array, with the unit axes of :mod:`._layout`:

- an array with unit axes is the members' arrays placed on the block diagonal of those axes: the first
  layer (unit axis on its outputs only) stacks its members' outputs, a middle layer (unit axes on inputs
  and outputs) is block-diagonal, a BatchNorm vector is concatenated, and the dense layer after an NHWC
  flatten, whose rows interleave as ``(h, w, member, channel)``, gets that interleaved layout (a
  ``block_diag`` of the members' kernels would wire member 0's channels of pixel 1 to member 1's units);
- an output array (the classifier, see :mod:`._layout`) is summed over members with weights ``c_i``:
  its kernel's rows are concatenated and scaled by ``c_i``, its bias is ``sum_i c_i b_i``.

Cross-member entries are exactly zero, so the wide model's logits are ``sum_i c_i logits_i``; with the
default ``c_i = in_i / sum_j in_j`` (``in_i``: member ``i``'s inputs to the classifier, 1/k for equal
widths) that is the reference's ``concat_models`` and, for equal widths, the mean of the members' logits.
BatchNorm's running statistics are concatenated like its scale and bias (the reference drops
``num_batches_tracked``, which flax does not have).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from ._layout import Path, UnitAxis, flatten, groups_of, is_jax, is_output, tiles, unflatten, unit_axes, view_shape

Member = tuple[Any, Mapping]


def _structure(members: Sequence[Member]):
    """Groups, flat leaves, unit axes and per-member group sizes; checks that the members fit together."""
    if len(members) == 0:
        raise ValueError("fusion needs at least one member, got none")
    for i, m in enumerate(members):
        if not (isinstance(m, (tuple, list)) and len(m) == 2):
            raise TypeError(f"member {i} must be a (config, variables) pair, got {type(m).__name__}")
    groups = [groups_of(cfg) for cfg, _ in members]
    flat = [flatten(v) for _, v in members]
    leaves = [f[0] for f in flat]
    bare = flat[0][1]
    names0 = [g.name for g in groups[0]]
    for i in range(1, len(members)):
        if [g.name for g in groups[i]] != names0 or [tuple(a.path for a in g.axes) for g in groups[i]] != \
                [tuple(a.path for a in g.axes) for g in groups[0]]:
            raise ValueError(f"member {i} declares other dependency groups than member 0; members must share "
                             "one architecture (widths may differ)")
        if set(leaves[i]) != set(leaves[0]) or flat[i][1] != bare:
            diff = sorted(set(leaves[i]) ^ set(leaves[0]))[:3]
            raise ValueError(f"member {i} has other variables than member 0 (e.g. {['/'.join(p) for p in diff]})")
    axes = unit_axes(groups[0], leaves[0])
    for i in range(1, len(members)):
        unit_axes(groups[i], leaves[i])   # the same checks on every member
    sizes = [{g.name: int(g.size) for g in gs} for gs in groups]
    return groups[0], leaves, bare, axes, sizes


def output_weights(members: Sequence[Member]) -> np.ndarray:
    """The reference's ``c_i = in_i / sum_j in_j`` (``in_i``: the classifier's inputs from member ``i``).

    With no output array spanned by a group, every member gets ``1/k``.

    Raises:
      ValueError: output arrays that disagree on the members' shares.
    """
    _, leaves, _, axes, sizes = _structure(members)
    return _output_weights(leaves, axes, sizes)


def _output_weights(leaves, axes, sizes) -> np.ndarray:
    k = len(leaves)
    shares = None
    for path, arr in leaves[0].items():
        ax = axes[path]
        if not ax or not is_output(path, np.ndim(arr), ax):
            continue
        n = np.array([np.prod([sizes[i][u.group] for u in ax]) for i in range(k)], np.float64)
        c = n / n.sum()
        if shares is not None and not np.allclose(c, shares):
            raise ValueError(f"output arrays disagree on the members' shares ({shares} vs {c} at "
                             f"{'/'.join(path)}); pass weights= explicitly")
        shares = c
    return np.full(k, 1.0 / k) if shares is None else shares


def _check_weights(weights, k: int) -> np.ndarray:
    w = np.asarray(weights, np.float64)
    if w.shape != (k,) or not np.all(np.isfinite(w)):
        raise ValueError(f"weights must be {k} finite numbers (one per member), got {weights!r}")
    return w


def assemble(path: Path, arrays: Sequence[Any], axes: Sequence[UnitAxis], sizes: Sequence[Mapping[str, int]],
             weights: np.ndarray) -> np.ndarray:
    """One array of the wide model from the members' arrays (NumPy; see the module docstring).

    ``sizes[i]`` are member ``i``'s group sizes (zero is allowed: a member that contributes no unit to
    a group). Output arrays are weighted by ``weights``; the others are placed on the block diagonal.
    """
    arrays = [np.asarray(a) for a in arrays]
    dtype = np.result_type(*arrays)
    output = is_output(path, arrays[0].ndim, axes)
    if not axes:
        return sum(np.asarray(w, dtype) * a for w, a in zip(weights, arrays)).astype(dtype)
    tile = {tiles(a.shape, axes, s, path) if a.size else None for a, s in zip(arrays, sizes)} - {None}
    if len(tile) > 1:
        raise ValueError(f"members' {'/'.join(path)} have different tiles {sorted(tile)} (inputs of different "
                         "resolution?); members must see inputs of one shape")
    tile = next(iter(tile)) if tile else tuple(1 if u.tile is None else u.tile for u in axes)
    total = {u.group: sum(s[u.group] for s in sizes) for u in axes}
    shape = list(arrays[0].shape)
    for u, t in zip(axes, tile):
        shape[u.axis] = t * total[u.group] * u.block
    wide_view, dims = view_shape(shape, axes, total, path)
    wide = np.zeros(wide_view, dtype)
    offsets = {u.group: 0 for u in axes}
    for a, s, w in zip(arrays, sizes, weights):
        if all(s[u.group] for u in axes):
            v = a.reshape(view_shape(a.shape, axes, s, path)[0])
            index = [slice(None)] * len(wide_view)
            for d, u in zip(dims, axes):
                index[d] = slice(offsets[u.group], offsets[u.group] + s[u.group])
            wide[tuple(index)] = v * np.asarray(w, dtype) if output else v
        for u in axes:
            offsets[u.group] += s[u.group]
    return wide.reshape(shape)


def concat(members: Sequence[Member], *, weights: Sequence[float] | None = None) -> tuple[Any, Any]:
    """The wide model of ``members``: its logits are ``sum_i c_i logits_i`` (the ensemble mean for equal widths).

    Args:
      members: ``(config, variables)`` pairs of one architecture (a config that declares
        ``dependency_groups()``, e.g. :class:`jaxlab.nn.MLP`); widths may differ. ``variables`` is a
        model's variables (``{"params": ..., "batch_stats": ...}``) or its bare params tree.
      weights: the ``c_i``; default :func:`output_weights` (``in_i / sum_j in_j``).

    Returns:
      ``(wide_config, wide_variables)``: member 0's config with every group widened to the members' total,
      and variables of the same form as the members' (jax arrays if theirs are).

    Raises:
      ValueError, TypeError, KeyError: members that do not fit one architecture; the message names the member
        or array.

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> from jaxlab.nn import MLP
      >>> cfg, x = MLP(features=(8, 3)), jnp.ones((2, 5), jnp.float32)
      >>> members = [(cfg, cfg.init(jax.random.key(i), x)) for i in range(3)]
      >>> wide_cfg, wide = concat(members)
      >>> wide_cfg.features
      (24, 3)
      >>> mean = sum(c.apply(v, x) for c, v in members) / 3
      >>> bool(np.allclose(wide_cfg.apply(wide, x), mean, atol=1e-6))
      True
    """
    groups, leaves, bare, axes, sizes = _structure(members)
    k = len(members)
    c = _output_weights(leaves, axes, sizes) if weights is None else _check_weights(weights, k)
    to_jax = is_jax(next(iter(leaves[0].values())))
    wide = {}
    for path in leaves[0]:
        arr = assemble(path, [lv[path] for lv in leaves], axes[path], sizes, c)
        wide[path] = jnp.asarray(arr) if to_jax else arr
    config = members[0][0]
    for g in groups:
        config = g.resize(config, np.arange(sum(s[g.name] for s in sizes)))
    return config, unflatten(wide, bare)
