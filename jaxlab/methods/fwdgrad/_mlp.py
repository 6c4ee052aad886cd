"""Experiment 3 (paper section 4.4): MLPs with 2 hidden layers trained by backprop, the forward-gradient
mean and the projection, on MNIST-5k and Fashion-MNIST.

Every run is ``jaxlab.train.make_train_step(loss_fn, optax.sgd(lr), grad_fn=...)`` with
``grad_fn = fwdgrad.make_grad_fn(...)`` (or backprop), scanned over the batches of an epoch.
Plain SGD with a constant learning rate per method and k, as the paper's tuned PLAIN_SGD runs;
the rates follow the paper's table (lrs/fc_nns.csv, FC-256 / MNIST), see ``MLPConfig``.
Differences from the paper: MNIST-5k (4,000 train / 1,000 test images) instead of full MNIST, and a few
epochs instead of 200 (CPU budget); forward gradients in ``simulated`` mode by default (same estimates
as ``jvp``, cheaper on CPU).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab import data as jdata
from jaxlab import fwdgrad
from jaxlab.core import write_json
from jaxlab.nn import MLP
from jaxlab.train import TrainState, make_train_step


@dataclasses.dataclass(frozen=True)
class MLPConfig:
    """Settings of the MLP comparison.

    Attributes:
      datasets: "mnist5k", "fashion_mnist" (or "digits" for tests).
      hidden: widths of the hidden layers.
      tangents: the k of the forward-gradient methods.
      epochs: epochs per dataset, aligned with ``datasets``.
      lr_backprop: SGD learning rate of backprop.
      lr_mean, lr_projection: SGD learning rates per k (aligned with ``tangents``).
      train_subset: use only the first N training images (quick runs).
    """

    datasets: tuple[str, ...] = ("mnist5k", "fashion_mnist")
    hidden: tuple[int, ...] = (256, 256)
    tangents: tuple[int, ...] = (1, 2, 4, 16)
    epochs: tuple[int, ...] = (40, 3)
    batch_size: int = 64
    seeds: int = 3
    lr_backprop: float = 0.05
    lr_mean: tuple[float, ...] = (5.6e-4, 7.0e-4, 8.9e-4, 1.4e-3)
    lr_projection: tuple[float, ...] = (0.36, 0.21, 0.12, 0.042)
    mode: str = "simulated"
    train_subset: int | None = None


def _load(name: str) -> jdata.Dataset:
    loaders = {"mnist5k": jdata.load_mnist5k, "fashion_mnist": jdata.load_fashion_mnist, "digits": jdata.load_digits}
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(loaders)}")
    return loaders[name]()


def _loss_fn(model):
    def loss_fn(params, model_state, batch, key):
        del key
        x, y = batch
        logits = model.apply({"params": params}, x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, ({"accuracy": jnp.mean(jnp.argmax(logits, -1) == y)}, model_state)

    return loss_fn


def train_mlp(ds: jdata.Dataset, *, hidden, method: str, k: int, lr: float, epochs: int, batch_size: int,
              seed: int, mode: str = "simulated", train_subset: int | None = None) -> dict:
    """Trains one MLP; returns test accuracy, final train loss, and the per-epoch test accuracy."""
    x = jnp.asarray(ds.x_train.reshape(len(ds.x_train), -1))
    y = jnp.asarray(ds.y_train)
    if train_subset:
        x, y = x[:train_subset], y[:train_subset]
    xt = jnp.asarray(ds.x_test.reshape(len(ds.x_test), -1))
    yt = jnp.asarray(ds.y_test)
    model = MLP(features=(*hidden, ds.num_classes))
    key = jax.random.key(seed)
    k_init, k_train = jax.random.split(key)
    params = model.init(k_init, x[:1])["params"]
    tx = optax.sgd(lr)
    grad_fn = None if method == "backprop" else fwdgrad.make_grad_fn(num_tangents=k, aggregation=method, mode=mode)
    step = make_train_step(_loss_fn(model), tx, grad_fn=grad_fn, jit=False)
    num_batches = x.shape[0] // batch_size

    @jax.jit
    def epoch(state, key):
        perm = jax.random.permutation(jax.random.fold_in(key, 0), x.shape[0])[: num_batches * batch_size]
        xb = x[perm].reshape(num_batches, batch_size, -1)
        yb = y[perm].reshape(num_batches, batch_size)

        def body(state, inputs):
            xi, yi, i = inputs
            state, metrics = step(state, (xi, yi), jax.random.fold_in(key, i + 1))
            return state, metrics["loss"]

        state, losses = jax.lax.scan(body, state, (xb, yb, jnp.arange(num_batches)))
        return state, jnp.mean(losses)

    @jax.jit
    def accuracy(params):
        return jnp.mean(jnp.argmax(model.apply({"params": params}, xt), -1) == yt)

    state = TrainState.create(params=params, tx=tx)
    curve, train_loss = [], float("nan")
    for e in range(epochs):
        state, loss = epoch(state, jax.random.fold_in(k_train, e))
        train_loss = float(loss)
        curve.append(float(accuracy(state.params)))
    return {"test_accuracy": curve[-1], "train_loss": train_loss, "curve": curve}


def _methods(config: MLPConfig):
    if len(config.lr_mean) != len(config.tangents) or len(config.lr_projection) != len(config.tangents):
        raise ValueError("lr_mean and lr_projection need one learning rate per entry of tangents "
                         f"({len(config.tangents)}), got {len(config.lr_mean)} and {len(config.lr_projection)}")
    out = [("backprop", 0, config.lr_backprop)]
    out += [("mean", k, lr) for k, lr in zip(config.tangents, config.lr_mean)]
    out += [("projection", k, lr) for k, lr in zip(config.tangents, config.lr_projection)]
    return out


def plot_mlp(rows: list[dict], path: Path) -> None:
    """Test accuracy against k per dataset: mean and projection with seed spread, backprop as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, name in zip(axes[0], datasets):
        for method, style in (("mean", "s--"), ("projection", "o-")):
            sel = sorted((r for r in rows if r["dataset"] == name and r["method"] == method), key=lambda r: r["k"])
            ax.errorbar([r["k"] for r in sel], [r["test_accuracy"] for r in sel],
                        yerr=[r["test_accuracy_std"] for r in sel], fmt=style, capsize=3, label=method)
        bp = [r for r in rows if r["dataset"] == name and r["method"] == "backprop"]
        if bp:
            ax.axhline(bp[0]["test_accuracy"], color="k", lw=1, label="backprop")
        ax.set(xscale="log", xlabel="tangents k", ylabel="test accuracy", title=name)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_mlp(config: MLPConfig, workdir: str | Path) -> dict:
    """Trains every (dataset, method, k, seed); writes mlp_accuracy.png and summary.json (with the table)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if len(config.epochs) != len(config.datasets):
        raise ValueError(f"epochs needs one entry per dataset {config.datasets}, got {config.epochs}")
    methods = _methods(config)
    t0 = time.perf_counter()
    rows = []
    for name, epochs in zip(config.datasets, config.epochs):
        ds = _load(name)
        for method, k, lr in methods:
            runs = [train_mlp(ds, hidden=config.hidden, method=method, k=k, lr=lr, epochs=epochs,
                              batch_size=config.batch_size, seed=s, mode=config.mode,
                              train_subset=config.train_subset) for s in range(config.seeds)]
            acc = np.array([r["test_accuracy"] for r in runs])
            rows.append({"dataset": name, "method": method, "k": k or None, "lr": lr, "epochs": epochs,
                         "test_accuracy": float(acc.mean()), "test_accuracy_std": float(acc.std()),
                         "seed_accuracies": [round(float(a), 4) for a in acc],
                         "train_loss": float(np.mean([r["train_loss"] for r in runs]))})
            print(f"{name} {method} k={k} lr={lr}: acc {acc.mean():.4f} +- {acc.std():.4f}", flush=True)
    wall = time.perf_counter() - t0
    plot_mlp(rows, workdir / "mlp_accuracy.png")

    def acc_of(name, method, k):
        return next(r["test_accuracy"] for r in rows if r["dataset"] == name and r["method"] == method
                    and r["k"] == (k or None))

    beats = {name: [acc_of(name, "projection", k) > acc_of(name, "mean", k) for k in config.tangents]
             for name in config.datasets}
    table = [{**r, "test_accuracy": round(r["test_accuracy"], 4), "test_accuracy_std": round(r["test_accuracy_std"], 4),
              "train_loss": round(r["train_loss"], 4)} for r in rows]
    summary = {
        "config": dataclasses.asdict(config),
        "wall_s": wall,
        "table": table,
        "plots": ["mlp_accuracy.png"],
        "projection_beats_mean_every_k": all(all(v) for v in beats.values()),
        "projection_beats_mean": beats,
        **{f"acc_backprop_{n}": acc_of(n, "backprop", 0) for n in config.datasets},
        **{f"acc_projection_kmax_{n}": acc_of(n, "projection", max(config.tangents))
           for n in config.datasets},
        **{f"acc_mean_kmax_{n}": acc_of(n, "mean", max(config.tangents)) for n in config.datasets},
    }
    write_json(workdir / "summary.json", summary)
    return summary
