"""Shared PETNet test data: one simulation of the reduced preset for every test module.

Compiling the simulator costs about 8 CPU-s per sample count (its random draws dominate), so the modules
take slices of one 4,000-sample set instead of simulating their own sizes.
"""

import jax
import pytest

from jaxlab.methods.petnet import get_preset, simulate


@pytest.fixture(scope="session")
def reduced4000():
    """``(preset, data)``: 4,000 samples of the reduced preset (key 0), on the host."""
    p = get_preset("reduced")
    return p, jax.device_get(simulate(jax.random.key(0), p, 4000))
