"""Baselines for ReCycle on the same windows: the per-step transformer and DLinear, both in jaxlab.timeseries.

The profile alone and persistence need no model: they are ``fc_profile`` of
:func:`~jaxlab.methods.recycle.profile_windows` with ``variant="last_rhp"`` and
``variant="persistence"``. :class:`~jaxlab.timeseries.VanillaTransformer` (one token per time step)
and DLinear (Zeng et al., arXiv 2205.13504) live in :mod:`jaxlab.timeseries`; this module keeps the
sinusoidal position table under its old name (``jaxlab.methods.recycle`` re-exports the transformer).
"""

from __future__ import annotations

import numpy as np

from jaxlab.timeseries import sinusoidal_positions as _positions


def sinusoidal_positions(n: int, d: int) -> np.ndarray:
    """The ``(n, d)`` sine/cosine position table of Vaswani et al. (2017): :func:`jaxlab.timeseries.sinusoidal_positions`."""
    return _positions(n, d)
