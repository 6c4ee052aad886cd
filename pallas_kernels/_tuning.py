"""Shared helpers of the SpMV kernels: power-of-two rounding and device-kind lookup for tables."""

from __future__ import annotations

import jax


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (1 for n <= 1); Triton block shapes must be powers of two."""
    n = int(n)
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def device_kind() -> str:
    """The default device's kind (e.g. ``"NVIDIA H200"``), the key of the tuning tables."""
    try:
        return jax.devices()[0].device_kind
    except RuntimeError:  # no backend initialised
        return "default"


def lookup(table: dict, kind: str | None = None):
    """``table[kind]``, falling back to the longest key contained in ``kind``, then ``"default"``."""
    kind = device_kind() if kind is None else kind
    if kind in table:
        return table[kind]
    hits = [k for k in table if k != "default" and k.lower() in kind.lower()]
    return table[max(hits, key=len)] if hits else table["default"]
