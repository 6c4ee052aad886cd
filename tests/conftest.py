"""Test setup: 8 fake CPU devices, float64 for references, run-time type checks, a fixed-seed key.

JAX's default (standard) dtype promotion is kept, not ``jax_numpy_dtype_promotion="strict"``: optax's Adam
computes ``decay ** count`` with an integer count, which strict promotion refuses.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)

# Run-time shape and dtype checks (jaxtyping + beartype) of every annotated function and dataclass of these
# packages, installed before anything imports them. Not the pytest flag --jaxtyping-packages: its parser cannot
# take a configured typechecker with more than one package. is_pep484_tower: an int is a float (as pyright reads
# it). JAXLAB_TYPECHECK=0 turns the checks off (to time the suite without them).
TYPECHECKED_PACKAGES = ("jaxlab.sparse", "jaxlab.krylov")
if os.environ.get("JAXLAB_TYPECHECK", "1") != "0":
    import sys  # noqa: E402

    from jaxtyping import install_import_hook  # noqa: E402

    if already := [p for p in TYPECHECKED_PACKAGES if p in sys.modules]:
        raise RuntimeError(f"cannot type-check {already}: imported before tests/conftest.py")
    install_import_hook(list(TYPECHECKED_PACKAGES),
                        "beartype.beartype(conf=beartype.BeartypeConf(is_pep484_tower=True))")


@pytest.fixture
def getkey():
    """Returns a function giving a fresh PRNG key on each call, from a fixed seed."""
    base = jax.random.key(0)
    counter = iter(range(1 << 30))

    def _getkey():
        return jax.random.fold_in(base, next(counter))

    return _getkey


@pytest.fixture
def without_typechecks():
    """Turns the run-time type checks off for one test: for tests of our own error messages, which users (who
    run without the checks) see, and which the checks would pre-empt with theirs."""
    import jaxtyping

    before = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    yield
    jaxtyping.config.update("jaxtyping_disable", before)
