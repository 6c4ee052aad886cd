"""ReCycle's method contract: ``init``, a pure ``train_step`` and ``evaluate`` (see ``jaxlab.methods``).

The contract trains ReCycle's forecaster, the ``recycle`` row of :func:`run`: the cycle-token
transformer on the residual over the recent historic profile. The other rows are reached through
``run()``: the baselines (vanilla transformer, DLinear) are trained there with their own models,
``profile``/``persistence`` need no training, and ``recycle_guarded``/``residual_ar`` are fitted after
training on the validation/training forecasts.

:func:`train_step` runs the step ``run()`` trains ReCycle with: ``make_loss_fn("recycle", ...)`` (the L1
loss, or the pinball loss with quantile heads, dropout on) under :func:`recycle_optimizer` (Adam, AdamW
with ``weight_decay``) in :func:`jaxlab.train.make_train_step`. Model selection (``keep``), the number of
steps (``num_steps``/``epochs``) and the periodic validation stay in ``run()``'s host loop.

Shapes come from the config: the cycle length ``D`` of each dataset is :data:`CYCLE_LEN`, each token's
metadata has ``jaxlab.timeseries.NUM_META + 3 * len(exogenous)`` features (9: weekday one-hot, holiday,
holiday tomorrow; 3 per exogenous column: its daily mean/min/max), or ``NUM_META + D * len(exogenous)``
with ``exogenous_resolution="step"``. ``model_state`` is empty: the MinMax scaler lives with the windows
(``prepare_windows(config)["scalers"]``), which :func:`evaluate` reads. With ``profile_correction="ridge"``
ReCycle's windows are :func:`recycle_windows` of those: run() trains on them and :func:`evaluate` predicts on
them.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np

from jaxlab.core import PRNGKey, require_config, validate_config
from jaxlab.train import MethodState, TrainState, make_train_step

from ._experiment import (RecycleConfig, _make_model, forecast_metrics, init_recycle_params, lead1_mae,
                          make_loss_fn, point_forecast, recycle_optimizer, recycle_windows)
from jaxlab import timeseries as ts

#: Steps per cycle (day) of each dataset ``run()`` loads.
CYCLE_LEN: dict[str, int] = {"elecdemand": 48, "taylor": 48, "bikeshare": 24}

#: The keys of a training batch (ReCycle's inputs and the target), in ``run()``'s batcher order.
BATCH_KEYS: tuple[str, ...] = ("hist", "hist_profile", "hist_meta", "fc_profile", "fc_meta", "target")



def _shapes(config: RecycleConfig) -> tuple[int, int]:
    """``(D, M)``: steps per cycle and metadata features per token."""
    if config.dataset not in CYCLE_LEN:
        raise ValueError(f"no cycle length known for dataset {config.dataset!r}; choose from {tuple(CYCLE_LEN)}")
    d = CYCLE_LEN[config.dataset]
    per_column = d if config.exogenous_resolution == "step" else 3
    return d, ts.NUM_META + per_column * len(config.exogenous)


@functools.lru_cache(maxsize=None)
def _recycle(config: RecycleConfig):
    """``(module, predict)`` of ReCycle under ``config`` (``predict(params, arrays, train=, key=)``)."""
    d, m = _shapes(config)
    return _make_model("recycle", config, d, m)


@functools.lru_cache(maxsize=None)
def _jitted_predict(config: RecycleConfig):
    return jax.jit(_recycle(config)[1])


def init(key: PRNGKey, config: RecycleConfig) -> MethodState:
    """ReCycle's parameters and optimiser state at step 0.

    The parameters are those ``run()`` starts from with the same key (it passes
    ``jax.random.split(jax.random.fold_in(jax.random.key(config.seed), 0), 3)[0]``): the model is traced
    on zeros of the windows' shapes, and flax's initialisers see only shapes.

    Examples:
      >>> import jax
      >>> from jaxlab.methods import recycle
      >>> config = recycle.RecycleConfig(dataset="bikeshare", history=3, horizon=2, d_model=8, d_ff=8)
      >>> state = recycle.init(jax.random.key(0), config)
      >>> int(state.step), state.config is config
      (0, True)
    """
    require_config(config, RecycleConfig, "jaxlab.methods.recycle.init")
    validate_config(config)
    params = _jitted_init(config)(key)
    return MethodState.wrap(TrainState.create(params=params, tx=recycle_optimizer(config)), config)


@functools.lru_cache(maxsize=None)
def _jitted_init(config: RecycleConfig):
    """``init_recycle_params`` on zeros of the windows' shapes, compiled once per config."""
    want = _expected(config)
    sample = {k: np.zeros((2, *want[k]), np.float32) for k in BATCH_KEYS[:-1]}   # the inputs, not the target
    model = _recycle(config)[0]
    return jax.jit(lambda key: init_recycle_params(model, key, sample))


def _expected(config: RecycleConfig) -> dict[str, tuple[int, ...]]:
    d, m = _shapes(config)
    h, f = config.history, config.horizon
    return {"hist": (h, d), "hist_profile": (h, d), "hist_meta": (h, m), "fc_profile": (f, d), "fc_meta": (f, m),
            "target": (f, d)}


def _check_arrays(where: str, arrays: Any, config: RecycleConfig, keys: tuple[str, ...]) -> None:
    """Shape checks at trace time (static shapes), naming the input and the fix."""
    if not isinstance(arrays, dict) or set(keys) - set(arrays):
        got = sorted(arrays) if isinstance(arrays, dict) else type(arrays).__name__
        raise ValueError(f"recycle.{where}: needs a dict with keys {keys} (a split of "
                         f"recycle.prepare_windows(config)['splits']), got {got}")
    want = _expected(config)
    ts.check_batch_shapes(arrays, {k: want[k] for k in keys}, name=lambda k: f"recycle.{where}: {k!r}",
                          context=f"(history {config.history}, horizon {config.horizon} cycles of "
                                  f"{want['target'][1]} steps for {config.dataset!r}, {want['hist_meta'][1]} "
                                  f"metadata features); make the windows with recycle.prepare_windows(config)")


def train_step(state: MethodState, batch: dict, key: PRNGKey) -> tuple[MethodState, dict]:
    """One optimiser step of ReCycle on a batch of windows: the step ``run()`` trains it with.

    Args:
      state: from :func:`init`.
      batch: float32 arrays of cycle tokens, normalised: ``hist``, ``hist_profile`` ``(B, history, D)``,
        ``hist_meta`` ``(B, history, M)``, ``fc_profile``, ``target`` ``(B, horizon, D)``, ``fc_meta``
        ``(B, horizon, M)`` (``D = CYCLE_LEN[config.dataset]``, ``M = jaxlab.timeseries.NUM_META + 3 *
        len(config.exogenous)``, 9 + 3 per exogenous column, or 9 + D per column with
        ``exogenous_resolution="step"``).
        ``run()`` draws them as ``train = recycle_windows(prepare_windows(config)["splits"], config)["train"]``,
        ``batcher = jaxlab.data.Batcher(tuple(train[k] for k in BATCH_KEYS), batch_size, key=...)`` and
        ``dict(zip(BATCH_KEYS, batcher(step)))``.
      key: the dropout randomness (used when ``config.dropout > 0``).

    Returns:
      ``(state, {"loss", "mse"})``: the training loss (L1, or pinball with quantiles) and the point
      forecast's MSE of the batch, before the update.

    Raises:
      ValueError: when the batch misses a key or its shapes do not fit the config.
    """
    config = state.config
    _check_arrays("train_step", batch, config, BATCH_KEYS)
    qs = tuple(config.quantiles)
    step = make_train_step(make_loss_fn("recycle", _recycle(config)[1], qs), recycle_optimizer(config), jit=False)
    new, metrics = step(state.train_state(), batch, key)
    return MethodState.wrap(new, config), metrics


def evaluate(state: MethodState, data: dict, *, split: str = "test") -> dict[str, float]:
    """The point metrics ``run()`` reports for ReCycle on ``split``, in the series' units.

    Args:
      state: a trained state.
      data: ``prepare_windows(config)`` (or ``prepare_windows(config, series)``): its ``splits[split]``
        arrays (ReCycle's inputs through :func:`recycle_windows`, as in ``run()``) and ``scalers[split]``.
      split: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
      ``mae``, ``mse``, ``mape_pct`` (:func:`forecast_metrics`), ``mae_lead1`` (first forecast day), ``mase``
      (MAE over the persistence forecast's MAE on the same split) and, with quantile heads, ``pinball``.
      ``run()``'s ``val_mae`` is ``evaluate(..., split="val")["mae"]``; its interval coverages, which
      conformalise on validation, are not computed here.

    Raises:
      ValueError: when ``data`` is not what :func:`prepare_windows` returns or its shapes do not fit.
    """
    config = state.config
    if not isinstance(data, dict) or "splits" not in data or "scalers" not in data:
        raise ValueError("recycle.evaluate: data must be the dict recycle.prepare_windows(config) returns (with "
                         "'splits' and 'scalers'), not one split or batch")
    if split not in data["splits"]:
        raise ValueError(f"recycle.evaluate: unknown split {split!r}; choose from {tuple(data['splits'])}")
    arrays, sc = data["splits"][split], data["scalers"][split]
    _check_arrays("evaluate", arrays, config, BATCH_KEYS)
    own = recycle_windows(data["splits"], config)[split]
    inputs = {k: own[k] for k in BATCH_KEYS[:-1]}
    out = np.asarray(_jitted_predict(config)(state.params, inputs), np.float64)
    qs = tuple(config.quantiles)
    pred = sc.inverse(np.asarray(point_forecast(qs)(out)))
    truth = sc.inverse(arrays["target"].astype(np.float64))
    metrics = forecast_metrics(pred, truth)
    metrics["mae_lead1"] = lead1_mae(pred, truth)
    naive = forecast_metrics(sc.inverse(arrays["persistence"].astype(np.float64)), truth)["mae"]
    metrics["mase"] = metrics["mae"] / naive
    if qs:
        metrics["pinball"] = float(ts.pinball(sc.inverse(out), truth, qs))
    return metrics
