"""The two workloads of the study: ResNet image classification and AFNO field forecasting, on
generated data (ImageNet and ERA5 are not shipped, and nothing is downloaded at run time)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab import nn as jnn
from jaxlab.core import PRNGKey
from jaxlab.data import make_classification


@dataclasses.dataclass(frozen=True)
class Task:
    """A model, its data and its loss, ready for the data-parallel step.

    Attributes:
      name: ``"resnet"`` or ``"afno"``.
      model: the flax module (``apply(variables, x, train=...)``).
      train: ``{"x": inputs, "y": targets}`` numpy arrays, samples first.
      test: held-out arrays of the same form.
      loss_fn: ``loss_fn(params, model_state, batch, key) -> (loss, (metrics, model_state))``.
      eval_fn: ``eval_fn(params, model_state, x, y) -> dict`` of summed metrics and ``count``.
    """

    name: str
    model: nn.Module
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    loss_fn: Callable
    eval_fn: Callable

    def init(self, key: PRNGKey) -> tuple[Any, Any]:
        """``(params, model_state)`` from one sample's shape."""
        return jax.jit(functools.partial(_init_variables, self.model, self.train["x"][:1]))(key)

    @functools.cached_property
    def jit_eval(self) -> Callable:
        """``eval_fn`` jitted once per task (every grid point evaluates the same shapes)."""
        return jax.jit(self.eval_fn)


def _init_variables(model: nn.Module, x: Any, key: PRNGKey) -> tuple[Any, Any]:
    """``(params, model_state)`` of ``model`` for inputs shaped like ``x`` (its values are not read: no layer
    of these models initialises from data)."""
    variables = model.init(key, x, train=False)
    params = variables["params"]
    model_state = {k: v for k, v in dict(variables).items() if k != "params"}
    return params, model_state


def _resnet_parts(*, resnet: str, width: int, image_size: int, num_classes: int,
                  dtype: Any) -> tuple[nn.Module, Callable, Callable]:
    """``(model, loss_fn, eval_fn)`` of :func:`classification_task` (no data)."""
    archs = {
        "resnet50": dict(stage_sizes=(3, 4, 6, 3), block_cls=jnn.BottleneckBlock),
        "resnet18": dict(stage_sizes=(2, 2, 2, 2), block_cls=jnn.BasicBlock),
        "tiny": dict(stage_sizes=(1, 1), block_cls=jnn.BasicBlock),
    }
    if resnet not in archs:
        raise ValueError(f"unknown resnet {resnet!r}; choose one of {sorted(archs)}")
    model = jnn.ResNet(**archs[resnet], num_classes=num_classes, num_filters=width, dtype=dtype,
                       small_inputs=image_size <= 64)

    def loss_fn(params, model_state, batch, key):
        del key
        logits, updates = model.apply({"params": params, **model_state}, batch["x"], train=True,
                                      mutable=["batch_stats"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
        acc = jnp.mean(jnp.argmax(logits, -1) == batch["y"])
        return loss, ({"accuracy": acc}, dict(updates))

    def eval_fn(params, model_state, x, y):
        logits = model.apply({"params": params, **model_state}, x, train=False)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()
        return {"loss": loss, "accuracy": jnp.sum(jnp.argmax(logits, -1) == y)}

    return model, loss_fn, eval_fn


def _afno_parts(*, embed_dim: int, depth: int, num_blocks: int, patch_size: int, channels: int,
                dtype: Any) -> tuple[nn.Module, Callable, Callable]:
    """``(model, loss_fn, eval_fn)`` of :func:`forecast_task` (no data)."""
    model = jnn.AFNONet(out_channels=channels, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
                        num_blocks=num_blocks, dtype=dtype)

    def loss_fn(params, model_state, batch, key):
        del key
        pred = model.apply({"params": params}, batch["x"])
        return jnp.mean((pred - batch["y"]) ** 2), ({}, model_state)

    def eval_fn(params, model_state, xb, yb):
        pred = model.apply({"params": params}, xb)
        return {"loss": jnp.sum(jnp.mean((pred - yb) ** 2, axis=(1, 2, 3)))}

    return model, loss_fn, eval_fn


def classification_task(*, resnet: str, width: int, image_size: int, num_classes: int, num_train: int,
                        num_test: int, key: PRNGKey, dtype: Any = jnp.float32) -> Task:
    """ResNet on Gaussian class templates shaped like ``image_size x image_size x 3`` images."""
    model, loss_fn, eval_fn = _resnet_parts(resnet=resnet, width=width, image_size=image_size,
                                            num_classes=num_classes, dtype=dtype)
    ds = make_classification(key, num_train=num_train, num_test=num_test, shape=(image_size, image_size, 3),
                             num_classes=num_classes, noise=2.0)
    # A colour per class as well: the global average pool of a ResNet sees it (a pixel template alone
    # averages out), so small networks learn within a few steps.
    colors = np.asarray(jax.random.normal(jax.random.fold_in(key, 1), (num_classes, 3)), np.float32)
    ds = ds._replace(x_train=ds.x_train + colors[ds.y_train][:, None, None, :],
                     x_test=ds.x_test + colors[ds.y_test][:, None, None, :])
    return Task("resnet", model, {"x": ds.x_train, "y": ds.y_train}, {"x": ds.x_test, "y": ds.y_test},
                loss_fn, eval_fn)


def make_fields(seed: int, num: int, shape: tuple[int, int], channels: int, modes: int = 4) -> np.ndarray:
    """Smooth periodic random fields ``(num, H, W, channels)``: a few low Fourier modes each."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.meshgrid(np.arange(h) / h, np.arange(w) / w, indexing="ij")
    out = np.zeros((num, h, w, channels), np.float32)
    for _ in range(modes):
        ky, kx = rng.integers(0, 3, size=(2, num, 1, 1, channels))
        amp = rng.normal(size=(num, 1, 1, channels)) / modes**0.5
        phase = rng.uniform(0, 2 * np.pi, size=(num, 1, 1, channels))
        out += (amp * np.cos(2 * np.pi * (ky * yy[None, :, :, None] + kx * xx[None, :, :, None]) + phase)).astype(
            np.float32)
    return out


def forecast_task(*, embed_dim: int, depth: int, num_blocks: int, patch_size: int, field_shape: tuple[int, int],
                  channels: int, num_train: int, num_test: int, seed: int, dtype: Any = jnp.float32) -> Task:
    """AFNONet forecasting one step of a periodic advection: the target is the field shifted by (1, 2)
    grid points (a stand-in for ERA5's 6-hour step). Loss: mean squared error."""
    model, loss_fn, eval_fn = _afno_parts(embed_dim=embed_dim, depth=depth, num_blocks=num_blocks,
                                          patch_size=patch_size, channels=channels, dtype=dtype)
    x = make_fields(seed, num_train + num_test, field_shape, channels)
    y = np.roll(x, shift=(1, 2), axis=(1, 2))
    return Task("afno", model, {"x": x[:num_train], "y": y[:num_train]}, {"x": x[num_train:], "y": y[num_train:]},
                loss_fn, eval_fn)
