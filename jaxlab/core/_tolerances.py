"""Comparison tolerances keyed on dtype, so every test and check uses the same numbers."""

from __future__ import annotations

import numpy as np

# (atol, rtol) per dtype: loose enough for the rounding of a few hundred accumulated terms,
# tight enough to catch an indexing or transposition error.
_TOLERANCES: dict[str, tuple[float, float]] = {
    "bfloat16": (1e-2, 2e-2),
    "float16": (1e-3, 1e-2),
    "float32": (1e-5, 1e-4),
    "float64": (1e-12, 1e-10),
    "complex64": (1e-5, 1e-4),
    "complex128": (1e-12, 1e-10),
}


def tolerances(dtype) -> tuple[float, float]:
    """Returns ``(atol, rtol)`` for comparing results computed in ``dtype``.

    Args:
      dtype: anything ``numpy.dtype`` (or jnp) understands, e.g. ``jnp.float32`` or ``"float64"``.

    Raises:
      ValueError: for a dtype without floating point tolerances (integers compare exactly).

    Examples:
      >>> tolerances("float32")
      (1e-05, 0.0001)
    """
    name = np.dtype(dtype).name
    try:
        return _TOLERANCES[name]
    except KeyError:
        raise ValueError(
            f"no tolerances for dtype {name!r}; known: {sorted(_TOLERANCES)}. "
            "Integer results should be compared exactly."
        ) from None
