"""Runs over several processes (hosts) on JAX's own multi-controller runtime (``jax.distributed``).

Every process runs the same program on its own devices; a mesh built from ``jax.devices()`` spans
the devices of all processes. This module adds what a training run needs on top of
``jax.distributed.initialize``:

* :func:`initialize_distributed`: checked arguments (explicit ``coordinator``/``num_processes``/``process_id``
  or JAX's cluster auto-detection: SLURM, Open MPI, ...), gloo collectives on CPU, and a bound on
  every wait: a peer that stops sending heartbeats for ``peer_timeout_s`` is lost.
* :class:`PeerWatchdog`: a thread that ends the process with one clear line (exit status
  :data:`LOST_PEER_EXIT`) as soon as the coordination service reports a peer lost, also while the
  main thread waits inside a collective that would otherwise never return.
* :func:`barrier` (bounded), :func:`is_writer` (only process 0 writes a run's records),
  :func:`to_global` (host values to global arrays on a mesh) and :func:`combine_process_energy`.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

#: Exit status of a process whose peer was lost (the run ends; a restart of all processes resumes it).
LOST_PEER_EXIT = 75

#: Default bound (seconds) on silence from a peer before the run ends.
DEFAULT_PEER_TIMEOUT_S = 60

#: Bound (seconds) on a barrier: processes may reach it this far apart (process 0 writes plots meanwhile);
#: a lost peer ends the wait sooner, through the heartbeats that the :class:`PeerWatchdog` watches.
BARRIER_TIMEOUT_S = 300

_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


class DistributedError(RuntimeError):
    """Bad multi-process arguments, a failed start, or a lost peer; the message says what to do."""


def check_arguments(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Checks the explicit multi-process arguments: all three or none, ``HOST:PORT``, ``0 <= id < n``.

    Raises:
      DistributedError: naming the bad argument.
    """
    given = [a is not None for a in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        raise DistributedError("give --coordinator HOST:PORT, --num-processes N and --process-id I together "
                               "(or none of them, to use the cluster's auto-detection with --auto-cluster)")
    if not any(given):
        return
    m = _HOST_PORT.match(str(coordinator))
    if m is None or not 0 < int(m.group(2)) < 65536:
        raise DistributedError(f"--coordinator {coordinator!r} is not HOST:PORT with a port in 1-65535, "
                               "e.g. --coordinator 10.0.0.1:29500")
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
        raise DistributedError(f"--num-processes must be a whole number >= 1, got {num_processes!r}")
    if isinstance(process_id, bool) or not isinstance(process_id, int) or not 0 <= process_id < num_processes:
        raise DistributedError(f"--process-id must be in 0..{num_processes - 1} (one per process), "
                               f"got {process_id!r}")


def _slurm_variables() -> tuple[str, ...]:
    """The variables JAX's SLURM detection needs all of (read from the installed JAX, whose names they are)."""
    try:
        from jax._src.clusters import slurm_cluster as s

        return (s._JOBID_PARAM, s._NODE_LIST, s._PROCESS_COUNT, s._PROCESS_ID, s._LOCAL_PROCESS_ID)
    except (ImportError, AttributeError):  # another JAX layout: the names of JAX 0.4-0.11
        return ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")


def detect_cluster() -> str:
    """The name of the cluster environment JAX's auto-detection finds here (``"slurm"``, ``"ompi"``, ...).

    It asks JAX's own cluster classes, in JAX's order and leaving out the opt-in ones (mpi4py), as
    ``jax.distributed.initialize`` does without arguments.

    Raises:
      DistributedError: when there is none: it names what SLURM and Open MPI lack here and says to give
        the explicit flags instead.
    """
    try:
        from jax._src.clusters import ClusterEnv
    except ImportError:  # no detection in this JAX: let jax.distributed.initialize say what it lacks
        return "unknown"
    for env in ClusterEnv._cluster_types:
        if getattr(env, "opt_in_only_method", False):
            continue
        try:
            present = env.is_env_present()
        except Exception:  # noqa: BLE001 - a detector that cannot run here (no metadata server, ...)
            present = False
        if present:
            return str(getattr(env, "name", "") or env.__name__)
    try:
        from jax._src.clusters import ompi_cluster

        ompi = str(ompi_cluster._ORTE_URI)
    except (ImportError, AttributeError):
        ompi = "OMPI_MCA_orte_hnp_uri"
    slurm = _slurm_variables()
    missing = [v for v in slurm if v not in os.environ]
    have = [v for v in slurm if v in os.environ]
    slurm_part = (f"SLURM lacks {', '.join(missing)} (it has {', '.join(have)}: start each process as a task of a job "
                  "step, with srun)" if have else f"no SLURM variables ({', '.join(slurm)})")
    raise DistributedError(
        f"--auto-cluster found no cluster environment that JAX detects: {slurm_part}, no Open MPI "
        f"({ompi}, set by mpirun), no Kubernetes or Cloud TPU. Start the processes under the cluster's "
        "launcher, or give --coordinator HOST:PORT --num-processes N --process-id I instead of --auto-cluster.")


def _client() -> Any:
    from jax._src import distributed as _dist  # the runtime's client: barriers and liveness with timeouts

    return _dist.global_state.client


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               *, auto: bool = False, peer_timeout_s: float = DEFAULT_PEER_TIMEOUT_S,
               init_timeout_s: float = 120, watchdog: bool = True) -> bool:
    """Joins this process to a multi-process run; returns whether it did (False: a single process).

    Call it before anything touches a device. With ``coordinator``, ``num_processes`` and
    ``process_id`` it calls ``jax.distributed.initialize`` with them; with ``auto`` it lets JAX
    detect the cluster (SLURM, Open MPI, Kubernetes, ...). On CPU the collectives go over gloo.

    Args:
      coordinator: ``HOST:PORT`` of process 0's coordination service.
      num_processes: how many processes the run has.
      process_id: this process's index.
      auto: use JAX's cluster auto-detection instead of the three explicit arguments.
      peer_timeout_s: a peer silent this long (no heartbeats) is lost and the run ends.
      init_timeout_s: how long to wait for every process to join.
      watchdog: start a :class:`PeerWatchdog` that ends this process with a clear line when a peer is lost.

    Raises:
      DistributedError: bad arguments, ``auto`` where JAX detects no cluster (:func:`detect_cluster`), or the
        processes did not all join within ``init_timeout_s``.
    """
    check_arguments(coordinator, num_processes, process_id)
    if coordinator is None and not auto:
        return False
    cluster = detect_cluster() if coordinator is None else None
    if not (peer_timeout_s >= 1 and init_timeout_s >= 1):
        raise DistributedError(f"timeouts must be >= 1 s, got peer {peer_timeout_s!r}, init {init_timeout_s!r}")
    if num_processes == 1:
        return False
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices only; GPUs use NCCL
    kwargs: dict[str, Any] = dict(initialization_timeout=int(init_timeout_s),
                                  heartbeat_timeout_seconds=max(1, int(peer_timeout_s)),
                                  shutdown_timeout_seconds=int(BARRIER_TIMEOUT_S))
    if coordinator is not None:
        kwargs.update(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    try:
        jax.distributed.initialize(**kwargs)
    except Exception as e:  # noqa: BLE001 - the runtime raises RuntimeError/ValueError/XlaRuntimeError
        cause = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
        if coordinator is not None:
            raise DistributedError(
                f"cannot start process {process_id} of a multi-process run with coordinator {coordinator} ({cause}). "
                f"Start every process within {init_timeout_s:g} s, with the same --coordinator and --num-processes "
                "and a different --process-id.") from None
        raise DistributedError(
            f"cannot start a multi-process run on the cluster that --auto-cluster detected ({cluster}): {cause}. "
            f"Start every process of the job (under SLURM: one task per process, with srun) within "
            f"{init_timeout_s:g} s, or give --coordinator HOST:PORT --num-processes N --process-id I instead."
        ) from None
    if watchdog and jax.process_count() > 1:
        import atexit

        PeerWatchdog.finished.clear()
        dog = PeerWatchdog()
        dog.start()
        atexit.register(_stop_watchdog, dog)  # runs before jax's own shutdown (registered earlier)
    return True


def _stop_watchdog(dog: "PeerWatchdog", timeout_s: float = 5.0) -> None:
    """At exit: ends the watchdog's polling and waits for it. A daemon thread still inside the runtime's
    client (C++) when the interpreter finalizes aborts the process ("FATAL: exception not rethrown")."""
    PeerWatchdog.finished.set()
    dog.join(timeout_s)


def is_writer() -> bool:
    """Whether this process writes the run's records (metrics, summary, plots): process 0 only."""
    return jax.process_index() == 0


def barrier(name: str, timeout_s: float = BARRIER_TIMEOUT_S) -> None:
    """Waits (at most ``timeout_s``) until every process reaches the barrier ``name``; nothing alone.

    Raises:
      DistributedError: when a process did not arrive in time.
    """
    if jax.process_count() == 1:
        return
    try:
        _client().wait_at_barrier(name, int(timeout_s * 1000))
    except Exception as e:  # noqa: BLE001
        raise DistributedError(
            f"process {jax.process_index()} waited {timeout_s:g} s at {name!r} for the other processes "
            f"({' '.join(str(e).split())[:200]}); one of them stopped or is stuck. Restart all processes with "
            "the same command to resume from the last checkpoint."
        ) from None


class PeerWatchdog(threading.Thread):
    """Ends this process (exit status :data:`LOST_PEER_EXIT`, one line on stderr) when a peer is lost.

    It polls the coordination service's list of live processes; a process that stopped sending
    heartbeats for the run's ``peer_timeout_s`` drops out of it. The main thread may then be inside
    a collective that waits for the lost peer forever, so the watchdog ends the process itself
    (``os._exit``) after flushing the streams: the checkpoints already on disk are what a restart
    of all processes resumes from.
    """

    def __init__(self, interval_s: float = 0.2, on_lost: Callable[[str], None] | None = None):
        super().__init__(name="jaxlab-peer-watchdog", daemon=True)
        self.interval_s = interval_s
        self.on_lost = on_lost
        self.num = jax.process_count()
        self.me = jax.process_index()

    #: Set when the run is over (every process passed its last barrier): a peer that exits is no loss.
    finished = threading.Event()

    def _lost(self, message: str) -> None:
        if PeerWatchdog.finished.is_set():
            return
        if self.on_lost is not None:
            self.on_lost(message)
            return
        try:
            sys.stdout.flush()
            print(f"\njaxlab: error: {message}", file=sys.stderr, flush=True)
        finally:
            os._exit(LOST_PEER_EXIT)

    def run(self) -> None:
        client = _client()
        everyone = list(range(self.num))
        while not PeerWatchdog.finished.is_set():
            try:
                live = client.get_live_nodes(everyone)
            except Exception as e:  # noqa: BLE001 - the coordinator (process 0) itself is gone
                self._lost(f"process {self.me} lost the coordinator (process 0) of the {self.num}-process run "
                           f"({' '.join(str(e).split())[:160]}). Restart all processes with the same command to "
                           "resume from the last checkpoint.")
                return
            missing = sorted(set(everyone) - set(int(k) for k in live))
            if missing:
                self._lost(f"process {self.me} lost process(es) {missing} of the {self.num}-process run (no "
                           "heartbeat within the peer timeout): the run stops here. Restart all processes with "
                           "the same command to resume from the last checkpoint.")
                return
            PeerWatchdog.finished.wait(self.interval_s)  # wakes at once when the run is over


def to_global(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """Host values (the same on every process) as global arrays laid out by ``sharding``.

    Each process puts only the pieces its own devices hold, so this works across processes where
    ``jax.device_put`` of a host array to devices of other processes does not.
    """

    def one(x):
        a = np.asarray(x)
        return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])

    return jax.tree.map(one, tree)


def to_host(tree: Any) -> Any:
    """Fully replicated global arrays as host NumPy arrays (each process reads its own copy)."""

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(x.addressable_data(0))
        return np.asarray(x)

    return jax.tree.map(one, tree)


def process_energy_path(workdir: str | os.PathLike, index: int) -> Path:
    """Where process ``index`` of a multi-process run keeps its own energy ledger."""
    return Path(workdir) / f"energy.process-{index}.json"


def combine_process_energy(workdir: str | os.PathLike, num_processes: int) -> dict[str, Any] | None:
    """The run's energy over its processes: each process's ledger (itself chained over resumes)
    side by side through :func:`jaxlab.energy.combine_reports` (energies add, wall time is the longest).

    Returns ``None`` when no process recorded any. Ledgers of other meters (plain numbers) add.
    """
    from jaxlab.energy import combine_reports, report_from_dict

    parts = []
    for i in range(num_processes):
        try:
            d = json.loads(process_energy_path(workdir, i).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(d, dict):
            d = {k: v for k, v in d.items() if k != "process_reports"}
            parts.append(d)
    if not parts:
        return None
    try:
        total = combine_reports([report_from_dict(p) for p in parts]).to_dict()
    except (KeyError, ValueError, TypeError):
        total = {}
        for p in parts:
            for k, v in p.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    total[k] = total.get(k, 0.0) + v
    total["per_process"] = parts
    return total
