"""Cheap compiles for the tests: XLA's backend level 0, for one jit or for every compile of a test or package.

Most tests compile small programs that run once or twice on toy inputs, so XLA's CPU backend (LLVM)
optimisations cost more time than they save. Level 0 computes the same function; only how much work XLA spends
on optimising it changes. Tests of what XLA makes of a program (compiled memory, FLOPs, optimised HLO) keep the
default level, as users do, and so do the benchmarks.

- :func:`quick_jit`: ``jax.jit`` with :data:`QUICK_COMPILE` (plus the older fusion emitters, where this XLA has
  them), for one-shot calls;
- :func:`fewer_optimizations` / :func:`full_optimizations`: every compile inside (the eager ops' too) at backend
  level 0, or at the default level;
- :func:`older_fusion_emitters`: every compile inside (the library's own jits too) with the older fusion emitters;
- :func:`compiled_programs`: the names of the programs compiled inside a block (for tests that count compiles);
- the fixtures ``_quick_compiles`` (package-scoped, autouse: import it into a package's ``conftest.py``) and
  ``quick_compiles`` (one test: ``pytest.mark.usefixtures("quick_compiles")``).
"""

import contextlib
import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import pytest

#: The monitoring event of every backend compilation: jitted functions, ahead-of-time ``lower().compile()`` and
#: each eagerly dispatched op alike.
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"

#: Compiling at backend level 0 roughly halves the compile time of these tiny programs. The older (non-MLIR)
#: fusion emitters, where this XLA still has them, compile the zoo models in a further 40-60% less time
#: (Crossformer 4.9 -> 2.8 CPU-s); see :func:`fusion_emitter_option`.
QUICK_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@functools.cache
def fusion_emitter_option() -> dict:
    """``{"xla_cpu_use_fusion_emitters": False}`` where this XLA accepts the option, else ``{}``.

    The option is not part of JAX's API: an XLA without it refuses to compile ("No such compile option"), so
    it is tried once on a trivial program.
    """
    option = {"xla_cpu_use_fusion_emitters": False}
    try:
        jax.jit(lambda a: a + 1, compiler_options=option).lower(np.float32(0)).compile()
    except Exception:  # noqa: BLE001  (XlaRuntimeError or ValueError, depending on the version)
        return {}
    return option


def quick_jit(fn=None, **kwargs):
    """``jax.jit(fn)`` compiled with :data:`QUICK_COMPILE` (for one-shot calls in tests); also a decorator."""
    if fn is None:
        return functools.partial(quick_jit, **kwargs)
    return jax.jit(fn, compiler_options={**QUICK_COMPILE, **fusion_emitter_option()}, **kwargs)


@contextlib.contextmanager
def _most_optimizations_disabled(disabled: bool):
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", disabled)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)


def fewer_optimizations():
    """Every compile inside (the eager ops' too) at backend level 0 (``jax_disable_most_optimizations``)."""
    return _most_optimizations_disabled(True)


def full_optimizations():
    """Every compile inside at XLA's default level: for a test whose time goes into running its programs."""
    return _most_optimizations_disabled(False)


@contextlib.contextmanager
def older_fusion_emitters():
    """Every compile inside, the library's own jits included, with :func:`fusion_emitter_option` (what
    :func:`quick_jit` gives the tests' own programs): the older CPU fusion emitters compile the library's small
    programs in about half the time (a forward-gradient MLP sweep at level 0: 1.4 -> 0.7 s).

    JAX has no setting for it (``XLA_FLAGS`` is read once, at start-up, for every test), so inside the block
    the function that builds each compile's options (``jax._src.compiler.get_compile_options``, private) is
    wrapped to add the option. Where this JAX lacks that function or its ``env_options_overrides`` argument,
    or this XLA lacks the option, the block changes nothing. Like level 0, it changes how much work XLA spends,
    not the function computed; not for tests of compiled memory or FLOPs.
    """
    from jax._src import compiler

    option, real = fusion_emitter_option(), getattr(compiler, "get_compile_options", None)
    if not option or real is None or "env_options_overrides" not in inspect.signature(real).parameters:
        yield
        return

    @functools.wraps(real)
    def with_option(*args, env_options_overrides=None, **kwargs):
        return real(*args, env_options_overrides={**option, **(env_options_overrides or {})}, **kwargs)

    compiler.get_compile_options = with_option
    try:
        yield
    finally:
        compiler.get_compile_options = real


@pytest.fixture(scope="package", autouse=True)
def _quick_compiles():
    """Every compile of the package's tests at backend level 0 (imported into the conftests that want it)."""
    with fewer_optimizations():
        yield


@pytest.fixture
def quick_compiles():
    """Every compile of one test at backend level 0."""
    with fewer_optimizations():
        yield


@contextlib.contextmanager
def compiled_programs(record: Callable[[str | None], Any] | None = None):
    """Yields a list that collects the name of every program compiled inside the block (``"jit(step)"``...).

    Args:
      record: what to collect per compile instead of its name, as a function of the name (e.g. the step a
        trainer is at: ``record=lambda name: trainer.t``).
    """
    found: list = []

    def listener(event: str, duration_secs: float, **kwargs: str | int) -> None:
        if event == COMPILE_EVENT:
            name = kwargs.get("fun_name")
            found.append(name if record is None else record(name))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield found
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
