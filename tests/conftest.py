"""Test setup: 8 fake CPU devices, float64 for references, strict promotion, a fixed-seed key."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def getkey():
    """Returns a function giving a fresh PRNG key on each call, from a fixed seed."""
    base = jax.random.key(0)
    counter = iter(range(1 << 30))

    def _getkey():
        return jax.random.fold_in(base, next(counter))

    return _getkey
