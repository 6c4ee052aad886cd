"""Training, masked fine-tuning and evaluation of one forecaster on prepared windows.

One jitted step serves dense training and masked fine-tuning alike: the masks are an argument
(all ``True`` for dense training) and the optimiser is ``jaxlab.prune.masked(adam)``, so pruned
weights stay exactly zero and a sweep over sparsities compiles the step once. The learning rate
sits in the optimiser state (``optax.inject_hyperparams``) and halves after every epoch
(Time-Series-Library's ``lradj="type1"``) or, with ``lr_decay="plateau"``, only after an epoch that
does not improve the validation MSE (so that short epochs of a subsampled training set do not run
the rate down before the model has converged). Early stopping keeps the parameters of the epoch
with the lowest validation MSE and stops after ``patience`` epochs in a row without improvement. The loss is the
MSE on standardised data, as in TSL; every validation and test window is evaluated
(:func:`jaxlab.timeseries.evaluate_windows`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab import prune
from jaxlab import timeseries as ts
from jaxlab.train import TrainState, make_train_step


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings (the paper: Adam, lr 5e-4, batch 32, 10 epochs, early stopping).

    Attributes:
      batch_size: windows per step.
      learning_rate: Adam's initial rate (halved after every epoch when ``halve_lr``).
      epochs: maximum epochs of dense training.
      patience: epochs without a better validation MSE before stopping.
      halve_lr: halve the learning rate at all (``False``: constant).
      lr_decay: when it halves: ``"epoch"`` after every epoch (TSL's ``lradj="type1"``), ``"plateau"``
        after every epoch whose validation MSE is not a new best.
      train_stride: an epoch uses every ``train_stride``-th training window (1: all), starting at
        ``epoch % train_stride``, so that successive epochs see different windows.
      val_stride: evaluate every ``val_stride``-th validation window for early stopping (1: all).
      eval_batch: windows per evaluation call.
    """

    batch_size: int = 32
    learning_rate: float = 5e-4
    epochs: int = 10
    patience: int = 3
    halve_lr: bool = True
    lr_decay: str = "epoch"
    train_stride: int = 1
    val_stride: int = 1
    eval_batch: int = 256


def _split_vars(variables) -> tuple[Any, dict]:
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}
    return params, rest


def _inputs(batch):
    return batch["x"], batch["x_mark"], batch["y_mark"]


def adam_with_rate(learning_rate: float) -> optax.GradientTransformation:
    """The study's Adam, with its learning rate in the optimiser state (``_set_lr`` rewrites it per epoch)."""
    return optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)


def _predict(model, params, model_state, x, x_mark, future_mark):
    return model.apply({"params": params, **model_state}, x, x_mark, future_mark)


def forecast_loss(model, params, model_state, batch, key):
    """The training loss of ``model``: MSE of its (dropout-on) forecast against ``batch["y"]``.

    ``model_state`` holds the variable collections other than ``params`` (updated when the model has any);
    ``key`` is split into the ``dropout`` and ``sample`` streams. Returns ``(loss, ({}, new_model_state))``,
    the form :func:`jaxlab.train.make_train_step` takes.
    """
    k_drop, k_sample = jax.random.split(key)
    x, x_mark, future_mark = _inputs(batch)
    rngs = {"dropout": k_drop, "sample": k_sample}
    variables = {"params": params, **model_state}
    if model_state:
        out, new_state = model.apply(variables, x, x_mark, future_mark, train=True, rngs=rngs,
                                     mutable=list(model_state))
    else:
        out, new_state = model.apply(variables, x, x_mark, future_mark, train=True, rngs=rngs), {}
    loss = jnp.mean(jnp.square(out - batch["y"]))
    return loss, ({}, dict(new_state))


def masked_step(model, tx: optax.GradientTransformation, state: TrainState, masks, batch, key
                ) -> tuple[TrainState, dict]:
    """One step of :func:`forecast_loss` under ``prune.masked(tx, masks)`` (all-``True`` masks: dense training).

    The one step of the study: :class:`Forecaster` jits it with the masks as an argument, and the public
    ``tsprune.train_step`` calls it with the masks of its state.
    """
    loss_fn = functools.partial(forecast_loss, model)
    return make_train_step(loss_fn, prune.masked(tx, masks), jit=False)(state, batch, key)


class Forecaster:
    """A model with jitted predict and train step, plus helpers to train and evaluate it on windows."""

    def __init__(self, config: Any, windows: ts.ForecastWindows, settings: TrainSettings):
        self.config = config
        self.model = config.module()
        self.windows = windows
        self.settings = settings
        self._stateful = None
        self._tx = adam_with_rate(settings.learning_rate)
        self.predict = jax.jit(functools.partial(_predict, self.model))

        def step(state, masks, batch, key):
            return masked_step(self.model, self._tx, state, masks, batch, key)

        self._step = jax.jit(step, donate_argnums=(0,))

    def init(self, key) -> dict:
        """Fresh variables (``make_forecaster``)."""
        _, variables = ts.make_forecaster(self.config, key=key)
        return jax.device_get(variables)

    def evaluate(self, variables, split: str, *, stride: int = 1) -> dict[str, float]:
        """MSE/MAE over the windows of ``split`` (every ``stride``-th; 1 evaluates them all)."""
        params, rest = _split_vars(variables)
        w = self.windows

        def run(batch):
            return self.predict(params, rest, *_inputs(batch))

        return ts.evaluate_windows(run, w, split, batch_size=self.settings.eval_batch, stride=stride)

    def fit(self, variables, *, key, masks=None, epochs: int | None = None, patience: int | None = None,
            learning_rate: float | None = None, progress: Callable[[str], None] | None = None) -> tuple[dict, dict]:
        """Trains (masked when ``masks`` is given) with early stopping on validation MSE.

        ``learning_rate`` replaces the settings' initial rate (fine-tuning starts lower).

        Returns:
          ``(best_variables, info)``; ``info`` has ``epochs`` run, ``best_epoch``, ``val_mse`` per epoch,
          ``train_s`` and ``steps``.
        """
        s = self.settings
        epochs = s.epochs if epochs is None else epochs
        patience = s.patience if patience is None else patience
        params, rest = _split_vars(variables)
        if masks is None:
            masks = jax.tree.map(lambda p: np.ones(np.shape(p), bool), params)
        params = prune.apply_masks(params, masks)
        tx = prune.masked(self._tx, masks)
        state = TrainState.create(params=jax.device_put(params), tx=tx, model_state=jax.device_put(rest))
        all_origins = self.windows.origins("train")
        stride = max(1, s.train_stride)
        seed = int(jax.random.randint(key, (), 0, 2 ** 31 - 1))
        rng = np.random.default_rng(seed)
        k_step = jax.random.fold_in(key, 1)
        bs = min(s.batch_size, all_origins[::stride].size)
        best = {"val_mse": np.inf, "variables": {"params": jax.device_get(params), **jax.device_get(rest)},
                "epoch": 0}
        if s.lr_decay not in ("epoch", "plateau"):
            raise ValueError(f"lr_decay must be 'epoch' or 'plateau', got {s.lr_decay!r}")
        history, t0, global_step, bad = [], time.perf_counter(), 0, 0
        masks_dev = jax.device_put(masks)
        lr0 = s.learning_rate if learning_rate is None else learning_rate
        halvings = 0                                   # epochs so far that halve the rate
        for epoch in range(epochs):
            lr = lr0 * (0.5 ** halvings if s.halve_lr else 1.0)
            state = state._replace(opt_state=_set_lr(state.opt_state, lr))
            losses = []
            subset = all_origins[epoch % stride::stride]      # the offset turns, so epochs see other windows
            order = subset[rng.permutation(subset.size)]
            for i in range(order.size // bs):
                batch = self.windows.gather(order[i * bs:(i + 1) * bs])
                state, metrics = self._step(state, masks_dev, batch, jax.random.fold_in(k_step, global_step))
                losses.append(metrics["loss"])
                global_step += 1
            current = {"params": jax.device_get(state.params), **jax.device_get(state.model_state)}
            val = self.evaluate(current, "val", stride=s.val_stride)["mse"]
            train_loss = float(np.mean(jax.device_get(losses)))
            history.append({"epoch": epoch + 1, "train_mse": train_loss, "val_mse": val, "lr": lr})
            if progress is not None:
                progress(f"epoch {epoch + 1}: train {train_loss:.4f} val {val:.4f}")
            if val < best["val_mse"]:
                best = {"val_mse": val, "variables": current, "epoch": epoch + 1}
                bad = 0
            else:
                bad += 1
                if bad >= patience:
                    break
            halvings += 1 if (s.lr_decay == "epoch" or bad > 0) else 0
        info = {"epochs": len(history), "best_epoch": best["epoch"], "history": history,
                "train_s": time.perf_counter() - t0, "steps": global_step, "best_val_mse": best["val_mse"]}
        return best["variables"], info


def _set_lr(opt_state, lr: float):
    """The masked inject_hyperparams state with a new learning rate."""
    inner = opt_state.inner_state
    hp = dict(inner.hyperparams)
    hp["learning_rate"] = jnp.asarray(lr, jnp.asarray(hp["learning_rate"]).dtype)
    return opt_state._replace(inner_state=inner._replace(hyperparams=hp))
