"""The sparse, Krylov and Pallas-kernel tests compile at XLA's backend level 0 (``jax_disable_most_optimizations``).

Compiling is most of their time: many small programs, each run once or a few times on tiny inputs, so the
backend's optimisations cost more than they save (the tests of tests/sparse: 33.4 -> 27.6 CPU-s). Level 0 computes the same
functions (HLO fusion and SPMD partitioning still run; LLVM optimises less), so every check is unchanged;
what XLA makes of a program at its default level is what the benchmarks measure, not these tests.
"""

import jax
import pytest


@pytest.fixture(scope="package", autouse=True)
def _quick_compiles():
    """Every compile of the package's tests (the eager ops' too) at backend level 0."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", before)
