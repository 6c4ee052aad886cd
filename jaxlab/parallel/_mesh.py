"""Device meshes with the project's fixed axis names.

The three mesh axes are defined here once and used everywhere else by these constants:

* ``DATA`` (``"data"``): model instances (data parallelism); gradients are reduced over it.
* ``SPACE`` (``"space"``): the domain (grid tokens) of one sample is split over it.
* ``TENSOR`` (``"tensor"``): channels, and the weights that act on them, are split over it.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh

DATA = "data"
SPACE = "space"
TENSOR = "tensor"
MESH_AXES: tuple[str, str, str] = (DATA, SPACE, TENSOR)


def resolve_sizes(sizes: Sequence[int], num_devices: int) -> tuple[int, ...]:
    """Replaces a single ``-1`` in ``sizes`` by what is left of ``num_devices``.

    Args:
      sizes: one size per mesh axis; at most one may be ``-1``.
      num_devices: the number of devices the mesh must use exactly.

    Returns:
      The sizes with ``-1`` resolved; their product equals ``num_devices``.

    Raises:
      ValueError: when sizes are not positive, more than one is ``-1``, or they do not multiply to
        ``num_devices``.

    Examples:
      >>> resolve_sizes((2, -1, 2), 8)
      (2, 2, 2)
    """
    sizes = tuple(int(s) for s in sizes)
    free = [i for i, s in enumerate(sizes) if s == -1]
    if len(free) > 1:
        raise ValueError(f"at most one mesh axis size may be -1, got {sizes}")
    if any(s == 0 or s < -1 for s in sizes):
        raise ValueError(f"mesh axis sizes must be positive (or -1 for the rest), got {sizes}")
    known = math.prod(s for s in sizes if s != -1)
    if free:
        if num_devices % known:
            raise ValueError(
                f"mesh sizes {sizes}: {num_devices} devices do not divide by the fixed sizes' product {known}"
            )
        sizes = tuple(num_devices // known if s == -1 else s for s in sizes)
    if math.prod(sizes) != num_devices:
        raise ValueError(
            f"mesh sizes {sizes} use {math.prod(sizes)} devices but {num_devices} are given; "
            "pass -1 for one axis to use the rest, or pass `devices=` explicitly"
        )
    return sizes


def make_mesh(
    data: int = 1,
    space: int = 1,
    tensor: int = 1,
    *,
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
    """Builds a ``("data", "space", "tensor")`` mesh.

    Args:
      data: number of model instances (data parallelism); ``-1`` for the rest of the devices.
      space: number of domain slabs per model instance; ``-1`` for the rest.
      tensor: number of channel slabs per model instance; ``-1`` for the rest.
      devices: the devices to use (default: all of ``jax.devices()``, which must then be used exactly;
        pass ``devices=jax.devices()[:n]`` for a smaller mesh).

    Returns:
      A ``jax.sharding.Mesh`` with axis names ``MESH_AXES``. Neighbouring devices share the
      ``tensor`` axis (the innermost), then ``space``, so the most frequent exchanges stay close.

    Examples:
      >>> mesh = make_mesh(data=1, space=1, tensor=1, devices=jax.devices()[:1])
      >>> mesh.axis_names
      ('data', 'space', 'tensor')
    """
    if devices is None:
        devices = jax.devices()
    devices = list(devices)
    sizes = resolve_sizes((data, space, tensor), len(devices))
    return Mesh(np.array(devices, dtype=object).reshape(sizes), MESH_AXES)


def mesh_sizes(mesh: Mesh) -> tuple[int, int, int]:
    """``(data, space, tensor)`` sizes of a mesh built by :func:`make_mesh` (missing axes count 1)."""
    shape = dict(mesh.shape)
    return tuple(int(shape.get(a, 1)) for a in MESH_AXES)  # type: ignore[return-value]
