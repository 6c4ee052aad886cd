"""Shared PETNet test data: one simulation of the reduced preset for every test module.

Compiling the simulator costs about 8 CPU-s per sample count (its random draws dominate), so the modules
take slices of one 4,000-sample set instead of simulating their own sizes.

Every compile of these tests runs at XLA's backend level 0 (``_quick_compiles``, see
tests/timeseries/zoo_helpers.py): the programs are small and run a few times each, so XLA's CPU optimisations
cost more than they save; what the tests check does not depend on them.
"""

import jax
import pytest

from jaxlab.methods.petnet import get_preset, simulate

from ...timeseries.zoo_helpers import _quick_compiles  # noqa: F401  (an autouse fixture for this package)


@pytest.fixture(scope="package")
def reduced4000(_quick_compiles):
    """``(preset, data)``: 4,000 samples of the reduced preset (key 0), on the host."""
    p = get_preset("reduced")
    return p, jax.device_get(simulate(jax.random.key(0), p, 4000))
