"""Dependency groups: which parameter axes a model's units (neurons, channels, heads) span.

A model declares its groups explicitly; nothing is found by tracing. Structured pruning
(``jaxlab.prune.shrink``) and model fusion (Neuron Transplantation) read the declarations to take or
concatenate whole units across every array they touch. The types live in ``core`` so that models in
``nn`` and ``timeseries`` can declare groups without importing the layers that use them.

An :class:`Axis` views one array axis as ``(tile, size, block)``: unit ``u`` of the group owns the
entries ``[:, u, :]`` of that view. ``block`` covers units that are contiguous runs (a head of
``head_dim`` columns in a fused ``(d_model, heads * head_dim)`` kernel); ``tile`` covers units that
repeat with a stride (a channel of an NHWC map flattened into a dense layer's input owns the entries
``c, c + C, c + 2C, ...``, so ``tile = H * W``).

>>> import numpy as np
>>> ax = Axis(("params", "dense", "kernel"), axis=0, tile=2)
>>> unit_view(np.arange(6).reshape(6, 1), ax, size=3)[:, :, 0, 0]   # unit u owns rows u and u + 3
array([[0, 1, 2],
       [3, 4, 5]])
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Protocol, Sequence

import numpy as np


class Axis(NamedTuple):
    """One array axis spanned by a group.

    Attributes:
      path: keys from the root of the model's variables (``("params", "dense_0", "kernel")``,
        ``("batch_stats", "bn_0", "mean")``).
      axis: the array axis (negative values count from the end).
      tile: how many times the run of all units repeats along the axis (stride pattern).
      block: entries per unit in one run (contiguous pattern).
      score: whether the axis counts towards magnitude importance (biases and statistics: False).
    """

    path: tuple[str, ...]
    axis: int
    tile: int = 1
    block: int = 1
    score: bool = True


class Group(NamedTuple):
    """A set of units that must be kept or removed together, and how the model's config follows.

    Attributes:
      name: unique within the model (``"dense_0"``, ``"encoder_0/heads"``).
      size: number of units.
      axes: every array axis the units span.
      resize: ``resize(config, kept) -> config`` gives the config of the model with only the ``kept``
        units (a sorted integer array); :func:`set_field` builds the common case.
    """

    name: str
    size: int
    axes: tuple[Axis, ...]
    resize: Callable[[Any, np.ndarray], Any]


class Prunable(Protocol):
    """A model config (a frozen dataclass or a flax module) that declares its dependency groups."""

    def dependency_groups(self) -> tuple[Group, ...]: ...


def replace_fields(config: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` that also works on flax modules (through ``Module.clone``)."""
    import flax.linen as nn

    if isinstance(config, nn.Module):
        return config.clone(**changes)
    return dataclasses.replace(config, **changes)


def set_field(name: str, index: int | None = None, *, per_unit: int = 1) -> Callable[[Any, np.ndarray], Any]:
    """A ``Group.resize`` that sets ``config.<name>`` (or its entry ``index``) to ``per_unit * len(kept)``.

    Examples:
      >>> import dataclasses, numpy as np
      >>> @dataclasses.dataclass(frozen=True)
      ... class C:
      ...     widths: tuple = (8, 8)
      >>> set_field("widths", 1)(C(), np.arange(3))
      C(widths=(8, 3))
    """

    def resize(config: Any, kept: np.ndarray) -> Any:
        value = per_unit * len(kept)
        if index is None:
            return replace_fields(config, **{name: value})
        seq: Sequence = getattr(config, name)
        return replace_fields(config, **{name: type(seq)(value if i == index else v for i, v in enumerate(seq))})

    return resize


def unit_view(array: np.ndarray, ax: Axis, size: int):
    """``array`` with ``ax.axis`` split into ``(tile, size, block)`` (the unit axis is ``axis + 1``).

    Raises:
      ValueError: when the axis length is not ``tile * size * block``.
    """
    axis = ax.axis % array.ndim
    if array.shape[axis] != ax.tile * size * ax.block:
        raise ValueError(f"axis {ax.axis} of {'/'.join(ax.path)} has length {array.shape[axis]}, but the group "
                         f"declares tile {ax.tile} x {size} units x block {ax.block} = {ax.tile * size * ax.block}; "
                         "the dependency groups do not match these variables")
    return array.reshape(array.shape[:axis] + (ax.tile, size, ax.block) + array.shape[axis + 1:])


def unit_merge(view, ax: Axis, ndim: int):
    """Inverse of :func:`unit_view` for an array of the original rank ``ndim``."""
    axis = ax.axis % ndim
    shape = view.shape
    return view.reshape(shape[:axis] + (shape[axis] * shape[axis + 1] * shape[axis + 2],) + shape[axis + 3:])
