"""The method contract of WeatherMixer: ``init(key, config)``, ``train_step(state, batch, key)``, ``evaluate``.

These run the model unsharded (``LocalOps``: one device, or GSPMD when the arrays passed in are already
sharded); :func:`run` trains the same model with the same loss (:func:`make_loss_fn`) and optimiser
(:func:`make_optimizer`) under Jigsaw on ``config.mesh``, which computes the same function (the tests compare
one step of each). WeatherMixer trains one model, so ``train_step`` is the whole method.

``state.model_state`` holds ``{"lat_weights": (lat,) float32}``: the loss's latitude weights
(:func:`latitude_weights` of the dataset's latitudes), so that a batch holds only states and targets.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import numpy as np

from jaxlab.core import PRNGKey, require_config
from jaxlab.train import MethodState, make_train_step

from ._loss import latitude_weights
from ._model import WeatherMixer
from ._run import (
    WeatherMixerConfig,
    _channel_names,
    _channel_std,
    _make_model,
    _make_scores,
    _make_tx,
    _rmse_summary,
    load_data,
)
from ._sharded import init_params, make_apply
from ._train import make_loss_fn

# What load_navy_winds(lags=2) gives (the file's 73 rows less the 90N one, 2.5 degrees; U and V at t and t-1):
# train_step builds the model from the config alone, without reading the file. init checks it against the file.
_NAVY_WINDS_GRID, _NAVY_WINDS_CHANNELS = (72, 144), 4
_BATCH_KEYS = ("state", "target")


def _layout(config: WeatherMixerConfig) -> tuple[tuple[int, int], int]:
    """``(grid, channels)`` that the config's dataset implies."""
    if config.dataset == "navy_winds":
        return _NAVY_WINDS_GRID, _NAVY_WINDS_CHANNELS
    return config.grid, config.channels


@functools.lru_cache(maxsize=16)
def _parts(config: WeatherMixerConfig):
    """``(model, init_fn, step, scores)`` of ``config``, built once per config (the cache key):
    ``init_fn(key) -> (params, opt_state)`` (:func:`init_params` and the optimiser's state, jitted once), the
    unjitted :func:`jaxlab.train.make_train_step` step over :func:`make_loss_fn` and :func:`make_optimizer`,
    and the jitted one-batch scores of ``run``'s evaluation."""
    model = _make_model(config, *_layout(config))
    tx = _make_tx(config)

    @jax.jit
    def init_fn(key):
        params = init_params(model, key=key)
        return params, tx.init(params)

    step = make_train_step(make_loss_fn(model), tx, jit=False)
    scores = jax.jit(_make_scores(make_apply(model)))
    return model, init_fn, step, scores


class _DatasetInfo(NamedTuple):
    """What ``init`` and ``evaluate`` read from the config's dataset (not its samples)."""

    grid: tuple[int, ...]
    channels: int
    lat_weights: np.ndarray
    names: tuple[str, ...]
    nvar: int
    std: np.ndarray


@functools.lru_cache(maxsize=16)
def _dataset_info(config: WeatherMixerConfig) -> _DatasetInfo:
    """The dataset's grid, channels, latitude weights, channel names and scales, read once per config (for
    ``navy_winds`` a file read: ``evaluate`` no longer loads the data on every call)."""
    src, _, _ = load_data(config)
    names, nvar = _channel_names(src)
    return _DatasetInfo(tuple(src.grid), src.channels, np.asarray(latitude_weights(src.lat)), names, nvar,
                        _channel_std(src))


def _check_arrays(data, model: WeatherMixer, what: str, loader: str) -> None:
    if not isinstance(data, dict) or set(data) != set(_BATCH_KEYS):
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{what} must be a dict with exactly the keys {list(_BATCH_KEYS)} (states and their "
                         f"targets), got {got}; {loader}")
    want = (*model.grid, model.channels)
    sizes = set()
    for k in _BATCH_KEYS:
        shape, dtype = np.shape(data[k]), getattr(data[k], "dtype", None)
        if len(shape) != 4 or tuple(shape[1:]) != want:
            raise ValueError(f"{what}[{k!r}] has shape {tuple(shape)}; expected (samples, {want[0]}, {want[1]}, "
                             f"{want[2]}) = (samples, lat, lon, channels) for this config; {loader}")
        if dtype != np.float32:
            raise ValueError(f"{what}[{k!r}] has dtype {dtype}; expected float32 (the parameters' dtype): "
                             f"pass {what}[{k!r}].astype(np.float32)")
        sizes.add(shape[0])
    if len(sizes) != 1:
        raise ValueError(f"{what}['state'] and {what}['target'] hold different numbers of samples {sorted(sizes)}; "
                         "pass one target per state")


_TRAIN_LOADER = ("read one with `src, train_ids, _ = weathermixer.load_data(config)` and "
                 "`{'state': src.read(ids), 'target': src.read(ids, target=True)}` for ids from train_ids")
_TEST_LOADER = ("read one with `src, _, test_ids = weathermixer.load_data(config)` and "
                "`{'state': src.read(test_ids), 'target': src.read(test_ids, target=True)}`")


def init(key: PRNGKey, config: WeatherMixerConfig) -> MethodState:
    """The state at step 0: parameters from ``key``, Adam moments, the latitude weights of the dataset.

    The parameters equal ``run``'s for the same key (``run`` uses ``jax.random.split(jax.random.key(seed))[0]``);
    they do not depend on a mesh. For ``navy_winds`` this reads the data file (for its latitudes).

    Args:
      key: the parameters' PRNG key.
      config: a :class:`WeatherMixerConfig` (its dataset fixes the grid and channels).

    Returns:
      A :class:`jaxlab.train.MethodState` with ``model_state = {"lat_weights": (lat,) float32}``.

    Raises:
      DataNotFoundError: for ``navy_winds`` when its file is missing.
    """
    require_config(config, WeatherMixerConfig, "jaxlab.methods.weathermixer.init")
    model, init_fn, _, _ = _parts(config)
    info = _dataset_info(config)
    if (info.grid, info.channels) != (model.grid, model.channels):
        raise ValueError(f"the {config.dataset} data has grid {info.grid} and {info.channels} channels; "
                         f"jaxlab expects {model.grid} and {model.channels}: is the data file the packaged one?")
    params, opt_state = init_fn(key)
    lat_weights = jax.device_put(info.lat_weights)
    return MethodState(step=jax.device_put(np.zeros((), np.int32)), params=params, opt_state=opt_state,
                       model_state={"lat_weights": lat_weights}, config=config)


def train_step(state: MethodState, batch: dict, key: PRNGKey) -> tuple[MethodState, dict]:
    """One Adam update (global-norm clipped, a lower rate for embedding and recovery) of the lat-weighted MSE.

    The step of ``run`` (:func:`jaxlab.train.make_train_step` over :func:`make_loss_fn` and
    :func:`make_optimizer`, all from ``state.config``), on one device. Pure; ``jax.jit(train_step)`` compiles
    once per config.

    Args:
      state: from :func:`init` (or a previous step).
      batch: ``{"state": x, "target": y}``, each float32 ``(B, lat, lon, C)`` (the grid and channels of the
        config's dataset), normalised as the sources give them: ``src, train_ids, _ = load_data(config)``,
        then ``{"state": src.read(ids), "target": src.read(ids, target=True)}`` (``run`` reads batches of
        ``config.batch_size`` from ``train_ids``). Arrays already laid out on a mesh
        (``jaxlab.data.global_batch``) run under GSPMD.
      key: unused (the model has no dropout); kept for the contract.

    Returns:
      ``(new_state, {"loss": lat-weighted MSE before the update})``.

    Raises:
      ValueError: when ``batch`` lacks a key or its arrays have the wrong shape or dtype.
    """
    model, _, step, _ = _parts(state.config)
    _check_arrays(batch, model, "batch", _TRAIN_LOADER)
    full = {**batch, "lat_weights": state.model_state["lat_weights"]}
    new, metrics = step(state.train_state(), full, key)
    return MethodState.wrap(new, state.config), metrics


def evaluate(state: MethodState, data: dict) -> dict:
    """``run``'s evaluation metrics on a split: one-step lat-weighted RMSE of the model and of persistence.

    Like ``run``, the split is scored in batches of ``config.batch_size`` (the samples past the last whole
    batch are left out); each batch's per-channel RMSE (:func:`weighted_rmse`) is averaged over batches.

    Args:
      state: a trained state.
      data: ``{"state": x, "target": y}`` as in :func:`train_step`, with at least ``config.batch_size``
        samples (``run`` evaluates ``test_ids`` of :func:`load_data`).

    Returns:
      ``{"test_rmse", "persistence_rmse"}`` (normalised units, mean over the prognostic channels) and
      ``test_rmse_<channel>`` per prognostic channel in physical units (floats). For ``navy_winds`` this
      reads the data file (the channels' names and scales).

    Raises:
      ValueError: for the wrong keys, shapes or dtypes, or fewer samples than ``config.batch_size``.
    """
    config = state.config
    model, _, _, scores = _parts(config)
    _check_arrays(data, model, "data", _TEST_LOADER)
    bs = config.batch_size
    n = (np.shape(data["state"])[0] // bs) * bs
    if n == 0:
        raise ValueError(f"data holds {np.shape(data['state'])[0]} samples, fewer than config.batch_size = {bs} "
                         "(the evaluation batch); pass more samples or a config with a smaller batch_size")
    batches = ((data["state"][j:j + bs], data["target"][j:j + bs]) for j in range(0, n, bs))
    info = _dataset_info(config)
    return _rmse_summary(scores, state.params, batches, state.model_state["lat_weights"], info.names, info.nvar,
                         info.std)
