"""Counting the XLA programs that a piece of library code compiles (for tests that assert compile counts).

JAX reports every backend compilation (jitted functions, ahead-of-time ``lower().compile()`` and each eagerly
dispatched op alike) as the monitoring event :data:`COMPILE_EVENT`; :func:`compiled_programs` lists them.
"""

import contextlib

import jax

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def compiled_programs():
    """Yields a list that collects the name of every program compiled inside the block (``"jit(step)"``...)."""
    names: list = []

    def listener(event: str, duration_secs: float, **kwargs: str | int) -> None:
        if event == COMPILE_EVENT:
            names.append(kwargs.get("fun_name"))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
