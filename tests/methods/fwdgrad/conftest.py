"""The fwdgrad experiments' tests compile at backend level 0 (tests/compile_helpers.py).

Their programs (tiny MLP sweeps, closed-form descents) run once or twice each, so XLA's CPU backend
(LLVM) optimisations cost more time than they save (80 -> 48 CPU-s for this directory); level 0 computes
the same function. No test here measures compiled memory or FLOPs, so the library's jits (the sweeps, the
experiments' runs, train_step) also get the older CPU fusion emitters (``older_fusion_emitters``: about half
their compile time; with tests/fwdgrad's ``quick_compiles`` doing the same, 70 -> 62 s for both directories,
serial).
"""

import pytest

from ...compile_helpers import fewer_optimizations, older_fusion_emitters


@pytest.fixture(scope="package", autouse=True)
def _quick_compiles():
    """Every compile of the package's tests at backend level 0, with the older fusion emitters."""
    with fewer_optimizations(), older_fusion_emitters():
        yield
