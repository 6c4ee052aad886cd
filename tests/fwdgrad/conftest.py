"""Fixtures of the forward-gradient tests.

Compiling is most of these tests' cost: small programs that run once, where XLA's CPU backend (LLVM)
optimisations cost more time than they save. ``quick_compiles`` compiles at backend level 0
(``jax_disable_most_optimizations``), which computes the same function. It is for the numerical tests
only: the tests of compiled memory and FLOPs (test_streaming_memory's memory test, test_schedule,
test_bench) compile at the default level, as users do.
"""

import jax
import pytest


@pytest.fixture
def quick_compiles():
    """Every compile inside the test (the eager ops' too) at backend level 0."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)
