"""When eager per-leaf work is better done with NumPy on the host than with ``jnp``."""

from __future__ import annotations

from typing import Any

import jax
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
