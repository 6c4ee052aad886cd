"""Experiment 3 (paper section 4.4): MLPs with 2 hidden layers trained by backprop and by forward gradients
(mean vs projection, with weight and with activity perturbation) on MNIST-5k and Fashion-MNIST.

Protocol, per (dataset, method, k):

1. Carve a validation split from the training images (``split_data``; the test set is never looked at
   while tuning).
2. Train on the rest with plain SGD at every learning rate of a log grid (factor ``lr_factor``) with
   the tuning seed(s), score each rate by the final validation accuracy. If the best rate sits at an
   edge of the grid, extend the grid past that edge (at most ``max_extensions`` times).
3. Train ``seeds`` fresh seeds (0, 1, ...) at the chosen rate and report their test accuracy.

Every run is ``jaxlab.train.make_train_step(loss_fn, optax.sgd(lr), grad_fn=...)`` scanned over batches and
epochs. The runs of one call differ only in (seed, learning rate) and are ``jax.vmap``-ed inside one jitted
program (``make_sweep``; compiled once per (method, k, shapes) and reused for tuning, grid extension and
the final seeds, and across datasets of equal size). A seed fixes the initialisation, the batch order and
the tangents, so methods are compared on paired runs (``compare_methods``: paired one-sided t-test).

Methods:

* ``mean``, ``projection``, ``projection_per_leaf``: weight perturbation (``jaxlab.fwdgrad.make_grad_fn``).
  ``projection`` is the orthogonal projection over all n parameters at once; ``projection_per_leaf`` is the
  per-tensor form with the global directional derivatives (``nn_training/fg_models.py`` of the reference).
  For n >> k, ``V^T V ~ n I``, so the global projection is ``k/n`` times the mean up to O(sqrt(k/n))
  fluctuations: with equivalent rates the two are nearly the same optimiser. The per-tensor form scales
  tensor p's step by about ``k/n_p`` (a per-layer rate: the large first kernel barely moves while biases
  take large noisy steps; leaves smaller than k, like the 10 output biases at k = 16, get the heavy-tailed
  inverse of a square Gaussian matrix).
* ``activity_mean``, ``activity_projection``: activity perturbation (``_activity``): tangents on the
  block outputs (n_act = 266 for hidden (128, 128)), one projection over all blocks per sample, then local
  backward passes. This is what the reference code runs for the paper's network experiments (CLI default
  ``--perturbation_mode node``, ``fg_computation_mode = sim``).

Differences from the paper: MNIST-5k (5,000 images) and a Fashion-MNIST subset instead of full MNIST; 10
epochs instead of 200; a log-grid search on a validation split instead of Propulate; forward gradients in
``simulated`` mode (backprop, then ``d = V^T g``: the same estimate as ``jvp`` for the same key, much faster on
CPU; its time says nothing about forward-mode cost).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from pathlib import Path
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab import data as jdata
from jaxlab import fwdgrad
from jaxlab.core import (Constraint, Rule, each, iter_metrics, nonempty, nonnegative, one_of, optional, positive,
                         write_json)
from jaxlab.nn import MLP
from jaxlab.train import TrainState, make_train_step

from ._activity import ACTIVITY_METHODS, make_activity_grad_fn

#: Forward-gradient methods compared with backprop (weight perturbation, then activity perturbation).
FG_METHODS: tuple[str, ...] = ("mean", "projection", "projection_per_leaf", "activity_mean", "activity_projection")


@dataclasses.dataclass(frozen=True)
class MLPConfig:
    """Settings of the MLP comparison.

    Attributes:
      datasets: "mnist5k", "fashion_mnist" (or "digits" for tests).
      hidden: widths of the hidden layers.
      methods: "backprop", aggregations of ``jaxlab.fwdgrad`` for weight perturbation ("mean",
        "projection", "projection_per_leaf", ...) and/or "activity_mean", "activity_projection".
      tangents: the k of the forward-gradient methods.
      epochs: epochs per dataset, aligned with ``datasets``.
      train_size: training images per dataset after the validation split (None: all), aligned with ``datasets``.
      validation: images carved from the training data for tuning, per dataset.
      batch_size: SGD batch size.
      seeds: fresh seeds evaluated on the test set at the chosen rate (also the number of runs
        vmapped per call).
      tune_seeds: seeds of the tuning runs (disjoint from ``range(seeds)``).
      lr_centers: per method ``(method, lr_at_k1, exponent)``: the grid is centred on
        ``lr_at_k1 * k**exponent``.
      lr_grid_size: grid points; the grid is ``centre * lr_factor**(i - lr_grid_size // 2)``.
      lr_factor: ratio of neighbouring rates.
      max_extensions: how often the grid may be extended by ``seeds`` rates past an edge that wins.
      max_backoffs: how often the chosen rate may be lowered by one grid step because a final seed
        diverged (non-finite training loss; no test data is used).
      mode: "simulated" or "jvp" (same estimates for the same key) for weight perturbation; activity
        perturbation is always simulated.
      tune_metric: "val_accuracy" (final validation accuracy, higher is better) or "val_loss" (final
        validation cross-entropy, lower is better) picks the rate.
      rescaled: per method ``(method, base, power)``: no tuning; the rate is the base method's chosen rate
        at the same k times ``k**power`` (the base must come earlier in ``methods``). The orthonormal control
        uses ``("activity_projection_orthonormal", "activity_mean_orthonormal", -1)``.
      noninferiority_margin: the margin of the paired non-inferiority test (accuracy, e.g. 0.005 = 0.5 pp).
    """

    datasets: tuple[str, ...] = ("mnist5k", "fashion_mnist")
    hidden: tuple[int, ...] = (128, 128)
    methods: tuple[str, ...] = ("backprop", *FG_METHODS)
    tangents: tuple[int, ...] = (1, 2, 4, 16)
    epochs: tuple[int, ...] = (10, 10)
    train_size: tuple[int | None, ...] = (3000, 3000)
    validation: tuple[int, ...] = (1000, 1000)
    batch_size: int = 64
    seeds: int = 3
    tune_seeds: tuple[int, ...] = (1000,)
    # A projection's grid is its mean's times n/k (n = 118,282 parameters, or 266 block outputs for activity
    # perturbation, with hidden (128, 128)): for n >> k the two estimates differ by about that factor, so both
    # are tried at equivalent step sizes.
    lr_centers: tuple[tuple[str, float, float], ...] = (
        ("backprop", 0.2, 0.0), ("mean", 0.004, 0.6), ("projection", 0.004 * 118_282, -0.4),
        ("projection_per_leaf", 0.1, 0.0), ("activity_mean", 0.004, 0.75), ("activity_projection", 0.004 * 266, -0.25))
    lr_grid_size: int = 6
    lr_factor: float = 2.0
    max_extensions: int = 2
    max_backoffs: int = 2
    mode: str = "simulated"
    tune_metric: str = "val_accuracy"
    rescaled: tuple[tuple[str, str, float], ...] = ()
    noninferiority_margin: float = 0.005

    CONSTRAINTS: ClassVar[dict] = {
        "datasets": (nonempty, each(one_of("mnist5k", "fashion_mnist", "digits"))), "hidden": each(positive),
        "methods": nonempty, "tangents": (nonempty, each(positive)), "epochs": each(positive),
        "train_size": each(optional(positive)), "validation": each(positive), "batch_size": positive,
        "seeds": positive, "tune_seeds": (nonempty, each(nonnegative)), "lr_grid_size": positive,
        "lr_factor": Constraint(lambda v: v > 1, "> 1"), "max_extensions": nonnegative, "max_backoffs": nonnegative,
        "mode": one_of("simulated", "jvp"), "noninferiority_margin": nonnegative,
        "lr_centers": each(Constraint(lambda r: isinstance(r[0], str) and 0 < r[1] < math.inf and math.isfinite(r[2]),
                                      "(method, rate at k = 1 > 0, finite exponent)")),
        "rescaled": each(Constraint(lambda r: isinstance(r[0], str) and isinstance(r[1], str) and math.isfinite(r[2]),
                                    "(method, base method, finite power)")),
    }
    RULES: ClassVar[tuple] = (
        Rule(("datasets", "epochs", "train_size", "validation"),
             lambda c: len(c.epochs) == len(c.train_size) == len(c.validation) == len(c.datasets),
             "epochs, train_size and validation need one entry per dataset"),
        Rule(("tune_seeds", "seeds"), lambda c: not set(c.tune_seeds) & set(range(c.seeds)),
             "tune_seeds must differ from the evaluation seeds 0 .. seeds - 1"),
    )


class Splits(NamedTuple):
    """Flattened float32 images and int32 labels: train, validation (carved from train) and test."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


def _load(name: str) -> jdata.Dataset:
    loaders = {"mnist5k": jdata.load_mnist5k, "fashion_mnist": jdata.load_fashion_mnist, "digits": jdata.load_digits}
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(loaders)}")
    return loaders[name]()


def split_data(ds: jdata.Dataset, *, validation: int, train_size: int | None = None, seed: int = 0) -> Splits:
    """Carves ``validation`` images from the training data (at random, ``seed``); the test set is kept as is.

    Args:
      ds: a dataset with train and test images.
      validation: number of training images held out for tuning.
      train_size: keep only this many of the remaining training images (None: all).
      seed: seed of the (local NumPy) permutation.
    """
    n = len(ds.x_train)
    if not 0 < validation < n:
        raise ValueError(f"validation must be in (0, {n}) for this dataset, got {validation}")
    perm = np.random.default_rng(seed).permutation(n)
    val, train = perm[:validation], perm[validation:]
    if train_size is not None:
        if train_size > len(train):
            raise ValueError(f"train_size={train_size} exceeds the {len(train)} training images left after the "
                             f"validation split; lower it or pass None")
        train = train[:train_size]

    def flat(x):
        return np.asarray(x, np.float32).reshape(len(x), -1)

    return Splits(flat(ds.x_train[train]), ds.y_train[train], flat(ds.x_train[val]), ds.y_train[val],
                  flat(ds.x_test), ds.y_test, ds.num_classes)


def load_data(config: MLPConfig, dataset: int = 0) -> Splits:
    """The splits ``run_mlp`` trains and evaluates on for ``config.datasets[dataset]`` (its ``validation`` and
    ``train_size`` entries; the split's seed is 0)."""
    return split_data(_load(config.datasets[dataset]), validation=config.validation[dataset],
                      train_size=config.train_size[dataset])


def _accuracy(model, params, x, y):
    return jnp.mean(jnp.argmax(model.apply({"params": params}, x), -1) == y)


def _accuracy_and_loss(model, params, x, y):
    logits = model.apply({"params": params}, x)
    return (jnp.mean(jnp.argmax(logits, -1) == y),
            optax.softmax_cross_entropy_with_integer_labels(logits, y).mean())


def mlp_loss_fn(model: MLP):
    """The training loss of every MLP run: mean softmax cross-entropy of ``batch = (x, y)``.

    In the ``loss_fn(params, model_state, batch, key) -> (loss, (metrics, model_state))`` form of
    ``jaxlab.train.make_train_step`` (the key is unused: the MLP has no dropout).
    """

    def loss_fn(params, model_state, batch, key):
        del key
        x, y = batch
        logits = model.apply({"params": params}, x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, ({}, model_state)

    return loss_fn


def mlp_grad_fn(method: str, k: int, mode: str):
    """The ``grad_fn`` of ``method`` for ``make_train_step``: None (backprop), the activity forward gradient
    (``ACTIVITY_METHODS``) or ``jaxlab.fwdgrad.make_grad_fn`` with ``aggregation=method`` (weight perturbation)."""
    if method == "backprop":
        return None
    if method in ACTIVITY_METHODS:
        aggregation, sampler = ACTIVITY_METHODS[method]
        return make_activity_grad_fn(num_tangents=k, aggregation=aggregation, sampler=sampler)
    return fwdgrad.make_grad_fn(num_tangents=k, aggregation=method, mode=mode)


def _epoch_batches(k_train, epoch, x, y, batch_size: int):
    """The shuffled batches ``(xb, yb)`` of one epoch (the remainder dropped) and the epoch's key ``ek``;
    step i of the epoch gets the key ``fold_in(ek, i + 1)``."""
    num_batches = x.shape[0] // batch_size
    ek = jax.random.fold_in(k_train, epoch)
    perm = jax.random.permutation(jax.random.fold_in(ek, 0), x.shape[0])[: num_batches * batch_size]
    return x[perm].reshape(num_batches, batch_size, -1), y[perm].reshape(num_batches, batch_size), ek


def batches(key, x, y, *, batch_size: int, epoch: int):
    """The batches and step keys of epoch ``epoch`` of the run seeded with ``key`` (``train_mlp``'s
    ``jax.random.key(seed)``, one of ``make_sweep``'s keys), for ``train_step``.

    Args:
      key: the run's key (the same key given to ``init``).
      x, y: training images (N, features) float32 and labels (N,) int32, e.g. ``load_data(config).x_train``.
      batch_size: images per batch (the run uses ``config.batch_size``).
      epoch: the epoch, from 0.

    Returns:
      ``(xb, yb, keys)``: ``xb`` (N // batch_size, batch_size, features), ``yb`` (N // batch_size,
      batch_size) and one step key per batch; ``train_step(state, (xb[i], yb[i]), keys[i])`` for i in order
      is the run's epoch.
    """
    return _batches(key, jnp.asarray(x), jnp.asarray(y), batch_size, epoch)


@functools.partial(jax.jit, static_argnums=(3,))
def _batches(key, x, y, batch_size: int, epoch):
    _, k_train = jax.random.split(key)
    xb, yb, ek = _epoch_batches(k_train, epoch, x, y, batch_size)
    keys = jax.vmap(lambda i: jax.random.fold_in(ek, i + 1))(jnp.arange(xb.shape[0]))
    return xb, yb, keys


def _train_fn(hidden: tuple[int, ...], num_classes: int, method: str, k: int, mode: str, batch_size: int,
              epochs: int):
    """The pure single run ``train(key, lr, x, y, x_val, y_val) -> (params, val_curve, loss_curve, val_loss_curve)``."""
    model = MLP(features=(*hidden, num_classes))
    loss_fn = mlp_loss_fn(model)
    grad_fn = mlp_grad_fn(method, k, mode)

    def train(key, lr, x, y, x_val, y_val):
        num_batches = x.shape[0] // batch_size
        k_init, k_train = jax.random.split(key)
        params = model.init(k_init, x[:1])["params"]
        # The rate is a traced value: the runs of one program differ in it.
        tx = optax.sgd(lr)
        step = make_train_step(loss_fn, tx, grad_fn=grad_fn, jit=False)

        def epoch(state, e):
            xb, yb, ek = _epoch_batches(k_train, e, x, y, batch_size)

            def body(state, inputs):
                xi, yi, i = inputs
                state, metrics = step(state, (xi, yi), jax.random.fold_in(ek, i + 1))
                return state, metrics["loss"]

            state, losses = jax.lax.scan(body, state, (xb, yb, jnp.arange(num_batches)))
            val_acc, val_loss = _accuracy_and_loss(model, state.params, x_val, y_val)
            return state, (val_acc, jnp.mean(losses), val_loss)

        state = TrainState.create(params=params, tx=tx)
        state, (val_curve, loss_curve, val_loss_curve) = jax.lax.scan(epoch, state, jnp.arange(epochs))
        return state.params, val_curve, loss_curve, val_loss_curve

    return model, train


@functools.cache
def make_sweep(hidden: tuple[int, ...], num_classes: int, method: str, k: int, mode: str, batch_size: int,
               epochs: int):
    """Jitted ``sweep(keys, lrs, x, y, x_val, y_val) -> (params, val_curves, loss_curves, val_loss_curves)``.

    Vmapped over runs: ``keys`` (R keys) and ``lrs`` (R,) give each run its seed and learning rate; the
    data are shared. Every output has a leading axis R; the curves hold one value per epoch (validation
    accuracy after the epoch, mean training loss during it, validation loss after it). Run r equals
    ``train_mlp`` with ``keys[r]`` and ``lrs[r]``.
    Cached per static setting, so tuning, grid extension and the final seeds reuse one compiled program.
    """
    _, train = _train_fn(hidden, num_classes, method, k, mode, batch_size, epochs)
    return jax.jit(jax.vmap(train, in_axes=(0, 0, None, None, None, None)))


@functools.cache
def _test_accuracy_fn(hidden: tuple[int, ...], num_classes: int):
    model = MLP(features=(*hidden, num_classes))
    return jax.jit(jax.vmap(functools.partial(_accuracy, model), in_axes=(0, None, None)))


@functools.cache
def _single_run(hidden: tuple[int, ...], num_classes: int, method: str, k: int, mode: str, batch_size: int,
                epochs: int):
    model, train = _train_fn(hidden, num_classes, method, k, mode, batch_size, epochs)
    return model, jax.jit(train)


def train_mlp(splits: Splits, *, hidden, method: str, k: int, lr: float, epochs: int, batch_size: int,
              seed: int, mode: str = "simulated") -> dict:
    """One run without vmap (the reference for ``make_sweep``).

    Returns:
      ``{"params", "val_curve", "loss_curve", "val_loss_curve", "test_accuracy"}``.
    """
    model, train = _single_run(tuple(hidden), splits.num_classes, method, k, mode, batch_size, epochs)
    params, val_curve, loss_curve, val_loss_curve = train(
        jax.random.key(seed), jnp.float32(lr), splits.x_train, splits.y_train, splits.x_val, splits.y_val)
    return {"params": params, "val_curve": np.asarray(val_curve), "loss_curve": np.asarray(loss_curve),
            "val_loss_curve": np.asarray(val_loss_curve),
            "test_accuracy": float(_accuracy(model, params, splits.x_test, splits.y_test))}


def lr_grid(config: MLPConfig, method: str, k: int) -> list[float]:
    """The initial log grid of learning rates for ``method`` at ``k`` (ascending)."""
    centres = {m: (lr1, ex) for m, lr1, ex in config.lr_centers}
    if method not in centres:
        raise ValueError(f"no learning-rate centre for method {method!r}; add ({method!r}, lr_at_k1, exponent) "
                         "to lr_centers")
    lr1, ex = centres[method]
    centre = lr1 * max(k, 1) ** ex
    return [float(centre * config.lr_factor ** (i - config.lr_grid_size // 2)) for i in range(config.lr_grid_size)]


def _run_batched(sweep, splits: Splits, runs: list[tuple[float, int]], width: int):
    """Runs ``(lr, seed)`` pairs ``width`` at a time (the last call padded).

    Returns:
      Per run ``(params, val_accuracy_curve, train_loss_curve, val_loss_curve)``.
    """
    out = []
    for start in range(0, len(runs), width):
        chunk = runs[start:start + width]
        padded = chunk + [chunk[-1]] * (width - len(chunk))
        keys = jnp.stack([jax.random.key(s) for _, s in padded])
        lrs = jnp.asarray([lr for lr, _ in padded], jnp.float32)
        params, *curves = sweep(keys, lrs, splits.x_train, splits.y_train, splits.x_val, splits.y_val)
        val_curves, loss_curves, val_loss_curves = (np.asarray(c) for c in curves)
        for r in range(len(chunk)):
            out.append((jax.tree_util.tree_map(lambda a, r=r: a[r:r + 1], params), val_curves[r], loss_curves[r],
                        val_loss_curves[r]))
    return out


def select_lr(lrs: list[float], val_scores: list[float]) -> tuple[int, str | None]:
    """Index of the best (highest) validation score (ties: the smaller rate; NaN: worst) and its edge, if any."""
    scores = np.nan_to_num(np.asarray(val_scores, np.float64), nan=-np.inf)
    order = np.argsort(lrs)
    best = int(order[int(np.argmax(scores[order]))])
    edge = "low" if best == order[0] else "high" if best == order[-1] else None
    return best, edge


def _score(config: MLPConfig, run) -> float:
    """The tuning score of one run (higher is better): final validation accuracy or minus its loss."""
    _, val_acc, _, val_loss = run
    return float(val_acc[-1]) if config.tune_metric == "val_accuracy" else -float(val_loss[-1])


def tune_and_evaluate(splits: Splits, config: MLPConfig, *, method: str, k: int, epochs: int,
                      fixed_lr: float | None = None) -> dict:
    """Steps 2 and 3 of the protocol for one (method, k); returns the group's record.

    Args:
      fixed_lr: skip tuning and train the final seeds at this rate (a rate rescaled from another method's).
    """
    sweep = make_sweep(tuple(config.hidden), splits.num_classes, method, k, config.mode, config.batch_size, epochs)
    width = config.seeds
    scores: dict[float, float] = {}
    val_acc: dict[float, float] = {}
    val_loss: dict[float, float] = {}
    extensions = 0
    lrs = lr_grid(config, method, k) if fixed_lr is None else []
    while lrs:
        todo = [lr for lr in lrs if lr not in scores]
        results = _run_batched(sweep, splits, [(lr, s) for lr in todo for s in config.tune_seeds], width)
        for i, lr in enumerate(todo):
            per_seed = results[i * len(config.tune_seeds):(i + 1) * len(config.tune_seeds)]
            scores[lr] = float(np.mean([_score(config, r) for r in per_seed]))
            val_acc[lr] = float(np.mean([r[1][-1] for r in per_seed]))
            val_loss[lr] = float(np.mean([r[3][-1] for r in per_seed]))
        grid = sorted(scores)
        best, edge = select_lr(grid, [scores[lr] for lr in grid])
        if edge is None or extensions >= config.max_extensions:
            break
        extensions += 1
        f = config.lr_factor
        lrs = ([grid[0] / f ** (j + 1) for j in range(width)] if edge == "low"
               else [grid[-1] * f ** (j + 1) for j in range(width)])
    if fixed_lr is None:
        lr = grid[best]
    else:
        lr, grid, edge = float(fixed_lr), [], None
    # A rate picked with few tuning seeds can sit at the edge of stability: if a final seed diverges (its
    # training loss is not finite), step down to the next smaller rate and rerun all final seeds.
    backoffs = 0
    while True:
        final = _run_batched(sweep, splits, [(lr, s) for s in range(config.seeds)], width)
        if (all(np.isfinite(r[2][-1]) for r in final) or backoffs >= config.max_backoffs
                or fixed_lr is not None):
            break
        backoffs += 1
        lower = [g for g in grid if g < lr]
        lr = lower[-1] if lower else lr / config.lr_factor
    params = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *[r[0] for r in final])
    test = np.asarray(_test_accuracy_fn(tuple(config.hidden), splits.num_classes)(
        params, splits.x_test, splits.y_test), np.float64)
    losses = np.array([r[2][-1] for r in final])
    row = {
        "method": method, "k": k if method != "backprop" else None, "lr": lr, "epochs": epochs,
        "test_accuracy": float(test.mean()),
        "test_accuracy_std": float(test.std(ddof=1)) if len(test) > 1 else 0.0,
        "seed_accuracies": [round(float(a), 4) for a in test],
        "val_accuracy_tuned": val_acc.get(lr), "lr_at_edge": edge, "divergence_backoffs": backoffs,
        "final_train_loss": float(np.mean(losses)),
        "lr_grid": grid, "val_accuracy_grid": [val_acc[g] for g in grid],
        "final_val_curves": [[round(float(a), 4) for a in r[1]] for r in final],
    }
    if config.tune_metric != "val_accuracy":
        row.update(tune_metric=config.tune_metric, val_loss_tuned=val_loss.get(lr),
                   val_loss_grid=[val_loss[g] for g in grid])
    if fixed_lr is not None:
        row["lr_fixed"] = True
    return row


#: (method, baseline) pairs compared on the same seeds, where both were run.
COMPARISONS: tuple[tuple[str, str], ...] = (("projection", "mean"), ("projection_per_leaf", "mean"),
                                            ("activity_projection", "activity_mean"),
                                            ("activity_projection_orthonormal", "activity_mean_orthonormal"))

#: How the report names a method where its name alone would mislead.
METHOD_LABELS: dict[str, str] = {
    "projection_per_leaf": "per-tensor projection (the reference's forward-mode path, not used for the paper's "
                           "results)",
    "activity_mean_orthonormal": "activity mean, orthonormal tangents (control)",
    "activity_projection_orthonormal": "activity projection, orthonormal tangents, rate = mean's / k (control)",
}


def compare_methods(rows: list[dict], dataset: str, method: str, baseline: str, k: int,
                    margin: float = 0.005) -> dict:
    """Paired comparison (same seeds) of ``method`` with ``baseline`` at ``k``.

    Returns the mean accuracy gain with a one-sided paired t-test of superiority (``p_one_sided``) and one of
    non-inferiority, H0: gain <= -margin (``p_noninferior``); ``noninferior`` is the point criterion
    gain >= -margin, ``max_abs_diff`` the largest per-seed difference (the control's tie).
    """
    from scipy import stats

    def pick(m):
        return next(r for r in rows if r["dataset"] == dataset and r["method"] == m and r["k"] == k)

    a, b = np.asarray(pick(method)["seed_accuracies"]), np.asarray(pick(baseline)["seed_accuracies"])
    diff = a - b
    n = len(diff)
    sd = float(diff.std(ddof=1)) if n > 1 else 0.0

    def p_greater(shift):
        if sd > 0:
            t = float((diff.mean() - shift) / (sd / math.sqrt(n)))
            return t, float(stats.t.sf(t, n - 1))
        d = diff.mean() - shift
        return (math.copysign(math.inf, d) if d else 0.0), (0.0 if d > 0 else 1.0)

    t, p = p_greater(0.0)
    _, p_ni = p_greater(-margin)
    return {"dataset": dataset, "method": method, "baseline": baseline, "k": k, "diff_mean": float(diff.mean()),
            "diff_std": sd, "t": t, "p_one_sided": p, "beats": bool(diff.mean() > 0), "significant": bool(p < 0.05),
            "margin": margin, "noninferior": bool(diff.mean() >= -margin), "p_noninferior": p_ni,
            "noninferior_significant": bool(p_ni < 0.05), "max_abs_diff": float(np.max(np.abs(diff)))}


def plot_mlp(rows: list[dict], path: Path) -> None:
    """Test accuracy against k per dataset (forward-gradient methods with seed std, backprop as a line)
    and the chosen learning rates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    styles = {"mean": "s--", "projection": "o-", "projection_per_leaf": "^-.", "activity_mean": "v--",
              "activity_projection": "D-"}
    fig, axes = plt.subplots(2, len(datasets), figsize=(5 * len(datasets), 7), squeeze=False)
    for col, name in enumerate(datasets):
        ax, ax_lr = axes[0, col], axes[1, col]
        methods = dict.fromkeys(r["method"] for r in rows if r["dataset"] == name and r["method"] != "backprop")
        for method in methods:
            sel = sorted((r for r in rows if r["dataset"] == name and r["method"] == method), key=lambda r: r["k"])
            ks = [r["k"] for r in sel]
            ax.errorbar(ks, [r["test_accuracy"] for r in sel], yerr=[r["test_accuracy_std"] for r in sel],
                        fmt=styles.get(method, "x:"), capsize=3, label=method)
            ax_lr.plot(ks, [r["lr"] for r in sel], styles.get(method, "x:"), label=method)
        bp = [r for r in rows if r["dataset"] == name and r["method"] == "backprop"]
        if bp:
            ax.axhline(bp[0]["test_accuracy"], color="k", lw=1, label="backprop")
            ax_lr.axhline(bp[0]["lr"], color="k", lw=1, label="backprop")
        ax.set(xscale="log", xlabel="tangents k", ylabel="test accuracy (mean ± std, seeds)", title=name)
        ax_lr.set(xscale="log", yscale="log", xlabel="tangents k", ylabel="chosen SGD learning rate")
        ax.legend(fontsize=8)
        ax_lr.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _num_weights(hidden: tuple[int, ...], inputs: int = 784, classes: int = 10) -> int:
    widths = (inputs, *hidden, classes)
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


def _settings(config: MLPConfig, i: int, method: str) -> dict:
    """Everything a (dataset i, method, k) group's result depends on, JSON-normalised."""
    centre = next((list(c[1:]) for c in config.lr_centers if c[0] == method), None)
    s = {"dataset": config.datasets[i], "epochs": config.epochs[i], "train_size": config.train_size[i],
         "validation": config.validation[i], "hidden": config.hidden, "batch_size": config.batch_size,
         "seeds": config.seeds, "tune_seeds": config.tune_seeds, "lr_centre": centre,
         "lr_grid_size": config.lr_grid_size, "lr_factor": config.lr_factor,
         "max_extensions": config.max_extensions, "mode": config.mode}
    # Newer options enter only when they differ from the defaults, so older logs still resume.
    if config.tune_metric != "val_accuracy":
        s["tune_metric"] = config.tune_metric
    rescaled = next((list(r[1:]) for r in config.rescaled if r[0] == method), None)
    if rescaled is not None:
        s["rescaled"] = rescaled
    return json.loads(json.dumps(s))


def _load_done(path: Path) -> list[dict]:
    """Finished groups (one JSON line each) of earlier, possibly interrupted runs.

    A line torn by a kill (the process died while writing it) is skipped: that group runs again.
    """
    if not path.is_file():
        return []
    return [d for d in iter_metrics(path) if isinstance(d.get("settings"), dict) and isinstance(d.get("row"), dict)]


def _check(config: MLPConfig) -> None:
    per_dataset = {"epochs": config.epochs, "train_size": config.train_size, "validation": config.validation}
    for field, value in per_dataset.items():
        if len(value) != len(config.datasets):
            raise ValueError(f"{field} needs one entry per dataset {config.datasets}, got {value}")
    if set(config.tune_seeds) & set(range(config.seeds)):
        raise ValueError(f"tune_seeds {config.tune_seeds} must differ from the evaluation seeds 0..{config.seeds - 1}")
    for m in config.methods:
        if m != "backprop" and m not in fwdgrad.AGGREGATIONS and m not in ACTIVITY_METHODS:
            raise ValueError(f"unknown method {m!r}; use 'backprop', one of {fwdgrad.AGGREGATIONS} (weight "
                             f"perturbation) or one of {tuple(ACTIVITY_METHODS)} (activity perturbation)")
    if config.tune_metric not in ("val_accuracy", "val_loss"):
        raise ValueError(f"unknown tune_metric {config.tune_metric!r}; use 'val_accuracy' or 'val_loss'")
    for method, base, _ in config.rescaled:
        if method not in config.methods or base not in config.methods[:config.methods.index(method)]:
            raise ValueError(f"rescaled method {method!r} needs its base {base!r} earlier in methods {config.methods}")


def run_mlp(config: MLPConfig, workdir: str | Path) -> dict:
    """Tunes and evaluates every (dataset, method, k); writes summary.json, mlp_accuracy.png, metrics.jsonl.

    ``metrics.jsonl`` gets one line per finished (dataset, method, k) with its tuning grid, so a rerun in
    the same workdir resumes after the last finished group.
    """
    _check(config)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "metrics.jsonl"
    done = _load_done(log)
    t0 = time.perf_counter()
    rows = []
    for i, (name, epochs) in enumerate(zip(config.datasets, config.epochs)):
        splits = load_data(config, i)
        groups = [(m, None) if m == "backprop" else (m, k) for m in config.methods
                  for k in ((None,) if m == "backprop" else config.tangents)]
        for method, k in groups:
            settings = _settings(config, i, method)
            fixed_lr = None
            rescale = next((r for r in config.rescaled if r[0] == method), None)
            if rescale is not None:
                base = next((r for r in rows if r["dataset"] == name and r["method"] == rescale[1] and r["k"] == k),
                            None)
                if base is None:
                    raise ValueError(f"method {method!r} is rescaled from {rescale[1]!r}, which must come earlier in "
                                     f"methods {config.methods}")
                fixed_lr = base["lr"] * max(k, 1) ** rescale[2]
                settings["rescaled_from_lr"] = base["lr"]
            # ``max_backoffs`` is not part of the settings: it changes only groups whose final seeds diverged,
            # and those are recomputed unless they were run with the backoff rule.
            old = next((d["row"] for d in done if d["settings"] == settings and d["row"]["method"] == method
                        and d["row"]["k"] == k and (math.isfinite(d["row"]["final_train_loss"])
                                                    or "divergence_backoffs" in d["row"])), None)
            if old is not None:
                rows.append(old)
                continue
            t1 = time.perf_counter()
            row = {"dataset": name, **tune_and_evaluate(splits, config, method=method, k=k or 0, epochs=epochs,
                                                         fixed_lr=fixed_lr)}
            row["wall_s"] = round(time.perf_counter() - t1, 2)
            rows.append(row)
            torn = log.is_file() and log.stat().st_size > 0 and not log.read_bytes().endswith(b"\n")
            with log.open("a", encoding="utf-8") as f:
                # After a line torn by a kill, start a new line, so that this one is read back whole.
                f.write(("\n" if torn else "") + json.dumps({"settings": settings, "row": row}) + "\n")
                f.flush()
            shown = row.get("val_loss_grid", row["val_accuracy_grid"])  # the tuning metric
            grid = ", ".join(f"{lr:.3g}:{a:.3f}" for lr, a in zip(row["lr_grid"], shown))
            print(f"{name} {method} k={k}: lr {row['lr']:.3g}{' (grid edge)' if row['lr_at_edge'] else ''} -> "
                  f"test {row['test_accuracy']:.4f} +- {row['test_accuracy_std']:.4f}  "
                  f"[val {config.tune_metric.split('_')[1]} {grid}] {row['wall_s']:.0f}s", flush=True)
    wall = time.perf_counter() - t0
    plot_mlp(rows, workdir / "mlp_accuracy.png")

    def acc_of(name, method, k):
        return next((r["test_accuracy"] for r in rows if r["dataset"] == name and r["method"] == method
                     and r["k"] == k), None)

    fg = [m for m in config.methods if m != "backprop"]
    pairs = [(m, b) for m, b in COMPARISONS if m in fg and b in fg]
    widths = (*config.hidden, 10)
    n_act = sum(widths)  # block outputs per sample (activity perturbation), 10 classes
    comparisons = []
    for n in config.datasets:
        for m, b in pairs:
            for k in config.tangents:
                c = compare_methods(rows, n, m, b, k, margin=config.noninferiority_margin)
                c["k_over_n"] = k / (n_act if m in ACTIVITY_METHODS else _num_weights(config.hidden))
                comparisons.append(c)

    def every(method, baseline, key, where=lambda c: True):
        sel = [c[key] for c in comparisons if c["method"] == method and c["baseline"] == baseline and where(c)]
        return all(sel) if sel else None

    table = [{"dataset": r["dataset"], "method": r["method"], "k": r["k"], "lr": r["lr"],
              **({"label": METHOD_LABELS[r["method"]]} if r["method"] in METHOD_LABELS else {}),
              "test_accuracy": round(r["test_accuracy"], 4), "test_accuracy_std": round(r["test_accuracy_std"], 4),
              "seed_accuracies": r["seed_accuracies"], "val_accuracy_tuned": r["val_accuracy_tuned"],
              "lr_at_edge": r["lr_at_edge"], "backoffs": r.get("divergence_backoffs", 0), "epochs": r["epochs"]}
             for r in rows]
    kmax = max(config.tangents)
    summary = {
        "status": "completed",
        "config": json.loads(json.dumps(dataclasses.asdict(config))),
        "wall_s": wall,
        # Time of all groups, including those finished by earlier (interrupted) runs in this workdir.
        "groups_wall_s": float(sum(r.get("wall_s", 0.0) for r in rows)),
        "table": table,
        "plots": ["mlp_accuracy.png"],
        **{f"{m}_beats_{b}_every_k": every(m, b, "beats") for m, b in COMPARISONS},
        **{f"{m}_significantly_beats_{b}_every_k": every(m, b, "significant") for m, b in COMPARISONS},
        **{f"{m}_noninferior_to_{b}_every_k": every(m, b, "noninferior") for m, b in COMPARISONS},
        **{f"{m}_significantly_beats_{b}_where_k_over_n_ge_0.1": every(m, b, "significant",
                                                                       lambda c: c["k_over_n"] >= 0.1)
           for m, b in COMPARISONS},
        "n_act": n_act,
        "orthonormal_control_max_abs_diff": max(
            (c["max_abs_diff"] for c in comparisons if c["method"] == "activity_projection_orthonormal"),
            default=None),
        "labels": {m: METHOD_LABELS[m] for m in fg if m in METHOD_LABELS},
        "comparisons": [{**c, **{x: round(c[x], 4) for x in ("diff_mean", "diff_std", "t", "p_one_sided",
                                                             "p_noninferior", "k_over_n", "max_abs_diff")
                                 if math.isfinite(c[x])}} for c in comparisons],
        "groups": rows,
        **{f"acc_{m}_kmax_{n}": acc_of(n, m, kmax) for n in config.datasets for m in fg},
        **{f"acc_backprop_{n}": acc_of(n, "backprop", None) for n in config.datasets},
    }
    write_json(workdir / "summary.json", summary)
    return summary
