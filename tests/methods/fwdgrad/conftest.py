"""The fwdgrad experiments' tests compile at backend level 0.

Their programs (tiny MLP sweeps, closed-form descents) run once or twice each, so XLA's CPU backend
(LLVM) optimisations cost more time than they save (80 -> 48 CPU-s for this directory); level 0 computes
the same function. No test here measures compiled memory or FLOPs.
"""

import jax
import pytest


@pytest.fixture(scope="package", autouse=True)
def _quick_compiles():
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)
