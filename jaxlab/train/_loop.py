"""The training loop: progress bar, periodic evaluation, metrics log, checkpoints, resume, Ctrl-C.

What a run's records guarantee (the loop keeps to it across kills and resumes):

* Every checkpointed step already has all its records: a train window ends at every multiple of
  ``log_every``, at every checkpoint and at the end, and a Ctrl-C first closes the open window
  (``window_steps`` says how many steps a train record averages). So the train records of a run
  cover each step exactly once, however often it was interrupted.
* A resume drops every record after the restored step (all of them when there was no checkpoint)
  and redoes an evaluation that an interruption cut short.
* A completed run started again changes nothing and returns its summary.
* ``energy.json`` and the summary's ``energy`` count every process that worked on the run.
* Across several processes (``jax.distributed``), every process runs the loop on its part of the
  mesh and checkpoints its own shards (orbax); only process 0 writes ``metrics.jsonl``,
  ``summary.json`` and ``energy.json``, which combines the ledgers that each process keeps of its
  own energy (``energy.process-<i>.json``). A Ctrl-C or SIGTERM saves no checkpoint there (that
  would need every process): the run resumes from the last periodic one.
* A non-finite training loss stops the run with status ``diverged`` (:class:`DivergedError`); no
  checkpoint with non-finite values is written, so the last one is finite.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxlab._interrupts import deferring
from jaxlab.core import Meter, MetricsWriter, PRNGKey, read_metrics, to_jsonable, write_json
from jaxlab.energy import EnergyLedger, EnergyMeter

from ._checkpoint import Checkpointer, CheckpointError, state_digests
from ._distributed import barrier, combine_process_energy, is_writer, process_energy_path
from ._state import TrainState

#: Record fields that are not metrics.
RECORD_FIELDS = ("step", "split", "wall_s", "window_steps")


class DivergedError(RuntimeError):
    """The training loss (or the state) became non-finite; the run stopped with status ``diverged``.

    Attributes:
      step: the first step whose loss is non-finite (or whose update made the state non-finite).
      checkpoint_step: the last checkpoint, all finite, that is kept (None if there is none).
      workdir: the run's folder (None without one).
    """

    def __init__(self, message: str, *, step: int, checkpoint_step: int | None, workdir: Path | None):
        super().__init__(message)
        self.step = step
        self.checkpoint_step = checkpoint_step
        self.workdir = workdir


class _Diverged(Exception):
    def __init__(self, step: int, what: str):
        self.step, self.what = step, what


def _whole(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")


def _metrics_of(record: dict) -> dict[str, float]:
    return {k: v for k, v in record.items() if k not in RECORD_FIELDS and not k.startswith("energy_j")}


def _read_json(path: Path) -> dict | None:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def train_loop(
    state: TrainState,
    step_fn: Callable[[TrainState, Any, PRNGKey], tuple[TrainState, dict]],
    get_batch: Callable[[int], Any],
    *,
    num_steps: int,
    key: PRNGKey,
    workdir: str | os.PathLike | None = None,
    eval_fn: Callable[[TrainState], dict] | None = None,
    eval_every: int = 0,
    checkpoint_every: int = 0,
    keep_checkpoints: int = 3,
    log_every: int = 50,
    meter: Meter | str | None = "auto",
    progress: bool = True,
    description: str = "train",
) -> tuple[TrainState, dict[str, Any]]:
    """Runs ``num_steps`` training steps and returns ``(final_state, summary)``.

    Step ``s`` uses ``get_batch(s)`` and the key ``fold_in(key, s)``, so a run resumed from a checkpoint
    at step ``s`` continues exactly as the uninterrupted run would. With a ``workdir`` the loop appends
    to ``metrics.jsonl`` (train means every ``log_every`` steps and at each checkpoint, eval every
    ``eval_every``), saves checkpoints every ``checkpoint_every`` steps and at the end, resumes from
    the latest checkpoint when started again (see the module docstring for what the records then
    guarantee), and writes ``summary.json``. On Ctrl-C it closes the open train window, saves a
    checkpoint of the last finished step, marks the summary ``interrupted`` (with the
    ``checkpoint_step`` a resume starts from) and re-raises ``KeyboardInterrupt``. Started again on
    a completed run, it restores the final state and returns the stored summary, writing nothing.

    Args:
      state: the initial state (also the template that checkpoints are restored into).
      step_fn: ``step(state, batch, key) -> (state, metrics)``, e.g. from :func:`make_train_step`.
      get_batch: ``get_batch(step) -> batch``, deterministic in ``step``.
      num_steps: total number of steps (including those done before a resume).
      key: the run's PRNG key.
      workdir: where metrics, checkpoints and the summary go; None keeps everything in memory.
      eval_fn: ``eval_fn(state) -> dict`` of metrics; run every ``eval_every`` steps and at the end.
      eval_every: evaluation period in steps (0: only at the end).
      checkpoint_every: checkpoint period in steps (0: only at the end and on Ctrl-C).
      keep_checkpoints: how many checkpoints to keep.
      log_every: period of the train-metric records and progress-bar updates.
      meter: an energy meter (``jaxlab.core.Meter``), ``"auto"`` (default: a ``jaxlab.energy.EnergyMeter``
        for the devices in use when there is a workdir, nothing otherwise) or None. Its readings are added
        to every record as per-window deltas (``energy_j``); the totals over every process that worked
        on the run go to the summary and ``energy.json``.
      progress: show a progress bar.
      description: the progress bar's label.

    Raises:
      DivergedError: when the training loss becomes non-finite (after writing the summary).
      CheckpointError: when the latest checkpoint belongs to another model or is corrupt.
      ValueError: for a negative ``num_steps`` or non-positive periods.
    """
    _whole("num_steps", num_steps, 0)
    _whole("log_every", log_every, 1)
    _whole("eval_every", eval_every, 0)
    _whole("checkpoint_every", checkpoint_every, 0)
    _whole("keep_checkpoints", keep_checkpoints, 1)
    workdir = Path(workdir) if workdir is not None else None
    if isinstance(meter, str):
        if meter != "auto":
            raise ValueError(f"meter must be a Meter, 'auto' or None, got {meter!r}")
        meter = EnergyMeter() if workdir is not None else None
    if workdir is not None and workdir.exists() and not workdir.is_dir():
        raise ValueError(f"workdir {str(workdir)!r} is a file; give a folder")
    previous = _read_json(workdir / "summary.json") if workdir is not None else None
    ckpt = Checkpointer(workdir / "checkpoints", keep=keep_checkpoints) if workdir is not None else None
    try:
        start = 0
        if ckpt is not None:
            latest = ckpt.latest_step()
            if latest is not None:
                if latest > num_steps:
                    raise CheckpointError(
                        f"checkpoint {str(ckpt.path(latest))!r} is at step {latest}, beyond num_steps={num_steps}: "
                        "the workdir holds a longer run. Use another --workdir, or --fresh to start over."
                    )
                state = ckpt.restore(latest, state)
                start = latest
        if (previous is not None and previous.get("status") == "completed" and start == num_steps
                and previous.get("num_steps") == num_steps):
            return state, previous
        run = _Run(step_fn=step_fn, get_batch=get_batch, num_steps=num_steps, key=key, workdir=workdir,
                   eval_fn=eval_fn, eval_every=eval_every, checkpoint_every=checkpoint_every,
                   log_every=log_every, meter=meter, ckpt=ckpt, progress=progress, description=description)
        return run.go(state, start, resumed=ckpt is not None and start > 0)
    finally:
        if ckpt is not None:
            ckpt.close()


class _Run:
    """One process's part of a training run (the loop's state, so that its pieces stay short)."""

    def __init__(self, *, step_fn, get_batch, num_steps, key, workdir, eval_fn, eval_every, checkpoint_every,
                 log_every, meter, ckpt, progress, description):
        self.step_fn, self.get_batch, self.num_steps, self.key = step_fn, get_batch, num_steps, key
        self.workdir, self.eval_fn, self.eval_every = workdir, eval_fn, eval_every
        self.checkpoint_every, self.log_every, self.meter, self.ckpt = checkpoint_every, log_every, meter, ckpt
        self.progress, self.description = progress, description
        self.writer: MetricsWriter | None = None
        self.ledger: EnergyLedger | None = None
        self.meter_prev: dict[str, float] = {}
        self.window: list[dict] = []
        self.last_train: dict[str, float] = {}
        self.last_eval: dict[str, float] = {}
        self.offset = 0.0
        self.t0 = time.perf_counter()
        self.state: Any = None
        self.bar: Any = None

    # -- records ------------------------------------------------------------------------------

    def _wall(self) -> float:
        return self.offset + (time.perf_counter() - self.t0)

    def _energy_part(self) -> dict[str, Any] | None:
        if isinstance(self.meter, EnergyMeter):
            return self.meter.report().to_dict()
        return None

    @deferring
    def record(self, split: str, step: int, metrics: dict, **extra: Any) -> None:
        rec = {"step": step, "split": split, **metrics, **extra, "wall_s": self._wall()}
        if self.meter is not None:
            jax.block_until_ready(self.state)
            now = self.meter.read()
            for k, v in now.items():
                if isinstance(v, (int, float)):
                    rec[k] = v - self.meter_prev.get(k, 0.0)
            self.meter_prev.update({k: v for k, v in now.items() if isinstance(v, (int, float))})
            if self.ledger is not None:
                part = self._energy_part()
                self.ledger.update(part if part is not None else now)
        if self.writer is not None:
            self.writer.write(rec)

    @deferring
    def flush(self, done: int) -> None:
        """Closes the train window at step ``done``: one record of the window's means; checks the loss."""
        if not self.window:
            return
        window, self.window = self.window, []
        host = jax.device_get(window)
        names = list(host[0].keys())
        watch = ["loss"] if "loss" in names else names
        first = done - len(host) + 1
        for i, m in enumerate(host):
            for name in watch:
                v = np.asarray(m[name], dtype=np.float64)
                if not np.all(np.isfinite(v)):
                    bad = float(v.ravel()[~np.isfinite(v.ravel())][0])
                    self._record_window(host, names, done)
                    raise _Diverged(first + i, f"{name} is {bad}")
        self._record_window(host, names, done)

    def _record_window(self, host: list[dict], names: list[str], done: int) -> None:
        self.last_train = {k: float(np.mean([np.asarray(m[k], dtype=np.float64) for m in host])) for k in names}
        self.record("train", done, self.last_train, window_steps=len(host))
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in list(self.last_train.items())[:3]})

    def do_eval(self, step: int) -> None:
        if self.eval_fn is None:
            return
        self.last_eval = {k: float(v) for k, v in jax.device_get(self.eval_fn(self.state)).items()}
        self.record("eval", step, self.last_eval)

    @deferring
    def save(self, step: int) -> None:
        if self.ckpt is None:
            return
        digests, all_finite = state_digests(self.state)
        if not all_finite:
            raise _Diverged(step, "the parameters or optimiser state hold non-finite values")
        self.ckpt.save(step, self.state, digests=digests)

    # -- the run ------------------------------------------------------------------------------

    def go(self, state: Any, start: int, *, resumed: bool) -> tuple[Any, dict[str, Any]]:
        self.state = state
        kept: list[dict] = []
        multi = jax.process_count() > 1
        if self.workdir is not None:
            if is_writer():
                self.writer = MetricsWriter(self.workdir / "metrics.jsonl")
                kept = self.writer.truncate_after(start)  # nothing after the restored step (all of it at step 0)
            else:  # the same decisions as process 0 (which rewrites the file atomically), nothing written
                log = self.workdir / "metrics.jsonl"
                kept = [r for r in (read_metrics(log) if log.is_file() else [])
                        if isinstance(r.get("step"), (int, float)) and r["step"] <= start]
            walls = [r["wall_s"] for r in kept if isinstance(r.get("wall_s"), (int, float))]
            self.offset = float(max(walls, default=0.0))
            trains = [r for r in kept if r.get("split") == "train"]
            evals = [r for r in kept if r.get("split") == "eval"]
            self.last_train = _metrics_of(trains[-1]) if trains else {}
            self.last_eval = _metrics_of(evals[-1]) if evals else {}
            if self.meter is not None:
                self.ledger = EnergyLedger(process_energy_path(self.workdir, jax.process_index()) if multi
                                           else self.workdir / "energy.json")
        evaluated = {r.get("step") for r in kept if r.get("split") == "eval"}
        self.bar = tqdm(total=self.num_steps, initial=start, desc=self.description,
                        disable=None if self.progress else True, dynamic_ncols=True, leave=False)
        self.t0 = time.perf_counter()
        if self.meter is not None:
            self.meter.start()
        status, done, diverged, error = "completed", start, None, None
        try:
            if (start and start != self.num_steps and self.eval_every and start % self.eval_every == 0
                    and start not in evaluated):
                self.do_eval(start)  # an interruption cut this evaluation short: redo it
            for step in range(start, self.num_steps):
                batch = self.get_batch(step)
                self.state, metrics = self.step_fn(self.state, batch, jax.random.fold_in(self.key, step))
                done = step + 1
                self.window.append(metrics)
                save_now = self.ckpt is not None and self.checkpoint_every and done % self.checkpoint_every == 0
                if done % self.log_every == 0 or done == self.num_steps or save_now:
                    self.flush(done)
                self.bar.update(1)
                if self.eval_every and done % self.eval_every == 0 and done != self.num_steps:
                    self.do_eval(done)
                if save_now:
                    self.save(done)
            if self.num_steps not in evaluated or start < self.num_steps:
                self.do_eval(self.num_steps)
            if done > start or (self.ckpt is not None and self.ckpt.latest_step() != self.num_steps):
                self.save(self.num_steps)
        except _Diverged as d:
            status, diverged = "diverged", d
        except KeyboardInterrupt:
            status = "interrupted"
            self._save_on_interrupt(done)
            raise
        except Exception as e:
            status, error = "failed", f"{type(e).__name__}: {e}"
            raise  # the state may be half-updated or donated: keep the last good checkpoint
        finally:
            summary = self._finish(status, done, start if resumed else None, diverged, error)
        if diverged is not None:
            raise DivergedError(summary["error"], step=diverged.step, checkpoint_step=summary["checkpoint_step"],
                                workdir=self.workdir)
        return self.state, summary

    @deferring
    def _save_on_interrupt(self, done: int) -> None:
        """Ctrl-C: close the open window and checkpoint the last finished step, if the state is intact.

        Not across processes: a checkpoint needs all of them, and the others may not be stopping.
        """
        if jax.process_count() > 1:
            return
        try:
            jax.block_until_ready(self.state)
            consistent = int(jax.device_get(self.state.step)) == done
        except (RuntimeError, AttributeError, TypeError):  # inside a step whose inputs were donated
            consistent = False
        try:
            if consistent and done > 0:
                self.flush(done)
            if consistent and self.ckpt is not None and self.ckpt.latest_step() != done:
                self.save(done)
        except _Diverged:
            pass  # nothing non-finite is checkpointed; the summary still says interrupted
        except KeyboardInterrupt:
            pass  # Ctrl-C twice more (the first waits for the save): give up, keep the earlier checkpoints

    @deferring
    def _finish(self, status: str, done: int, resumed_from: int | None, diverged: _Diverged | None,
                error: str | None) -> dict[str, Any]:
        self.bar.close()
        checkpoint_step = None
        if self.ckpt is not None:
            try:
                self.ckpt.close()  # waits for the last save, so the summary never names an unfinished one
            except Exception:  # noqa: BLE001 - a failed final save: the summary names what is on disk
                pass
            checkpoint_step = self.ckpt.latest_step()
        summary: dict[str, Any] = {
            "status": status,
            "step": done,
            "num_steps": self.num_steps,
            "resumed_from": resumed_from,
            "checkpoint_step": checkpoint_step,
            "wall_s": self._wall(),
            "train": self.last_train,
            "eval": self.last_eval,
        }
        if self.meter is not None:
            energy = self.meter.stop()
            total = self.ledger.update(energy) if self.ledger is not None else energy
            summary["energy"] = to_jsonable(total)
            if self.ledger is not None:
                summary["processes"] = self.ledger.num_processes
            if jax.process_count() > 1 and self.workdir is not None:
                if status == "completed":
                    barrier(f"jaxlab_energy_{done}")  # every process's ledger is on disk
                if is_writer():
                    combined = combine_process_energy(self.workdir, jax.process_count())
                    if combined is not None:
                        write_json(self.workdir / "energy.json", combined)
                        summary["energy"] = to_jsonable({k: v for k, v in combined.items() if k != "per_process"})
                summary["num_processes"] = jax.process_count()
        if diverged is not None:
            kept = (f"the last checkpoint, step {checkpoint_step}, holds finite values and is kept in "
                    f"{str(self.ckpt.directory)!r}" if checkpoint_step is not None else "no checkpoint was written")
            summary["diverged_at_step"] = diverged.step
            summary["error"] = (f"training diverged at step {diverged.step}: {diverged.what}. The run stopped and "
                                f"{kept}. Lower the learning rate and start over (with --fresh, or another workdir).")
        elif error is not None:
            summary["error"] = error
        if self.writer is not None:
            self.writer.close()
            write_json(self.workdir / "summary.json", summary)  # the writer exists on process 0 only
        return summary
