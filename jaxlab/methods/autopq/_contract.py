"""AutoPQ's method contract: ``init(key, config)``, ``train_step(state, batch, key)``, ``evaluate(state, data)``.

AutoPQ trains two things per series: the cINN and a point forecaster. The state and ``train_step`` are the
**cINN** (the method's own model): maximum likelihood of the scaled *true* targets ``(B, H)`` given the
scaled conditions ``(B, D)`` (calendar and exogenous features over the horizon and the lagged target,
:class:`Windows` ``.cond``), with :func:`fit_cinn`'s loss and optimiser. The point forecasts are **not** the
cINN's conditions and do not enter its training: they enter only when sampling, as the point the latent
noise is put around (``_sampling.py``). The **point forecaster** is reached through
:func:`fit_forecaster` (``fit_forecaster(config.forecaster, None, data, key=...)``, what ``run()``'s
default mode does); its forecasts, with ``lambda_q`` from :func:`search_lambda`, go into :func:`evaluate`
through :func:`evaluation_data`.

A state is one series' cINN: ``config.series[0]``, whose :class:`SeriesSpec` fixes ``H`` and ``D = H (6 +
#exogenous) + H``; for another series pass ``dataclasses.replace(config, series=(name,))``, for a custom
one ``init(key, config, spec=...)``. ``model_state`` is ``{}``: the batches are already scaled
(:func:`make_windows` scales targets and conditions on the training windows), so the cINN has no
statistics of its own. ``train_step`` takes no randomness (``fit_cinn`` shuffles outside the step).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import PRNGKey, require_config
from jaxlab.train import MethodState, TrainState

from ._baselines import quantile_crossings
from ._cinn import CINN, init_cinn
from ._evaluate import SampleScorer, quantile_scores
from ._experiment import AutoPQConfig, _Series, units_float64
from ._forecasters import PointForecast
from ._sampling import MODES, QUANTILES, SAMPLE_SIZE, Mode, standard_noise
from ._train import CINNTraining, cinn_nll, cinn_optimizer, cinn_update, epoch_indices
from ._windows import CALENDAR, SERIES, ForecastData, SeriesSpec, Windows


def _check_config(config: Any) -> AutoPQConfig:
    require_config(config, AutoPQConfig, "AutoPQ's init/train_step/evaluate")
    return config


def _model(config: AutoPQConfig, horizon: int) -> CINN:
    return CINN(horizon=horizon, num_blocks=config.cinn_blocks)


@functools.lru_cache(maxsize=16)
def _tx(config: AutoPQConfig):
    """``run()``'s cINN optimiser for ``config`` (:func:`cinn_optimizer` of its :class:`CINNTraining`)."""
    return cinn_optimizer(CINNTraining(epochs=config.cinn_epochs, batch_size=config.cinn_batch_size))


def condition_size(spec: SeriesSpec) -> int:
    """``D``, the length of a window's conditions: ``H`` steps of ``6`` calendar and the exogenous features,
    then the ``H`` lagged targets (:func:`make_windows`)."""
    return spec.horizon * (len(CALENDAR) + len(spec.exogenous)) + spec.horizon


def init(key: PRNGKey, config: AutoPQConfig, *, spec: SeriesSpec | None = None) -> MethodState:
    """The cINN of ``config.series[0]`` at step 0, with its optimiser's initial state.

    Args:
      key: PRNG key, split as :func:`fit_cinn` splits it (the first of three initialises): with the key
        ``run()`` gives ``fit_cinn`` (``split(fold_in(key(config.seed), sum(map(ord, name))), 5)[0]``) this is
        ``run()``'s starting point.
      config: an :class:`AutoPQConfig` (``cinn_blocks`` sets the depth; the series sets ``H`` and ``D``).
      spec: only for a series not in :data:`SERIES` (``run(..., data=...)``): its :class:`SeriesSpec`.

    Returns:
      A :class:`jaxlab.train.MethodState` with the cINN's variables as ``params`` and ``model_state = {}``.

    Examples:
      >>> import jax
      >>> from jaxlab.methods import autopq
      >>> state = autopq.init(jax.random.key(0), autopq.AutoPQConfig(series=("bikeshare",), cinn_blocks=2))
      >>> state.params["params"]["condition"]["hidden"]["kernel"].shape      # D = 24 (6 + 4) + 24
      (264, 8)
    """
    config = _check_config(config)
    if spec is None:
        name = config.series[0]
        if name not in SERIES:
            raise ValueError(f"series {name!r} is not one of {tuple(SERIES)}; pass its spec=SeriesSpec(...)")
        spec = SERIES[name]
    h, d = spec.horizon, condition_size(spec)
    k_init, _, _ = jax.random.split(key, 3)
    params = init_cinn(_model(config, h), k_init, jnp.zeros((1, h), jnp.float32), jnp.zeros((1, d), jnp.float32))
    return MethodState.wrap(TrainState.create(params=params, tx=_tx(config)), config)


def _cond_size(params) -> tuple[int, int]:
    """``(H, D)`` of a cINN's variables: the condition network's input width and the horizon of block 0."""
    p = params["params"]
    d = int(p["condition"]["hidden"]["kernel"].shape[0])
    net2 = p["blocks_0"]["net2"]["out"]["kernel"]          # gives (s2, t2) for x1: 2 (H // 2) outputs
    net1 = p["blocks_0"]["net1"]["out"]["kernel"]          # gives (s1, t1) for x2: 2 (H - H // 2) outputs
    return int(net2.shape[1] + net1.shape[1]) // 2, d


def _arrays(data: Any, what: str) -> tuple[Any, Any]:
    if isinstance(data, Windows):
        return data.target, data.cond
    if not isinstance(data, Mapping) or "target" not in data or "cond" not in data:
        got = sorted(data) if isinstance(data, Mapping) else type(data).__name__
        raise TypeError(f"AutoPQ's {what} must be a Windows split or a dict with 'target' (B, H) and 'cond' "
                        f"(B, D) (scaled, as load_windows(name).splits['train'] holds them; batches from "
                        f"autopq.cinn_batches), got {got}")
    return data["target"], data["cond"]


def _check_shapes(target, cond, weight, params, config: AutoPQConfig, what: str) -> None:
    blocks = sum(1 for k in params["params"] if k.startswith("blocks_"))
    if blocks != config.cinn_blocks:
        raise ValueError(f"the state's cINN has {blocks} coupling blocks but its config says cinn_blocks = "
                         f"{config.cinn_blocks}; make the state with init(key, config) for this config")
    h, d = _cond_size(params)
    b = target.shape[0] if target.ndim else None
    if target.shape != (b, h) or cond.shape != (b, d):
        raise ValueError(f"AutoPQ's {what} has target {target.shape} and cond {cond.shape}, but the state's cINN "
                         f"takes target (B, {h}) and cond (B, {d}) with one B: use the windows of the series "
                         f"the state was made for")
    if weight is not None and weight.shape != (b,):
        raise ValueError(f"AutoPQ's {what} has weight {weight.shape}; it must be (B,) = ({b},), one per window")
    if b == 0:
        raise ValueError(f"AutoPQ's {what} holds no windows; pass at least one")


def train_step(state: MethodState, batch: Mapping[str, Any] | Windows, key: PRNGKey) -> tuple[MethodState, dict]:
    """One step of the cINN on ``batch``: :func:`fit_cinn`'s update (:func:`cinn_update`), which ``run()`` uses.

    Pure and jittable (``jax.jit(train_step)`` compiles once per config and batch shape).

    Args:
      state: from :func:`init` (or an earlier step).
      batch: ``{"target": (B, H) float32, "cond": (B, D) float32, "weight": (B,) float32}``: scaled true
        targets and conditions of ``B`` windows, and optional per-window weights (default ones; 0 drops a
        window, as for the fill of ``fit_cinn``'s partial last batch). A :class:`Windows` split also works
        (weights one). Get batches as ``run()`` does: ``w = load_windows(name).splits["train"]`` and then
        ``cinn_batches(w.target, w.cond, config.cinn_batch_size, key=k)`` (one shuffled epoch, the
        batching of ``fit_cinn``, :func:`epoch_indices`). ``fit_cinn`` also holds out a random 20% of the
        training windows first; take them out yourself if you want the same held-out loss.
      key: unused (the step is deterministic); kept for the contract's signature.

    Returns:
      ``(state, {"loss": weighted NLL before the step})``.

    Raises:
      TypeError: ``batch`` is not a mapping with ``target`` and ``cond`` (or a :class:`Windows`).
      ValueError: its shapes do not fit the state's cINN (another series' windows, unflattened conditions).
    """
    del key
    config = _check_config(state.config)
    target, cond = _arrays(batch, "train_step batch")
    weight = batch.get("weight") if isinstance(batch, Mapping) else None
    _check_shapes(target, cond, weight, state.params, config, "train_step batch")
    model = _model(config, target.shape[1])
    weight = jnp.ones(target.shape[:1], target.dtype) if weight is None else weight
    params, opt_state, loss = cinn_update(model, _tx(config), state.params, state.opt_state, target, cond, weight)
    new = TrainState(step=state.step + 1, params=params, opt_state=opt_state, model_state=state.model_state)
    return MethodState.wrap(new, config), {"loss": loss}


def cinn_batches(target, cond, batch_size: int, *, key: PRNGKey):
    """One shuffled epoch of ``train_step`` batches, :func:`fit_cinn`'s batching (:func:`epoch_indices`).

    Yields:
      ``{"target", "cond", "weight"}`` dicts of ``min(batch_size, N)`` windows; the last batch is filled up
      with window 0 at weight 0.
    """
    target, cond = jnp.asarray(target), jnp.asarray(cond)
    index, weight = epoch_indices(key, int(target.shape[0]), batch_size)
    for i in range(index.shape[0]):
        yield {"target": target[index[i]], "cond": cond[index[i]], "weight": weight[i]}


@functools.lru_cache(maxsize=16)
def _nll_fn(horizon: int, num_blocks: int):
    """The jitted :func:`cinn_nll` of a ``CINN(horizon, num_blocks)`` (one compilation per shape)."""
    return jax.jit(functools.partial(cinn_nll, CINN(horizon=horizon, num_blocks=num_blocks)))


@functools.lru_cache(maxsize=16)
def _scorer(horizon: int, num_blocks: int, offset: float, scale: float, limits: tuple) -> SampleScorer:
    """One :class:`SampleScorer` (one compilation) per cINN shape and scaler."""
    return SampleScorer(CINN(horizon=horizon, num_blocks=num_blocks), offset, scale, limits, QUANTILES)


def evaluate(state: MethodState, data: Any) -> dict[str, float]:
    """The figures ``run()`` reports for the cINN, and for AutoPQ when the data carry a point forecast.

    Args:
      state: a :class:`jaxlab.train.MethodState` from :func:`init` / :func:`train_step`.
      data: a :class:`Windows` split or a dict with ``target`` ``(B, H)`` and ``cond`` ``(B, D)``: gives
        ``nll``, the cINN's :func:`nll_loss` (``run()``'s ``final_holdout_nll`` is this on the held-out
        windows). With also ``forecast`` (scaled point forecasts ``(B, H)``, clipped to the limits),
        ``noise`` (``(M, B, H)`` standard normal), ``lambda_q``, ``offset``, ``scale`` and ``limits`` (the
        series' scaler and physical limits) and optionally ``mode`` (default ``"multiplicative"``), it also
        gives ``run()``'s row of that method on the split: ``crps_samples``, ``crps_quantile``, ``pinball``,
        ``mae``, ``coverage_80``, ``width_80``, ``coverage_98``, ``width_98`` (series units) and
        ``crossings``. :func:`evaluation_data` builds such a dict from a fitted point forecaster.

    Returns:
      The metrics as floats.
    """
    config = _check_config(state.config)
    target, cond = _arrays(data, "evaluate data")
    target, cond = np.asarray(target, np.float32), np.asarray(cond, np.float32)
    _check_shapes(target, cond, None, state.params, config, "evaluate data")
    horizon = int(target.shape[1])
    out: dict[str, float] = {"nll": float(_nll_fn(horizon, config.cinn_blocks)(state.params, target, cond))}
    if not isinstance(data, Mapping) or "forecast" not in data:
        return out
    missing = [k for k in ("noise", "lambda_q", "offset", "scale", "limits") if k not in data]
    if missing:
        raise ValueError(f"evaluate data with a 'forecast' also need {missing} (autopq.evaluation_data(...) "
                         "builds them)")
    forecast, noise = np.asarray(data["forecast"], np.float32), np.asarray(data["noise"], np.float32)
    if forecast.shape != target.shape or noise.ndim != 3 or noise.shape[1:] != target.shape:
        raise ValueError(f"evaluate data: forecast {forecast.shape} must match target {target.shape} and noise "
                         f"{noise.shape} must be (M, {target.shape[0]}, {target.shape[1]})")
    mode = data.get("mode", "multiplicative")
    if mode not in MODES:
        raise ValueError(f"evaluate data: mode must be one of {MODES}, got {mode!r}")
    offset, scale, limits = float(data["offset"]), float(data["scale"]), tuple(data["limits"])
    lam = float(data["lambda_q"])
    scorer = _scorer(horizon, config.cinn_blocks, offset, scale, limits)
    crps, q = scorer.evaluate(state.params, forecast, cond, noise, target, lam, cast(Mode, mode))
    y = units_float64(target, offset, scale, limits)
    out.update(quantile_scores(q, y, QUANTILES), crps_samples=float(crps),
               crossings=float(quantile_crossings(q)["crossings"]))
    return out


def evaluation_data(data: ForecastData, split: str, point: PointForecast, *, key: PRNGKey, lambda_q: float,
                    sample_size: int = SAMPLE_SIZE, mode: str = "multiplicative") -> dict[str, Any]:
    """The :func:`evaluate` input for ``split`` of ``data``: ``run()``'s forecasts (``point`` on the split's
    windows, clipped to the limits) and fresh standard-normal noise from ``key``.

    ``run()`` scores the test split with ``key = split(fold_in(key(config.seed), sum(map(ord, name))), 5)[3]``.
    """
    w = data.splits[split]
    s = _Series(data)
    return {"target": w.target, "cond": w.cond, "forecast": s.predict(point, split),
            "noise": np.asarray(standard_noise(key, w.target.shape, sample_size)), "lambda_q": float(lambda_q),
            "offset": s.offset, "scale": s.scale, "limits": tuple(s.limits), "mode": mode}
