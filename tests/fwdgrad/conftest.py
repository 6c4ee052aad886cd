"""Fixtures of the forward-gradient tests.

Compiling is most of these tests' cost: small programs that run once, where XLA's CPU backend (LLVM)
optimisations cost more time than they save. ``quick_compiles`` (tests/compile_helpers.py) compiles at backend
level 0, which computes the same function. It is for the numerical tests only: the tests of compiled memory
and FLOPs (test_streaming_memory's memory test, test_schedule, test_bench) compile at the default level, as
users do. The numerical tests also compile their own programs through ``quick_jit`` (the same level, plus
the older fusion emitters where this XLA has them), and build their inputs with NumPy: an eager ``jax.random``
draw or ``jnp`` build is one more compilation per operation and shape. Here ``quick_compiles`` also gives the
library's own jits (``make_train_step``'s, ...) the older fusion emitters (``older_fusion_emitters``).
"""

import pytest

from ..compile_helpers import fewer_optimizations, older_fusion_emitters


@pytest.fixture
def quick_compiles():
    """Every compile of one test at backend level 0, with the older fusion emitters (the numerical tests)."""
    with fewer_optimizations(), older_fusion_emitters():
        yield
