"""The forecaster interface shared by the time-series methods (ReCycle, tsprune, AutoPQ).

A forecaster config is a frozen dataclass that names its sizes and builds its flax module:

- ``input_len`` (L), ``horizon`` (H) and ``channels`` (C) fields;
- ``module()`` returning a ``flax.linen.Module`` whose ``__call__(x)`` maps a window ``(B, L, C)`` to the
  forecast ``(B, H, C)``. Models that read calendar features take them as keyword arguments, with
  defaults that keep the plain call working. A config whose model reads covariates known over the
  horizon declares ``future_features`` (F > 0); its module's ``__call__(x, future=...)`` takes them as
  ``(B, H, F)`` and ``make_forecaster`` initialises it with a zero ``future``.

``make_forecaster(config, key=key)`` builds the module and its variables, so
``model.apply(params, x)`` forecasts. Configs that also declare ``dependency_groups()`` can be pruned
structurally by ``jaxlab.prune.shrink``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import PRNGKey


class ForecasterConfig(Protocol):
    """What ``make_forecaster`` needs of a config."""

    input_len: int
    horizon: int
    channels: int

    def module(self) -> nn.Module: ...


def make_forecaster(config: ForecasterConfig, *, key: PRNGKey, dtype: Any = jnp.float32) -> tuple[nn.Module, Any]:
    """Builds the forecaster of ``config`` and initialises its variables on a zero window.

    Args:
      config: a forecaster config (see the module docstring).
      key: PRNG key for the initialisation.
      dtype: dtype of the dummy window used to trace the initialisation.

    Returns:
      ``(model, variables)``; ``model.apply(variables, x)`` maps ``(B, L, C)`` to ``(B, H, C)``.

    Raises:
      ValueError: when a size of the config is not a positive integer.
    """
    for name in ("input_len", "horizon", "channels"):
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{type(config).__name__}.{name} must be a positive integer, got {value!r}")
    model, initialise = _initializer(config, np.dtype(dtype))
    return model, initialise(key)


def _initializer(config: ForecasterConfig, dtype: np.dtype) -> tuple[nn.Module, Callable[[PRNGKey], Any]]:
    """``(module, jitted init)`` of ``config``, built and compiled once per (hashable) config: a fresh
    ``jax.jit(model.init)`` per call compiled again on every call (tsprune builds one model per cell and
    its method contract one per ``init``)."""
    try:
        hash(config)
    except TypeError:  # a config with unhashable fields: built per call
        return _build_initializer(config, dtype)
    return _cached_initializer(config, dtype)


def _build_initializer(config: ForecasterConfig, dtype: np.dtype) -> tuple[nn.Module, Callable[[PRNGKey], Any]]:
    model = config.module()
    x = np.zeros((1, config.input_len, config.channels), dtype)  # a host array: no program compiled
    future_features = getattr(config, "future_features", 0)  # optional part of the protocol
    extra = {"future": np.zeros((1, config.horizon, future_features), dtype)} if future_features else {}

    def init(key):  # the program's name in compile logs: jit(init)
        return model.init(key, x, **extra)

    return model, jax.jit(init)


_cached_initializer = functools.lru_cache(maxsize=64)(_build_initializer)
