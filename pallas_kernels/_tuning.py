"""Shared helpers of the SpMV kernels: power-of-two rounding and the device-kind lookup of the tuning tables.

The tables are keyed by the device kind (``jax.Device.device_kind``, e.g. ``"NVIDIA H200"``) of the device the
arrays live on, never by ``jax.devices()[0]``: on a machine with two kinds of GPU each array gets its own
device's entry. Inside ``jit`` an array is traced and has no device; ``jaxlab.sparse.spmv`` then passes the
kind of the device the computation is lowered for, and a direct kernel call gets the ``"default"`` entry.
"""

from __future__ import annotations

import jax
from jax.core import Tracer


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (1 for n <= 1); Triton block shapes must be powers of two."""
    n = int(n)
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def array_device_kind(x) -> str | None:
    """The device kind of a concrete array's (first) device, or None for a traced or host array."""
    if isinstance(x, Tracer) or not isinstance(x, jax.Array):
        return None
    try:
        return next(iter(x.devices())).device_kind
    except (RuntimeError, StopIteration, ValueError):  # deleted or not yet placed
        return None


def lookup(table: dict, kind: str | None = None):
    """``table[kind]``, else the entry of the longest key contained in ``kind``, else ``table["default"]``."""
    if kind is None:
        return table["default"]
    if kind in table:
        return table[kind]
    hits = [k for k in table if k != "default" and k.lower() in kind.lower()]
    return table[max(hits, key=len)] if hits else table["default"]
