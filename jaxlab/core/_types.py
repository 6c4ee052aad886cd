"""Shared type aliases and protocols, defined once for the whole package."""

from __future__ import annotations

from typing import Any, Mapping, Protocol, TypeAlias

import jax

Array: TypeAlias = jax.Array
PRNGKey: TypeAlias = jax.Array
PyTree: TypeAlias = Any
Params: TypeAlias = PyTree
Scalar: TypeAlias = jax.Array | float | int
Metrics: TypeAlias = Mapping[str, Any]


class Meter(Protocol):
    """What the training loop needs of a measuring device (energy, power, ...).

    ``start()`` begins a measurement, ``read()`` returns the quantities accumulated since ``start``
    (for example ``{"energy_j": 12.5}``), ``stop()`` ends it and returns the final totals. The loop
    synchronises the device (``block_until_ready``) before each ``read`` so windows match steps.
    """

    def start(self) -> None: ...

    def read(self) -> dict[str, float]: ...

    def stop(self) -> dict[str, Any]: ...
