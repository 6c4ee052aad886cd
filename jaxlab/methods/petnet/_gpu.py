"""The clinical-preset device check: PETNet trained for at least 10 epochs within a time budget.

``gpu_check(budget_s=480)`` is what the GPU suite (``scripts/gpu_suite.py``) calls; ``gpu_check(tiny=True)``
runs the same code path on a few samples of the reduced preset, in seconds on a CPU.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import numpy as np

from ._experiment import PETNetConfig, sorter_scores
from ._simulate import get_preset, simulate, split
from ._train import Variant, evaluate_params, train


def clinical_config(tiny: bool = False) -> PETNetConfig:
    """The clinical GPU set-up (``tiny``: a CPU-sized stand-in that exercises the same path)."""
    from ._experiment import HEADLINE_RECIPE

    config = dataclasses.replace(HEADLINE_RECIPE, preset="clinical", seeds=(0,), epochs=10, unroll=8,
                                 eval_batch=500, throughput_batch=0)
    if tiny:
        config = dataclasses.replace(config, preset="reduced", num_train=128, num_test=64, hidden=16, epochs=2,
                                     eval_batch=64, unroll=1)
    return config


def gpu_check(budget_s: float = 480.0, *, tiny: bool = False, epochs: int | None = None,
              config: PETNetConfig | None = None, progress: bool = False) -> dict[str, Any]:
    """Trains the headline PETNet on the clinical preset and scores it against the sorters.

    Args:
      budget_s: wall-clock budget of the whole check; training stops after the epoch that passes
        ``budget_s`` minus the time simulation and the sorters took, less a margin for the test pass.
      tiny: run on 128/64 samples of the reduced preset with H = 16 (CPU, seconds).
      epochs: epochs to train (default: the config's, 10).
      config: the set-up (default: :func:`clinical_config`).
      progress: print per-epoch lines.

    Returns:
      ``{"f1", "scw_f1", "scw_geometry_f1", ..., "epochs", "s_per_epoch", "goal_10_epochs_in_budget", ...}``.
    """
    t0 = time.perf_counter()
    config = clinical_config(tiny) if config is None else config
    if epochs is not None:
        config = dataclasses.replace(config, epochs=int(epochs))
    preset = config.get_preset()
    data = simulate(jax.random.key(config.data_seed), preset, preset.num_train + preset.num_test)
    train_data, test_data = split(jax.device_get(data), preset.num_train)
    tol = float(preset.delay_max if config.tol is None else config.tol)
    baselines, extras = sorter_scores(preset, train_data, test_data, tol=tol,
                                      calibration_windows=config.calibration_windows)
    setup_s = time.perf_counter() - t0
    eval_margin = 0.1 * budget_s
    variant = Variant(*config.headline)
    settings = dataclasses.replace(config.settings(variant.architecture),
                                   max_train_s=max(budget_s - setup_s - eval_margin, 1.0))

    def on_epoch(e, rec):
        if progress:
            print(f"[petnet gpu] epoch {e}: loss {rec['loss']:.4f}  {rec['wall_s']:.1f} s", flush=True)

    res = train(preset, train_data, variant, settings, key=jax.random.key(config.seeds[0]), on_epoch=on_epoch)
    scores = evaluate_params(res["net"], res["params"], preset, test_data, variant.geometry, tol=tol,
                             batch_size=config.eval_batch)
    walls = np.diff([0.0] + [h["wall_s"] for h in res["history"]])
    total_s = time.perf_counter() - t0
    out = {
        "preset": preset.name, "tiny": tiny, "device": jax.devices()[0].device_kind, "variant": variant.label,
        "num_train": preset.num_train, "num_test": preset.num_test, "epochs": res["epochs"],
        "s_per_epoch": float(np.median(walls[1:])) if walls.size > 1 else float(walls[0]),
        "first_epoch_s": float(walls[0]), "train_wall_s": res["train_wall_s"], "total_s": total_s,
        "budget_s": budget_s, **{k: v for k, v in scores.items()},
        **{f"{b['method']}_f1": b["f1"] for b in baselines},
        "goal_10_epochs_in_budget": bool(res["epochs"] >= min(10, config.epochs) and total_s <= budget_s),
        "history": res["history"],
    }
    out["beats_scw"] = bool(out["f1"] > out["scw_f1"])
    return out
