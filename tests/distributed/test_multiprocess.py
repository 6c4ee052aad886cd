"""``jaxlab run`` over two local processes (4 fake CPU devices each, gloo collectives on 127.0.0.1).

One sequence of runs serves all tests, so that few processes start: a data-parallel ``mlp_digits``
run over 2 processes is killed (SIGKILL of process 1) after its first checkpoint, and process 0 must
end by itself; the same two commands started again resume, and process 0 (the coordinator) freezes
(SIGSTOP: a machine that stops answering without closing its connections, the case only heartbeats
detect) after the second checkpoint, and process 1 must end by itself; then the same run, started as
two tasks of a fake SLURM job step with ``--auto-cluster``, resumes and finishes it. A single-process
run on 8 devices, started alongside, is the reference every step's loss is compared with.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from jaxlab import cli
from jaxlab.train import LOST_PEER_EXIT

from ._launch import PROCESS_TIMEOUT_S, start, start_pair, start_slurm_pair, tail, wait, worker_of

NUM_STEPS = 40
CHECKPOINT_EVERY = 10
PEER_TIMEOUT_S = 5.0
#: A lost peer must end the survivor within this long (heartbeat timeout, polling, exit).
LOST_BOUND_S = PEER_TIMEOUT_S + 20.0

SETS = ["--set", "data_parallel=true", "--set", f"num_steps={NUM_STEPS}", "--set", "log_every=1",
        "--set", "eval_every=0", "--set", f"checkpoint_every={CHECKPOINT_EVERY}", "--set", "keep_checkpoints=2"]
CONFIG = "configs/examples/mlp_digits.py:quick"


def _train_losses(workdir: Path) -> dict[int, float]:
    out: dict[int, float] = {}
    for line in (workdir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r["split"] == "train":
            assert r["step"] not in out, f"step {r['step']} recorded twice"
            out[r["step"]] = r["loss"]
    return out


def _wait_for_checkpoint(workdir: Path, step: int, procs) -> None:
    """Until the checkpoint of ``step`` is complete (orbax renames it into place when done) or a process ended."""
    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    while not (workdir / "checkpoints" / str(step)).is_dir():
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            return
        time.sleep(0.05)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    ref_dir, dist_dir = logs / "single", logs / "two"
    run = ["run", CONFIG, *SETS, "--workdir", str(dist_dir)]
    reference = start(["run", CONFIG, *SETS, "--workdir", str(ref_dir)], logs / "single.log", devices=8)
    # 1. Kill process 1 once the first checkpoint is complete.
    first = start_pair(run, logs, "first", peer_timeout=PEER_TIMEOUT_S)
    _wait_for_checkpoint(dist_dir, CHECKPOINT_EVERY, first)
    first[1].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    codes = wait(first)
    lost_after = time.monotonic() - killed_at
    first_log = tail(first[0], 4000)
    # 2. Restart; freeze process 0's worker (the coordination service's host) after the second checkpoint.
    second = start_pair(run, logs, "second", peer_timeout=PEER_TIMEOUT_S)
    _wait_for_checkpoint(dist_dir, 2 * CHECKPOINT_EVERY, second)
    frozen = None if any(p.poll() is not None for p in second) else worker_of(second[0])
    stopped_at = time.monotonic()
    coordinator_lost_code: int | str | None = "the run ended before process 0 could be frozen"
    if frozen is not None:
        os.kill(frozen, signal.SIGSTOP)
        try:
            coordinator_lost_code = second[1].wait(timeout=LOST_BOUND_S + 30)
        except subprocess.TimeoutExpired:
            coordinator_lost_code = None  # it hangs: the test says so (wait() below ends it)
    coordinator_lost_after = time.monotonic() - stopped_at
    if frozen is not None:
        os.kill(frozen, signal.SIGKILL)
    second_codes = wait(second)
    # 3. Restart as two tasks of a SLURM job step, found by --auto-cluster; it resumes and completes.
    third = start_slurm_pair(run, logs, "third", peer_timeout=PEER_TIMEOUT_S)
    third_codes = wait(third)
    ref_code = wait([reference])[0]
    return dict(ref_dir=ref_dir, dist_dir=dist_dir, codes=codes, lost_after=lost_after, first_log=first_log,
                coordinator_lost_code=coordinator_lost_code, coordinator_lost_after=coordinator_lost_after,
                second_codes=second_codes, second_log=tail(second[1], 4000),
                third_codes=third_codes, third_logs=[tail(p) for p in third], ref_code=ref_code,
                ref_log=tail(reference))


def test_killing_one_process_ends_the_other_with_a_clear_error(runs):
    assert runs["codes"][1] == -signal.SIGKILL
    assert runs["codes"][0] == LOST_PEER_EXIT, runs["first_log"]
    assert runs["lost_after"] < LOST_BOUND_S
    # The watchdog saw the heartbeats stop, or the supervisor saw the collectives abort mid-transfer.
    assert re.search(r"jaxlab: error: process 0 (lost process\(es\) \[1\] of the 2-process run|of the "
                     r"multi-process run lost a peer)", runs["first_log"]), runs["first_log"]
    assert "Restart all processes with the same command" in runs["first_log"]


def test_losing_the_coordinator_ends_the_other_within_the_peer_timeout(runs):
    assert runs["coordinator_lost_code"] == LOST_PEER_EXIT, runs["second_log"]
    assert runs["coordinator_lost_after"] < LOST_BOUND_S, runs["second_log"]
    # The runtime's heartbeats to the frozen coordinator missed their deadline (the supervisor's line), or the
    # watchdog could no longer ask it which processes live.
    assert re.search(r"jaxlab: error: process 1 (of the multi-process run )?lost the coordinator \(process 0",
                     runs["second_log"]), runs["second_log"]
    assert "Restart all processes with the same command" in runs["second_log"]
    assert runs["second_codes"][1] == LOST_PEER_EXIT


def test_restart_resumes_and_completes(runs):
    assert runs["third_codes"] == [0, 0], runs["third_logs"]
    summary = json.loads((runs["dist_dir"] / "summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == "completed"
    assert summary["num_processes"] == 2
    assert summary["resumed_from"] is not None and summary["resumed_from"] % CHECKPOINT_EVERY == 0
    assert summary["resumed_from"] >= 2 * CHECKPOINT_EVERY  # after the second stop, not the first
    # Each process wrote its own shards and energy; energy.json combines the two processes.
    energy = json.loads((runs["dist_dir"] / "energy.json").read_text(encoding="utf-8"))
    assert len(energy["per_process"]) == 2
    parts = [json.loads((runs["dist_dir"] / f"energy.process-{i}.json").read_text()) for i in range(2)]
    assert energy["energy_j"]["cpu"] == pytest.approx(sum(p["energy_j"]["cpu"] for p in parts), rel=1e-9)
    # Process 0 alone wrote the records: one line per step, none lost or doubled over the kill.
    assert sorted(_train_losses(runs["dist_dir"])) == list(range(1, NUM_STEPS + 1))


def test_two_processes_equal_the_single_process_run(runs):
    assert runs["ref_code"] == 0, runs["ref_log"]
    ref, dist = _train_losses(runs["ref_dir"]), _train_losses(runs["dist_dir"])
    assert sorted(ref) == sorted(dist) == list(range(1, NUM_STEPS + 1))
    a = np.array([ref[s] for s in sorted(ref)])
    b = np.array([dist[s] for s in sorted(dist)])
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
    assert not np.allclose(a[0], a[-1])  # it trained: the comparison is not between constants


def test_auto_cluster_joins_the_slurm_tasks_into_one_run_equal_to_the_reference(runs):
    # The last run was started with --auto-cluster alone (no --coordinator/--num-processes/--process-id): the
    # two processes found each other through the SLURM variables, as one 2-process run over 8 devices.
    assert runs["third_codes"] == [0, 0], runs["third_logs"]
    summary = json.loads((runs["dist_dir"] / "summary.json").read_text(encoding="utf-8"))
    assert summary["num_processes"] == 2
    start_step = summary["resumed_from"]
    assert start_step is not None and start_step < NUM_STEPS
    ref, dist = _train_losses(runs["ref_dir"]), _train_losses(runs["dist_dir"])
    steps = list(range(start_step + 1, NUM_STEPS + 1))
    np.testing.assert_allclose([dist[s] for s in steps], [ref[s] for s in steps], rtol=1e-6, atol=1e-6)


def test_the_supervisor_reports_the_same_exit_status():
    assert cli.LOST_PEER_EXIT == LOST_PEER_EXIT
