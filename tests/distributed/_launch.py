"""Starting local multi-process runs for the tests: two processes on 127.0.0.1, 4 fake CPU devices each.

Every process compiles at backend level 0 (:func:`tests.cli.quick_env.quick_compile_env`), the single-process
reference runs too, so that the losses compared are those of the same programs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.cli.quick_env import quick_compile_env

ROOT = Path(__file__).resolve().parents[2]

#: Every subprocess of these tests is killed after this long (seconds); JAXLAB_TEST_PROCESS_TIMEOUT_S overrides it.
PROCESS_TIMEOUT_S = float(os.environ.get("JAXLAB_TEST_PROCESS_TIMEOUT_S", "300"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(devices: int) -> dict[str, str]:
    e = dict(os.environ)
    e["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    e["JAX_PLATFORMS"] = "cpu"
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("JAX_ENABLE_X64", None)
    return quick_compile_env(e)


def start(args: list[str], log: Path, *, devices: int) -> subprocess.Popen:
    """``python -m jaxlab ARGS`` in the background, stdout and stderr to ``log``."""
    f = open(log, "w", encoding="utf-8")
    p = subprocess.Popen([sys.executable, "-m", "jaxlab", *args], cwd=ROOT, env=env(devices), stdout=f,
                         stderr=subprocess.STDOUT)
    p.log_path = log  # type: ignore[attr-defined]
    f.close()
    return p


def start_pair(args: list[str], logs: Path, name: str, *, peer_timeout: float = 5.0) -> list[subprocess.Popen]:
    """Two processes of one run (``--coordinator 127.0.0.1:<free port>``), 4 devices each."""
    port = free_port()
    return [start([*args, "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i),
                   "--peer-timeout", str(peer_timeout)], logs / f"{name}.p{i}.log", devices=4) for i in range(2)]


def wait(procs: list[subprocess.Popen], timeout: float = PROCESS_TIMEOUT_S) -> list[int]:
    """Exit statuses; every process still running after ``timeout`` is killed (and the test fails)."""
    deadline = time.monotonic() + timeout
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            for q in procs:
                q.wait()
            raise AssertionError(f"a process ran past {timeout} s; logs: " +
                                 " | ".join(tail(q) for q in procs)) from None
    return codes


def tail(p: subprocess.Popen, n: int = 1500) -> str:
    text = Path(p.log_path).read_text(encoding="utf-8", errors="replace")  # type: ignore[attr-defined]
    lines = [l for l in text.splitlines() if not l.startswith("[Gloo]")]
    return "\n".join(lines)[-n:]
