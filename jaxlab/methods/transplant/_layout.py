"""Where the units of each dependency group sit in a model's arrays, for fusing several members at once.

A model declares its groups (``config.dependency_groups()``, see :class:`jaxlab.core.Group`). Fusion reads
them per array: an array's *unit axes* are the axes that some group spans. Every other axis is shared by
all members (the image channels of the first layer, the classes of the classifier, a kernel's window).

The one thing groups do not say is which arrays write into the model's output (the logits): those are
the arrays whose output axis is not a unit axis, and there the members' contributions are summed rather
than kept apart. By the flax convention an array's output axis is its last one (``Dense`` and ``Conv``
kernels are ``(..., in, out)``; biases and BatchNorm vectors have one axis), so an array of the
``params`` collection whose last axis is no unit axis is an *output array* (the classifier's kernel and
bias). An array of another collection (``batch_stats``) without a unit axis has no meaning across members
and is refused.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import jax
import numpy as np
from flax import traverse_util

from jaxlab.core._groups import Axis, Group, axis_tile

Path = tuple[str, ...]


class UnitAxis(NamedTuple):
    """One unit axis of one array: ``axis`` (non-negative) of the array is spanned by ``group``."""

    group: str
    axis: int
    tile: int | None
    block: int
    score: bool

    def as_axis(self, path: Path) -> Axis:
        return Axis(path, self.axis, self.tile, self.block, self.score)


def flatten(variables: Mapping) -> tuple[dict[Path, Any], bool]:
    """``{path: array}`` with paths starting at the collection; a bare params tree counts as ``{"params": tree}``.

    Returns:
      the flat dict and whether the input was a bare params tree.
    """
    bare = "params" not in variables
    tree = {"params": variables} if bare else variables
    return traverse_util.flatten_dict(tree), bare


def unflatten(leaves: Mapping[Path, Any], bare: bool) -> dict:
    tree = traverse_util.unflatten_dict(dict(leaves))
    return tree["params"] if bare else tree


def groups_of(config: Any) -> tuple[Group, ...]:
    if not hasattr(config, "dependency_groups"):
        raise TypeError(f"{type(config).__name__} declares no dependency_groups(); fusion needs them "
                        "(see jaxlab.nn.MLP.dependency_groups for an example)")
    groups = tuple(config.dependency_groups())
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise ValueError(f"{type(config).__name__} declares two dependency groups with the same name: {names}")
    return groups


def unit_axes(groups: Sequence[Group], leaves: Mapping[Path, Any]) -> dict[Path, tuple[UnitAxis, ...]]:
    """The unit axes of every array (sorted by axis); arrays without any map to ``()``.

    Axes of collections absent from ``leaves`` (``batch_stats`` of a params-only tree) are skipped.

    Raises:
      KeyError: a group names an array the variables lack.
      ValueError: two groups claim the same axis, or an axis is out of range.
    """
    collections = {p[0] for p in leaves}
    out: dict[Path, list[UnitAxis]] = {p: [] for p in leaves}
    for g in groups:
        for ax in g.axes:
            if ax.path[0] not in collections:
                continue
            if ax.path not in leaves:
                raise KeyError(f"the variables have no entry {'/'.join(ax.path)} (declared by dependency group "
                               f"{g.name!r}); check that the config matches the variables")
            ndim = np.ndim(leaves[ax.path])
            if not -ndim <= ax.axis < ndim:
                raise ValueError(f"group {g.name!r} declares axis {ax.axis} of {'/'.join(ax.path)}, which has "
                                 f"{ndim} axes")
            axis = ax.axis % ndim
            for other in out[ax.path]:
                if other.axis == axis:
                    raise ValueError(f"groups {other.group!r} and {g.name!r} both claim axis {axis} of "
                                     f"{'/'.join(ax.path)}; each axis belongs to at most one group")
            out[ax.path].append(UnitAxis(g.name, axis, ax.tile, ax.block, ax.score))
    return {p: tuple(sorted(v, key=lambda u: u.axis)) for p, v in out.items()}


def is_output(path: Path, ndim: int, axes: Sequence[UnitAxis]) -> bool:
    """Whether the array writes into the model's shared output (see the module docstring).

    Raises:
      ValueError: an array outside ``params`` that no group spans (it cannot be fused).
    """
    if path[0] != "params":
        if not axes:
            raise ValueError(f"{'/'.join(path)} is spanned by no dependency group and is not a parameter; "
                             "members' values of it cannot be combined. Declare its axis in a group")
        return False
    return not axes or axes[-1].axis != ndim - 1


def view_shape(shape: Sequence[int], axes: Sequence[UnitAxis], sizes: Mapping[str, int],
               path: Path = ()) -> tuple[tuple[int, ...], list[int]]:
    """The shape with every unit axis split into ``(tile, size, block)``, and where the size axes landed."""
    out: list[int] = []
    dims: list[int] = []
    by_axis = {u.axis: u for u in axes}
    for a, n in enumerate(shape):
        u = by_axis.get(a)
        if u is None:
            out.append(int(n))
            continue
        size = sizes[u.group]
        tile = axis_tile(shape, u.as_axis(path), size)
        dims.append(len(out) + 1)
        out += [tile, size, u.block]
    return tuple(out), dims


def tiles(shape: Sequence[int], axes: Sequence[UnitAxis], sizes: Mapping[str, int], path: Path = ()) -> tuple[int, ...]:
    return tuple(axis_tile(shape, u.as_axis(path), sizes[u.group]) for u in axes)


def is_jax(x: Any) -> bool:
    return isinstance(x, jax.Array)
