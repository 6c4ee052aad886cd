"""Shared pieces of the AutoPQ tests: a scripted energy meter and a zero-parameter cINN.

Every compile of these tests runs at XLA's backend level 0 (``_quick_compiles``, see
tests/compile_helpers.py): the programs are small and run a few times each, so XLA's CPU optimisations
cost more than they save; what the tests check (inverses, log-determinants, quantiles, searches) does not
depend on them.
"""

import jax
import jax.numpy as jnp
import pytest

from jaxlab.methods.autopq import CINN

from ... import compile_helpers
from ...compile_helpers import _quick_compiles  # noqa: F401  (an autouse fixture for this package)


class FixedMeter:
    """A ``jaxlab.core.Meter`` that charges ``joules`` per measurement (no sensors, no threads)."""

    def __init__(self, joules: float = 1.0):
        self.joules = joules
        self.starts = 0

    def start(self) -> None:
        self.starts += 1

    def read(self) -> dict:
        return {"energy_j": self.joules}

    def stop(self) -> dict:
        return {"energy_j": self.joules, "estimated": False}


@pytest.fixture
def fixed_meter():
    return FixedMeter


@pytest.fixture(scope="session")
def permutation_cinn():
    """A cINN with every parameter 0: each coupling is the identity, so z = x[:, P] for a fixed permutation
    P, and sampling around a point forecast has a closed form (two blocks: cheap to compile)."""
    model = CINN(horizon=4, num_blocks=2)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 4)), jnp.zeros((1, 2)))
    return model, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


@pytest.fixture
def full_optimizations():
    """XLA's usual optimisations for one test whose time goes into running its programs (tens of calls on
    200k samples), not into compiling them: there backend level 0 costs more than it saves."""
    with compile_helpers.full_optimizations():
        yield
