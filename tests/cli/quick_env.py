"""The environment of the subprocesses that these tests start (``jaxlab run``, README examples, the GPU suite's
``--tiny`` checks): their programs compile at XLA's backend level 0, with the older CPU fusion emitters where
this XLA still has them.

Every such process runs its programs a handful of times on toy inputs, so XLA's optimisations cost more time
than they save: a tiny WeatherMixer run on 8 fake devices takes 13.2 CPU-s at the default level, 9.6 at
level 0 and 7.0 with the older emitters as well, and its losses agree to float32 rounding. Only how much work
XLA spends on optimising changes, not the function computed (the same idea as
``tests/timeseries/zoo_helpers.py`` for in-process compiles). What these tests check (records, exit statuses,
messages, multi-process against single-process losses, all compiled the same way) does not depend on it.
"""

from __future__ import annotations

import os

from ..compile_helpers import fusion_emitter_option

#: Turns the older (non-MLIR) CPU fusion emitters on: they compile these small programs 30-50% faster.
FUSION_EMITTERS_OFF = "--xla_cpu_use_fusion_emitters=false"


def quick_compile_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's environment) with level-0 compiles added; XLA_FLAGS kept and extended."""
    out = dict(os.environ if env is None else env)
    out["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    flags = out.get("XLA_FLAGS", "")
    if fusion_emitter_option() and "xla_cpu_use_fusion_emitters" not in flags:
        out["XLA_FLAGS"] = f"{flags} {FUSION_EMITTERS_OFF}".strip()
    return out
