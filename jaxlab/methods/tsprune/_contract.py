"""The method contract of the pruning study: ``init``, a pure ``train_step`` and ``evaluate`` (see ``jaxlab.methods``).

The contract trains the study's main model: the first cell of :func:`run`'s grid, the forecaster
``config.models[0]`` on ``config.datasets[0]`` at horizon ``config.horizons[0]``, built by
:func:`~jaxlab.methods.tsprune.zoo_config` from the config's sizes (pick another cell with
``dataclasses.replace(config, models=("informer",))``). Its shapes come from the config alone: the
channels of a dataset are :data:`CHANNELS`, the time features ``jaxlab.timeseries.NUM_TIME_FEATURES``.

:func:`train_step` is the step :class:`~jaxlab.methods.tsprune.Forecaster` runs inside ``run()``
(``_train.masked_step``: the MSE loss of ``forecast_loss`` and ``prune.masked`` around Adam with its
rate in the optimiser state), so dense training and masked fine-tuning are the same step:

* **dense training**: :func:`init` holds all-``True`` masks;
* **unstructured pruning + fine-tuning** (the study's other stage): ``masks =
  tsprune.magnitude_masks(state.params, sparsity, scope=config.scope)``, then :func:`with_masks` zeroes
  the masked weights and starts a fresh optimiser at ``config.finetune_learning_rate``, as ``run()``
  does; every later :func:`train_step` keeps them exactly zero.

``model_state`` is ``{"masks": ..., "collections": ...}``: the boolean masks (the params' structure,
``True`` keeps) and the model's variable collections other than ``params`` (empty for the zoo's five
models). The learning rate lives in the optimiser state; ``run()`` halves it between epochs (host
side), which :func:`set_learning_rate` reproduces. Structured pruning (``jaxlab.prune.shrink``) makes an
ordinary smaller forecaster config, outside a :class:`TsPruneConfig`, and is reached through ``run()``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import prune
from jaxlab import timeseries as ts
from jaxlab.core import PRNGKey, require_config, validate_config
from jaxlab.train import MethodState, TrainState

from ._experiment import DATASETS, TsPruneConfig
from ._train import _inputs, _predict, _set_lr, _split_vars, adam_with_rate, masked_step
from ._zoo import zoo_config

#: Channels of each of :data:`DATASETS` (every column of its series, as ``run()`` windows it).
CHANNELS: dict[str, int] = {"elecdemand": 3, "nyc_weather": 21, "taylor": 1}

BATCH_KEYS: tuple[str, ...] = ("x", "x_mark", "y", "y_mark")


def model_config(config: TsPruneConfig) -> Any:
    """The forecaster config the contract trains: ``config.models[0]`` on ``config.datasets[0]``,
    horizon ``config.horizons[0]``."""
    config.check()
    ds = config.datasets[0]
    if ds not in CHANNELS:
        raise ValueError(f"no channel count known for dataset {ds!r}; choose from {tuple(CHANNELS)}")
    return zoo_config(config.models[0], config.sizes(), channels=CHANNELS[ds], horizon=config.horizons[0])


@functools.lru_cache(maxsize=None)
def _model(mcfg) -> Any:
    return mcfg.module()


@functools.lru_cache(maxsize=None)
def _jitted_predict(mcfg):
    return jax.jit(functools.partial(_predict, _model(mcfg)))


def init(key: PRNGKey, config: TsPruneConfig) -> MethodState:
    """The dense model of :func:`model_config` at step 0, with all-``True`` masks and Adam at
    ``config.learning_rate``.

    The variables are those of ``jaxlab.timeseries.make_forecaster``, which ``Forecaster.init`` calls in
    ``run()`` (with the key ``fold_in(key_of_its_cell, 0)``).

    Examples:
      >>> import dataclasses, jax
      >>> from jaxlab.methods import tsprune
      >>> config = dataclasses.replace(tsprune.TsPruneConfig(), datasets=("taylor",), models=("transformer",),
      ...                              horizons=(4,), input_len=8, label_len=4, d_model=8, n_heads=2, d_ff=8)
      >>> state = tsprune.init(jax.random.key(0), config)
      >>> int(state.step), sorted(state.model_state)
      (0, ['collections', 'masks'])
    """
    require_config(config, TsPruneConfig, "jaxlab.methods.tsprune.init")
    validate_config(config)
    mcfg = model_config(config)
    variables = ts.make_forecaster(mcfg, key=key)[1]   # compiled once per model config
    params, rest = _split_vars(variables)
    masks = jax.tree.map(lambda p: jnp.ones(jnp.shape(p), bool), params)
    tx = prune.masked(adam_with_rate(config.learning_rate), masks)
    state = TrainState.create(params=params, tx=tx, model_state={"masks": masks, "collections": rest})
    return MethodState.wrap(state, config)


def _check_batch(batch: Any, mcfg) -> None:
    """Shape checks at trace time (static shapes): a wrong batch fails before it reaches the model."""
    if not isinstance(batch, dict) or set(BATCH_KEYS) - set(batch):
        got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"tsprune.train_step: batch must be a dict with keys {BATCH_KEYS} (what "
                         f"ForecastWindows.gather returns), got {got}")
    f = ts.NUM_TIME_FEATURES
    want = {"x": (mcfg.input_len, mcfg.channels), "x_mark": (mcfg.input_len, f),
            "y": (mcfg.horizon, mcfg.channels), "y_mark": (mcfg.horizon, f)}
    ts.check_batch_shapes(batch, want, name=lambda k: f"tsprune.train_step: batch[{k!r}]",
                          context=f"(input_len {mcfg.input_len}, horizon {mcfg.horizon}, {mcfg.channels} channels); "
                                  "make the windows with ts.make_windows(series, input_len=config.input_len, "
                                  "horizon=config.horizons[0])")


def train_step(state: MethodState, batch: dict, key: PRNGKey) -> tuple[MethodState, dict]:
    """One masked Adam step on the MSE of a batch of windows: the step ``run()`` trains and fine-tunes with.

    Args:
      state: from :func:`init` or :func:`with_masks`.
      batch: ``{"x": (B, L, C), "x_mark": (B, L, F), "y": (B, H, C), "y_mark": (B, H, F)}``, float32, with
        ``L = config.input_len``, ``H = config.horizons[0]``, ``C = CHANNELS[config.datasets[0]]`` and
        ``F = jaxlab.timeseries.NUM_TIME_FEATURES`` (12): ``windows.gather(origins)`` of ``windows =
        jaxlab.timeseries.make_windows(tsprune.DATASETS[name](), input_len=L, horizon=H)``, with
        ``origins`` drawn from ``windows.origins("train")`` (``run()`` shuffles them every epoch).
      key: dropout (and sampling) randomness.

    Returns:
      ``(state, {"loss": MSE of the batch before the update})``; the masked weights are exactly zero.

    Raises:
      ValueError: when the batch misses a key or its shapes do not fit the model.
    """
    config = state.config
    mcfg = model_config(config)
    _check_batch(batch, mcfg)
    masks = state.model_state["masks"]
    inner = TrainState(step=state.step, params=state.params, opt_state=state.opt_state,
                       model_state=state.model_state["collections"])
    new, metrics = masked_step(_model(mcfg), adam_with_rate(config.learning_rate), inner, masks, batch, key)
    model_state = {"masks": masks, "collections": new.model_state}
    return MethodState.wrap(new._replace(model_state=model_state), config), metrics


def with_masks(state: MethodState, masks: Any) -> MethodState:
    """The state masked fine-tuning starts from, as in ``run()``: the masked weights zeroed, ``masks`` in
    ``model_state``, a fresh optimiser at ``config.finetune_learning_rate`` and the step counter at 0.

    Raises:
      ValueError: when ``masks`` does not have the params' structure and shapes.
    """
    params = state.params
    if jax.tree.structure(masks) != jax.tree.structure(params) or any(
            np.shape(m) != np.shape(p) for m, p in zip(jax.tree.leaves(masks), jax.tree.leaves(params))):
        raise ValueError("tsprune.with_masks: masks must have the structure and shapes of state.params; make them "
                         "with tsprune.magnitude_masks(state.params, sparsity)")
    masks = jax.tree.map(lambda m: jnp.asarray(m, bool), masks)
    params = prune.apply_masks(params, masks)
    tx = prune.masked(adam_with_rate(state.config.finetune_learning_rate), masks)
    fresh = TrainState.create(params=params, tx=tx,
                              model_state={"masks": masks, "collections": state.model_state["collections"]})
    return MethodState.wrap(fresh, state.config)


def set_learning_rate(state: MethodState, learning_rate: float) -> MethodState:
    """``state`` with Adam's rate set to ``learning_rate`` (``run()`` halves it between epochs this way)."""
    return MethodState.wrap(state.train_state()._replace(opt_state=_set_lr(state.opt_state, learning_rate)),
                            state.config)


def evaluate(state: MethodState, data: ts.ForecastWindows, *, split: str = "test", stride: int = 1
             ) -> dict[str, float]:
    """MSE and MAE (standardised units) over every ``stride``-th window of ``split``: ``run()``'s row metrics.

    Args:
      state: a trained state.
      data: the windows of ``config.datasets[0]``, ``jaxlab.timeseries.make_windows(series,
        input_len=config.input_len, horizon=config.horizons[0])``.
      split: ``"train"``, ``"val"`` or ``"test"``.
      stride: 1 evaluates every window (as ``run()`` does for the test split).

    Returns:
      ``{"mse", "mae", "windows"}`` (:func:`jaxlab.timeseries.evaluate_windows` in batches of
      ``config.eval_batch``).

    Raises:
      ValueError: when ``data`` is not a ``ForecastWindows`` of the model's shapes.
    """
    mcfg = model_config(state.config)
    if not isinstance(data, ts.ForecastWindows):
        raise ValueError(f"tsprune.evaluate: data must be jaxlab.timeseries.ForecastWindows (ts.make_windows(series, "
                         f"input_len=..., horizon=...)), got {type(data).__name__}; for one batch, wrap its "
                         f"series instead")
    got = (data.input_len, data.horizon, data.channels)
    want = (mcfg.input_len, mcfg.horizon, mcfg.channels)
    if got != want:
        raise ValueError(f"tsprune.evaluate: the windows have (input_len, horizon, channels) = {got}, the model "
                         f"{want}; make them with ts.make_windows(series, input_len={want[0]}, horizon={want[1]})")
    predict = _jitted_predict(mcfg)
    params, collections = state.params, state.model_state["collections"]

    def run(batch):
        return predict(params, collections, *_inputs(batch))

    return ts.evaluate_windows(run, data, split, batch_size=state.config.eval_batch, stride=stride)
