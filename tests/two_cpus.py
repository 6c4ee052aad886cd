"""Running a script with XLA's CPU thread pools at two threads: the size at which independent batched LAPACK
kernels side by side deadlock jaxlib 0.10.2's CPU runtime (each blocks its pool thread on chunks queued behind
the others). Tests of code that must not put such kernels side by side run it here, with a time limit."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

needs_two_cpus = pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                                    reason="needs 2 CPUs to pin XLA's intra-op pool to 2 threads")

_PIN = "import os, sys\nos.sched_setaffinity(0, [int(c) for c in sys.argv[1:]])  # before jax starts its pools\n"


def run_each_on_two_cpus(scripts: dict[str, str], *, timeout: float) -> dict[str, str]:
    """Runs the scripts of ``{what: source}`` (Python source) one after another in one process pinned to two CPUs,
    on the CPU backend, one device (one interpreter and JAX start for all); returns ``{what: its stdout}``.

    Fails the test, saying which script deadlocked, if they do not all finish within ``timeout`` seconds.
    """
    names = list(scripts)
    program = "".join(f"def _script_{i}():\n{textwrap.indent(textwrap.dedent(src), '    ')}\n"
                      f"_script_{i}()\nprint({_MARK!r} + '{i}', flush=True)\n" for i, src in enumerate(scripts.values()))
    cpus = sorted(os.sched_getaffinity(0))[:2]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    try:
        out = subprocess.run([sys.executable, "-c", _PIN + program, *map(str, cpus)], env=env,
                             capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        partial = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        what = names[partial.count(_MARK)]
        pytest.fail(f"{what} did not finish in {timeout:g} s on 2 CPUs: batched LAPACK calls ran side by side and "
                    "deadlocked XLA's CPU thread pool")
    failed = names[min(out.stdout.count(_MARK), len(names) - 1)]  # every script done: the exit failed, name the last
    assert out.returncode == 0, f"{failed} failed:\n{out.stderr[-2000:]}"
    pieces = out.stdout.split(_MARK)
    return {what: piece.split("\n", 1)[1] if i else piece for i, (what, piece) in enumerate(zip(names, pieces))}


#: Printed (with the script's index) after each script of :func:`run_each_on_two_cpus`.
_MARK = "--- finished script "
