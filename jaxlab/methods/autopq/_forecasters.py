"""AutoPQ's point forecasters on :mod:`jaxlab.timeseries`, their defaults, search spaces and training.

Forecasters (a subset of the reference's nine, on our interface): ``persistence`` and ``profile`` (no
training), ``dlinear``, ``mlp`` and ``nhits``. The statistical models (ETS, TBATS, sARIMAX), SVR, XGB,
DeepAR and TFT are not included. Defaults are the libraries' the reference uses: sklearn's
``MLPRegressor`` (one hidden layer of 100, ReLU; the reference's batch 64), pytorch-forecasting's
``NHiTS`` (hidden 512, 2 layers; batch 64).

Search spaces (advanced mode) are the reference's ``ConfigSpace`` restricted to these models: MLP batch
{32, 64, 128}, activation {logistic, tanh, relu}, layer widths 10-100, -80-100, -80-100 (a width below
10 drops the layer); N-HiTS batch, hidden 8-1024 (log scale), 1-3 layers, dropout 0-0.2 (the
reference's ``shared_weights`` is left out: with one block per stack it changes nothing). DLinear
(moving-average kernel, batch) and the profile (cycles averaged) are not in the reference; their spaces
are ours.

Training: MSE, Adam at lr 1e-3, up to ``max_epochs`` with early stopping after ``patience`` epochs
without a better loss on a chronological hold-out: the last 20% of the training windows, after a gap
of ``H`` windows so no hold-out target overlaps a training one (sklearn's early stopping holds out a
random 20%, which with windows at every step leaks neighbouring windows). The best epoch's
parameters are kept. ``report(epoch, loss)`` is called after every epoch (optuna's pruner).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab import timeseries as ts
from jaxlab.core import PRNGKey

from ._windows import ForecastData

FORECASTERS: tuple[str, ...] = ("persistence", "profile", "dlinear", "mlp", "nhits")
TRAINED: tuple[str, ...] = ("dlinear", "mlp", "nhits")

#: Default hyperparameters (AutoPQ-default keeps these).
DEFAULTS: dict[str, dict[str, Any]] = {
    "persistence": {},
    "profile": {"cycles": 3},
    "dlinear": {"kernel": 25, "batch_size": 64},
    "mlp": {"hidden": (100,), "activation": "relu", "batch_size": 64},
    "nhits": {"hidden": 512, "layers": 2, "dropout": 0.0, "batch_size": 64},
}


@dataclasses.dataclass(frozen=True)
class ForecasterTraining:
    """Optimiser settings of the trained point forecasters.

    The defaults are sklearn ``MLPRegressor``'s, the reference's MLP: at most ``max_iter = 200`` epochs,
    ``n_iter_no_change = 10``, ``learning_rate_init = 1e-3`` (a cap of 50 epochs stopped the MLP on
    taylor at epoch 50 with its hold-out loss still falling).
    """

    max_epochs: int = 200
    patience: int = 10
    learning_rate: float = 1e-3
    holdout: float = 0.2


class PointForecast(NamedTuple):
    """A fitted point forecaster.

    Attributes:
      name, hyperparameters: what was fitted.
      config: its :mod:`jaxlab.timeseries` config.
      variables: the best epoch's variables.
      predict: jitted ``(variables, history (B, L), future (B, H, F)) -> (B, H)`` (scaled units).
      epochs: epochs run; best_epoch: the one kept (0 for untrained forecasters).
      holdout_loss: hold-out MSE per epoch.
      train_s: wall time of the fit.
    """

    name: str
    hyperparameters: dict
    config: Any
    variables: Any
    predict: Callable
    epochs: int
    best_epoch: int
    holdout_loss: tuple[float, ...]
    train_s: float

    def __call__(self, history, future) -> np.ndarray:
        return np.asarray(self.predict(self.variables, np.asarray(history), np.asarray(future)))


def suggest_hyperparameters(trial, name: str, data: ForecastData) -> dict[str, Any]:
    """Samples the hyperparameters of ``name`` from its search space with an optuna ``trial``."""
    spec = data.spec
    if name == "persistence":
        return {}
    if name == "profile":
        return {"cycles": trial.suggest_int("profile_cycles", 1, spec.history // spec.period)}
    batch = int(trial.suggest_categorical(f"{name}_batch_size", (32, 64, 128)))
    if name == "dlinear":
        return {"kernel": trial.suggest_int("dlinear_kernel", 3, 2 * spec.period + 1, step=2), "batch_size": batch}
    if name == "mlp":
        widths = [trial.suggest_int("mlp_neurons_1", 10, 100), trial.suggest_int("mlp_neurons_2", -80, 100),
                  trial.suggest_int("mlp_neurons_3", -80, 100)]
        return {"hidden": tuple(w for w in widths if w >= 10),
                "activation": trial.suggest_categorical("mlp_activation", ("logistic", "tanh", "relu")),
                "batch_size": batch}
    if name == "nhits":
        return {"hidden": trial.suggest_int("nhits_hidden", 8, 1024, log=True),
                "layers": trial.suggest_int("nhits_layers", 1, 3),
                "dropout": trial.suggest_float("nhits_dropout", 0.0, 0.2), "batch_size": batch}
    raise ValueError(f"unknown forecaster {name!r}; choose from {FORECASTERS}")


def forecaster_config(name: str, hp: dict[str, Any], data: ForecastData):
    """The :mod:`jaxlab.timeseries` config of forecaster ``name`` with hyperparameters ``hp``."""
    spec = data.spec
    f = len(data.future_names)
    common = {"input_len": spec.history, "horizon": spec.horizon, "channels": 1}
    if name == "persistence":
        return ts.PersistenceConfig(**common, period=spec.period)
    if name == "profile":
        return ts.ProfileConfig(**common, period=spec.period, cycles=int(hp["cycles"]))
    if name == "dlinear":
        return ts.DLinearConfig(**common, kernel=int(hp["kernel"]))
    if name == "mlp":
        return ts.MLPForecasterConfig(**common, hidden=tuple(hp["hidden"]), activation=hp["activation"],
                                      future_features=f)
    if name == "nhits":
        return ts.NHiTSConfig(**common, hidden=int(hp["hidden"]), layers=int(hp["layers"]),
                              dropout=float(hp["dropout"]), future_features=f)
    raise ValueError(f"unknown forecaster {name!r}; choose from {FORECASTERS}")


def _apply_fn(name: str, model) -> Callable:
    """``(variables, history, future, key) -> (B, H)``; ``key`` None means evaluation."""
    def apply(variables, history, future, key=None):
        x = history[..., None]
        if name in ("mlp", "nhits"):
            if name == "nhits" and key is not None:
                y = model.apply(variables, x, future=future, deterministic=False, rngs={"dropout": key})
            else:
                y = model.apply(variables, x, future=future)
        else:
            y = model.apply(variables, x)
        return y[..., 0]
    return apply


def fit_forecaster(name: str, hp: dict[str, Any] | None, data: ForecastData, *, key: PRNGKey,
                   settings: ForecasterTraining = ForecasterTraining(),
                   report: Callable[[int, float], None] | None = None) -> PointForecast:
    """Fits forecaster ``name`` (``hp`` None: its defaults) on the training windows of ``data``."""
    hp = dict(DEFAULTS[name] if hp is None else hp)
    t0 = time.perf_counter()
    config = forecaster_config(name, hp, data)
    model, variables = ts.make_forecaster(config, key=key)
    apply = _apply_fn(name, model)
    predict = jax.jit(lambda v, h, f: apply(v, h, f))
    if name not in TRAINED:
        return PointForecast(name, hp, config, variables, predict, 0, 0, (), time.perf_counter() - t0)
    tr = data.splits["train"]
    n = tr.target.shape[0]
    n_hold = int(n * settings.holdout)
    n_fit = n - n_hold - data.spec.horizon
    if n_fit < 1 or n_hold < 1:
        raise ValueError(f"{n} training windows are too few for a {settings.holdout:.0%} hold-out")
    fit = jax.device_put(tuple(a[:n_fit] for a in (tr.history, tr.future, tr.target)))
    hold = jax.device_put(tuple(a[n - n_hold:] for a in (tr.history, tr.future, tr.target)))
    bs = min(int(hp["batch_size"]), n_fit)
    num_batches = -(-n_fit // bs)
    tx = optax.adam(settings.learning_rate)
    opt_state = tx.init(variables)

    def loss_fn(v, hb, fb, yb, w, k):
        per = jnp.mean(jnp.square(apply(v, hb, fb, k) - yb), -1)
        return jnp.sum(w * per) / jnp.sum(w)

    @jax.jit
    def epoch(v, s, k, fit):   # data as arguments: closed-over arrays would be constant-folded by XLA
        k_perm, k_drop = jax.random.split(k)
        perm = jax.random.permutation(k_perm, n_fit)
        idx = jnp.concatenate([perm, jnp.zeros(num_batches * bs - n_fit, perm.dtype)]).reshape(num_batches, bs)
        w = (jnp.arange(num_batches * bs) < n_fit).astype(jnp.float32).reshape(num_batches, bs)
        keys = jax.random.split(k_drop, num_batches)

        def step(carry, inp):
            v, s = carry
            i, wi, ki = inp
            g = jax.grad(loss_fn)(v, fit[0][i], fit[1][i], fit[2][i], wi, ki)
            u, s = tx.update(g, s, v)
            return (optax.apply_updates(v, u), s), None

        (v, s), _ = jax.lax.scan(step, (v, s), (idx, w, keys))
        return v, s

    hold_loss = jax.jit(lambda v, hold: jnp.mean(jnp.square(apply(v, *hold[:2]) - hold[2])))
    best, best_epoch, curve, since = np.inf, 0, [], 0
    best_vars = variables
    for e in range(1, settings.max_epochs + 1):
        variables, opt_state = epoch(variables, opt_state, jax.random.fold_in(key, e), fit)
        loss = float(hold_loss(variables, hold))
        curve.append(loss)
        if report is not None:
            report(e, loss)
        if not np.isfinite(best) or loss < best - 1e-4 * abs(best):   # sklearn's tol=1e-4, relative here
            best, best_epoch, best_vars, since = loss, e, variables, 0
        else:
            since += 1
            if since >= settings.patience:
                break
    jax.block_until_ready(best_vars)
    return PointForecast(name, hp, config, best_vars, predict, len(curve), best_epoch, tuple(curve),
                         time.perf_counter() - t0)
