"""Fixtures of the forward-gradient tests.

Compiling is most of these tests' cost: small programs that run once, where XLA's CPU backend (LLVM)
optimisations cost more time than they save. ``quick_compiles`` (tests/compile_helpers.py) compiles at backend
level 0, which computes the same function. It is for the numerical tests only: the tests of compiled memory
and FLOPs (test_streaming_memory's memory test, test_schedule, test_bench) compile at the default level, as
users do.
"""

from ..compile_helpers import quick_compiles  # noqa: F401  (a fixture: the numerical tests use it)
