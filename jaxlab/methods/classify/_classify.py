"""Supervised image classification with the shared training loop: the foundation's example method.

It shows the pattern every method follows: a frozen config, ``init``, a pure ``loss_fn`` for
``jaxlab.train.make_train_step``, ``evaluate``, and ``run(config, workdir)`` for the command line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab import data as jdata
from jaxlab.core import PRNGKey, each, in_range, nonnegative, positive, write_json
from jaxlab.nn import MLP, SmallCNN
from jaxlab.train import TrainState, make_train_step, plot_metrics, train_loop


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """Settings of a classification run (see configs/examples/ for documented instances)."""

    dataset: Literal["digits", "mnist5k", "fashion_mnist", "synthetic"] = "digits"
    model: Literal["mlp", "cnn"] = "mlp"
    hidden: tuple[int, ...] = (128, 128)
    optimizer: Literal["adam", "sgd"] = "adam"
    learning_rate: float = 1e-3
    batch_size: int = 64
    num_steps: int = 1000
    eval_every: int = 250
    log_every: int = 50
    checkpoint_every: int = 250
    keep_checkpoints: int = 3
    seed: int = 0

    CONSTRAINTS: ClassVar[dict] = {
        "hidden": each(positive), "learning_rate": positive, "batch_size": positive, "num_steps": positive,
        "eval_every": nonnegative, "log_every": positive, "checkpoint_every": nonnegative,
        "keep_checkpoints": positive, "seed": in_range(0, 2**32 - 1),
    }


def load_dataset(name: str) -> jdata.Dataset:
    if name == "digits":
        return jdata.load_digits()
    if name == "mnist5k":
        return jdata.load_mnist5k()
    if name == "fashion_mnist":
        return jdata.load_fashion_mnist()
    if name == "synthetic":
        return jdata.make_classification(jax.random.key(1234))
    raise ValueError(f"unknown dataset {name!r}; choose digits, mnist5k, fashion_mnist or synthetic")


def make_model(config: ClassifierConfig, num_classes: int) -> nn.Module:
    if config.model == "mlp":
        return MLP(features=(*config.hidden, num_classes))
    if config.model == "cnn":
        return SmallCNN(num_classes=num_classes)
    raise ValueError(f"unknown model {config.model!r}; choose mlp or cnn")


def make_optimizer(config: ClassifierConfig) -> optax.GradientTransformation:
    if config.optimizer == "adam":
        return optax.adam(config.learning_rate)
    if config.optimizer == "sgd":
        return optax.sgd(config.learning_rate, momentum=0.9)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; choose adam or sgd")


def cross_entropy_loss_fn(model: nn.Module):
    """``loss_fn(params, model_state, batch, key)`` for ``make_train_step``: mean cross entropy and accuracy."""

    def loss_fn(params, model_state, batch, key):
        del key
        x, y = batch
        logits = model.apply({"params": params}, x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        accuracy = jnp.mean(jnp.argmax(logits, -1) == y)
        return loss, ({"accuracy": accuracy}, model_state)

    return loss_fn


def evaluate(model: nn.Module, params, x: np.ndarray, y: np.ndarray, *, batch_size: int = 1024) -> dict[str, float]:
    """Mean cross entropy and accuracy over ``(x, y)``."""

    @jax.jit
    def sums(params, xb, yb):
        logits = model.apply({"params": params}, xb)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb).sum()
        return loss, jnp.sum(jnp.argmax(logits, -1) == yb)

    total_loss, correct = 0.0, 0
    for xb, yb in jdata.iterate_batches((x, y), batch_size):
        l, c = sums(params, xb, yb)
        total_loss += float(l)
        correct += int(c)
    return {"loss": total_loss / len(x), "accuracy": correct / len(x)}


def init(key: PRNGKey, config: ClassifierConfig, dataset: jdata.Dataset) -> tuple[nn.Module, TrainState, optax.GradientTransformation]:
    """Builds the model, its optimiser and the initial train state."""
    model = make_model(config, dataset.num_classes)
    tx = make_optimizer(config)
    params = model.init(key, dataset.x_train[:1])["params"]
    return model, TrainState.create(params=params, tx=tx), tx


def run(config: ClassifierConfig, workdir: str | Path, *, progress: bool = True, meter="auto") -> dict:
    """Trains and evaluates; writes metrics.jsonl, checkpoints, summary.json and curves.png into ``workdir``."""
    workdir = Path(workdir)
    ds = load_dataset(config.dataset)
    key = jax.random.key(config.seed)
    k_init, k_data, k_train = jax.random.split(key, 3)
    model, state, tx = init(k_init, config, ds)
    step = make_train_step(cross_entropy_loss_fn(model), tx)
    batcher = jdata.Batcher((ds.x_train, ds.y_train), config.batch_size, key=k_data)

    def eval_fn(state):
        return {f"test_{k}": v for k, v in evaluate(model, state.params, ds.x_test, ds.y_test).items()}

    state, loop_summary = train_loop(
        state, step, batcher, num_steps=config.num_steps, key=k_train, workdir=workdir,
        eval_fn=eval_fn, eval_every=config.eval_every, checkpoint_every=config.checkpoint_every,
        keep_checkpoints=config.keep_checkpoints, log_every=config.log_every, meter=meter,
        progress=progress, description=f"{config.model}/{config.dataset}",
    )
    summary = {
        **loop_summary,
        "test_accuracy": loop_summary["eval"].get("test_accuracy"),
        "test_loss": loop_summary["eval"].get("test_loss"),
        "train_loss": loop_summary["train"].get("loss"),
        "num_params": int(sum(np.size(p) for p in jax.tree.leaves(state.params))),
    }
    plot = plot_metrics(workdir)
    if plot is not None:
        summary["plots"] = [plot.name]
    write_json(workdir / "summary.json", summary)
    return summary
