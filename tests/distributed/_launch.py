"""Starting local multi-process runs for the tests: two processes on 127.0.0.1, 4 fake CPU devices each.

Every process compiles at backend level 0 (:func:`tests.cli.quick_env.quick_compile_env`), the single-process
reference runs too, so that the losses compared are those of the same programs.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from unittest import mock
from pathlib import Path

from tests.cli.quick_env import quick_compile_env

ROOT = Path(__file__).resolve().parents[2]

#: Every subprocess of these tests is killed after this long (seconds); JAXLAB_TEST_PROCESS_TIMEOUT_S overrides it.
PROCESS_TIMEOUT_S = float(os.environ.get("JAXLAB_TEST_PROCESS_TIMEOUT_S", "300"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slurm_coordinator_port(variables: dict[str, str]) -> int:
    """The coordinator port JAX's own SLURM detection derives from ``variables`` (read from the installed
    JAX, as ``--auto-cluster`` does, instead of a copy of its formula)."""
    from jax._src.clusters import SlurmCluster

    with mock.patch.dict(os.environ, variables):
        return int(SlurmCluster.get_coordinator_address(None, None).rsplit(":", 1)[1])


def slurm_env(process_id: int, num_processes: int = 2) -> dict[str, str]:
    """What ``srun --ntasks=N`` on one node sets for task ``process_id`` (the variables JAX's SlurmCluster reads),
    with the node 127.0.0.1 and a job id whose derived coordinator port is free now."""
    rng = random.Random()
    for _ in range(64):
        job = {"SLURM_JOB_ID": str(rng.randrange(10**6, 10**7)), "SLURM_STEP_NODELIST": "127.0.0.1",
               "SLURM_NTASKS": str(num_processes), "SLURM_PROCID": str(process_id),
               "SLURM_LOCALID": str(process_id), "SLURM_NODEID": "0", "SLURM_STEP_NUM_NODES": "1",
               "SLURM_STEP_TASKS_PER_NODE": str(num_processes)}
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", _slurm_coordinator_port(job)))
            except OSError:
                continue
        return job
    raise AssertionError("64 fake SLURM job ids in a row derived a coordinator port in use")


def env(devices: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_", "JAX_COORDINATOR"))}
    e.update(extra or {})
    e["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    e["JAX_PLATFORMS"] = "cpu"
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("JAX_ENABLE_X64", None)
    return quick_compile_env(e)


def start(args: list[str], log: Path, *, devices: int, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m jaxlab ARGS`` in the background, stdout and stderr to ``log``."""
    f = open(log, "w", encoding="utf-8")
    p = subprocess.Popen([sys.executable, "-m", "jaxlab", *args], cwd=ROOT, env=env(devices, extra_env), stdout=f,
                         stderr=subprocess.STDOUT)
    p.log_path = log  # type: ignore[attr-defined]
    f.close()
    return p


def start_pair(args: list[str], logs: Path, name: str, *, peer_timeout: float = 5.0) -> list[subprocess.Popen]:
    """Two processes of one run (``--coordinator 127.0.0.1:<free port>``), 4 devices each."""
    port = free_port()
    return [start([*args, "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i),
                   "--peer-timeout", str(peer_timeout)], logs / f"{name}.p{i}.log", devices=4) for i in range(2)]


def start_slurm_pair(args: list[str], logs: Path, name: str, *, peer_timeout: float = 5.0) -> list[subprocess.Popen]:
    """Two processes of one run as two tasks of a fake SLURM job step on 127.0.0.1, with ``--auto-cluster``."""
    job = slurm_env(0)
    return [start([*args, "--auto-cluster", "--peer-timeout", str(peer_timeout)], logs / f"{name}.p{i}.log",
                  devices=4, extra_env={**job, "SLURM_PROCID": str(i), "SLURM_LOCALID": str(i)}) for i in range(2)]


def worker_of(p: subprocess.Popen) -> int:
    """The pid of the worker that the supervising ``jaxlab run`` ``p`` of a multi-process run started (Linux)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            kids = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
        except OSError:
            raise AssertionError(f"process {p.pid} ended (or this is not Linux): no worker to find") from None
        if kids:
            return int(kids[0])
        time.sleep(0.05)
    raise AssertionError(f"process {p.pid} started no worker")


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
