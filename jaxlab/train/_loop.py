"""The training loop: progress bar, periodic evaluation, metrics log, checkpoints, resume, Ctrl-C."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxlab.core import Meter, MetricsWriter, PRNGKey, to_jsonable, write_json
from jaxlab.energy import EnergyMeter

from ._checkpoint import Checkpointer
from ._state import TrainState


def _mean_metrics(window: list[dict]) -> dict[str, float]:
    if not window:
        return {}
    host = jax.device_get(window)
    keys = host[0].keys()
    return {k: float(np.mean([np.asarray(m[k], dtype=np.float64) for m in host])) for k in keys}


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
    to ``metrics.jsonl`` (train means every ``log_every`` steps, eval every ``eval_every``), saves
    checkpoints every ``checkpoint_every`` steps and at the end, resumes from the latest checkpoint
    when started again, and writes ``summary.json``. On Ctrl-C it saves a checkpoint of the last
    finished step, marks the summary ``interrupted`` and re-raises ``KeyboardInterrupt``.

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
        to every record as per-window deltas (``energy_j``), its totals to the summary and ``energy.json``.
      progress: show a progress bar.
      description: the progress bar's label.
    """
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    workdir = Path(workdir) if workdir is not None else None
    if isinstance(meter, str):
        if meter != "auto":
            raise ValueError(f"meter must be a Meter, 'auto' or None, got {meter!r}")
        meter = EnergyMeter() if workdir is not None else None
    ckpt = Checkpointer(workdir / "checkpoints", keep=keep_checkpoints) if workdir is not None else None
    writer = MetricsWriter(workdir / "metrics.jsonl") if workdir is not None else None

    start = 0
    resumed_from = None
    if ckpt is not None:
        latest = ckpt.latest_step()
        if latest is not None:
            state = ckpt.restore(latest, state)
            start = resumed_from = int(latest)
            writer.truncate_after(start)

    window: list[dict] = []
    last_train: dict[str, float] = {}
    last_eval: dict[str, float] = {}
    if resumed_from is not None and (workdir / "summary.json").is_file():
        # A resumed run that has nothing left to do keeps the figures of the run that finished it.
        try:
            previous = json.loads((workdir / "summary.json").read_text(encoding="utf-8"))
            last_train = dict(previous.get("train") or {})
        except (OSError, json.JSONDecodeError):
            pass
    t0 = time.perf_counter()
    meter_prev: dict[str, float] = {}
    if meter is not None:
        meter.start()

    def record(split: str, step: int, metrics: dict) -> dict:
        rec = {"step": step, "split": split, **metrics, "wall_s": time.perf_counter() - t0}
        if meter is not None:
            jax.block_until_ready(state)
            now = meter.read()
            for k, v in now.items():
                if isinstance(v, (int, float)):
                    rec[k] = v - meter_prev.get(k, 0.0)
            meter_prev.update({k: v for k, v in now.items() if isinstance(v, (int, float))})
        if writer is not None:
            writer.write(rec)
        return rec

    def do_eval(step: int) -> None:
        nonlocal last_eval
        if eval_fn is None:
            return
        last_eval = {k: float(v) for k, v in jax.device_get(eval_fn(state)).items()}
        record("eval", step, last_eval)

    bar = tqdm(total=num_steps, initial=start, desc=description, disable=None if progress else True,
               dynamic_ncols=True,
               leave=False)
    status = "completed"
    done_steps = start
    try:
        for step in range(start, num_steps):
            batch = get_batch(step)
            state, metrics = step_fn(state, batch, jax.random.fold_in(key, step))
            window.append(metrics)
            done = done_steps = step + 1
            if done % log_every == 0 or done == num_steps:
                last_train = _mean_metrics(window)
                window = []
                record("train", done, last_train)
                bar.set_postfix({k: f"{v:.4g}" for k, v in list(last_train.items())[:3]})
            bar.update(1)
            if eval_every and done % eval_every == 0 and done != num_steps:
                do_eval(done)
            if ckpt is not None and checkpoint_every and done % checkpoint_every == 0:
                ckpt.save(done, state)
        do_eval(num_steps)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except Exception:
        status = "failed"
        raise
    finally:
        bar.close()
        if ckpt is not None:
            try:
                if status == "failed":
                    pass  # the state may be half-updated or donated: keep the last good checkpoint
                else:
                    try:
                        jax.block_until_ready(state)
                        saved = int(jax.device_get(state.step))
                    except RuntimeError:  # interrupted inside a step whose inputs were donated
                        saved = None
                    if saved is not None and saved > start and ckpt.latest_step() != saved:
                        ckpt.save(saved, state)
            finally:
                ckpt.close()
        energy = meter.stop() if meter is not None else None
        if energy is not None and workdir is not None:
            write_json(workdir / "energy.json", energy)
        summary = {
            "status": status,
            "step": done_steps,
            "num_steps": num_steps,
            "resumed_from": resumed_from,
            "wall_s": time.perf_counter() - t0,
            "train": last_train,
            "eval": last_eval,
        }
        if energy is not None:
            summary["energy"] = to_jsonable(energy)
        if writer is not None:
            writer.close()
            write_json(workdir / "summary.json", summary)
    return state, summary
