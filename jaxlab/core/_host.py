"""When eager per-leaf work is better done with NumPy on the host than with ``jnp``."""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from jax.core import Tracer


def host_computable(x: Any) -> bool:
    """Whether ``x`` is a concrete ``jax.Array`` on one device or replicated, so that a NumPy copy of it can be
    computed with and the result put back where ``x`` was, with the same placement for any shape.

    Eager ``jnp`` reshapes, takes and weighted sums compile one XLA program per leaf shape and operation (tens
    per call for a model's parameters); the same copies and elementwise arithmetic in NumPy compile nothing.
    Tracers (inside ``jax.jit``) and sharded arrays are ``False``: callers keep the ``jnp`` path for them.
    """
    return (isinstance(x, jax.Array) and not isinstance(x, Tracer) and x.is_fully_addressable
            and x.sharding.is_fully_replicated)


def host_value(x: Any) -> tuple[Any, Callable[[Any], Any]]:
    """``(a NumPy copy of x, back)`` where :func:`host_computable` holds, with ``back(y)`` putting a result where
    ``x`` was (committed with its sharding, or uncommitted); ``(x, identity)`` for anything else (NumPy arrays,
    tracers, sharded arrays), which the caller computes with as before (``jnp``)."""
    if host_computable(x):
        sharding = x.sharding if x.committed else None
        return np.asarray(x), (lambda y: jax.device_put(y) if sharding is None else jax.device_put(y, sharding))
    return x, (lambda y: y)
