"""The time-series layer's tests compile at backend level 0 (see ``zoo_helpers``), and draw inputs with NumPy."""

import pytest

from .zoo_helpers import fewer_optimizations, normal_draws


@pytest.fixture(scope="package", autouse=True)
def _quick_compiles():
    with fewer_optimizations():
        yield


@pytest.fixture
def draw():
    """``draw(shape, dtype=float32)``: fresh standard normal arrays from a fixed seed (compiles nothing)."""
    return normal_draws(0)
