"""Models for AB-training: an MLP whose dense layers multiply by the factors, and VGG16/ResNet from ``jaxlab.nn``.

``ABMLP``'s layers compute ``x @ A @ B`` when their kernel is a :class:`Factors` (``r (in + out)`` multiply-adds
per sample instead of ``in out``, and no ``m n`` product per step). The convolutional nets (``jaxlab.nn.VGG``
with the CIFAR or the timm head, ``jaxlab.nn.ResNet18`` with the CIFAR stem) are used unchanged: their
factorised kernels are composed, ``W = A B``, before every forward pass, as the reference's ``ABConv`` /
``ABLinear`` do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.nn import VGG, ResNet18

from ._factors import Factors, compose
from ._params import FlatParams, Layout, flatten, plan_layout, unflatten


class ABDense(nn.Module):
    """A dense layer whose kernel may be a :class:`Factors` of its 2-D view (see ``_factors``).

    Init creates a plain ``kernel (in, out)``. Applied with a ``Factors`` kernel it computes
    ``x @ a @ b`` (view ``(in, out)``, when ``in > out``) or ``x @ b.T @ a.T`` (view ``(out, in)``).
    """

    features: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.get_variable("params", "kernel") if self.has_variable("params", "kernel") else None
        if isinstance(k, Factors):
            a, b = (jnp.asarray(t, self.dtype or x.dtype) for t in k)
            y = (x @ a) @ b if x.shape[-1] > self.features else (x @ b.T) @ a.T
        else:
            kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features), jnp.float32)
            y = x @ jnp.asarray(kernel, self.dtype or x.dtype)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        return y + jnp.asarray(bias, y.dtype)


class ABMLP(nn.Module):
    """Dense layers with ReLU between them (inputs flattened after the batch axis), built from :class:`ABDense`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> model = ABMLP(features=(32, 10))
      >>> params = model.init(jax.random.key(0), jnp.ones((2, 8, 8, 1)))["params"]
      >>> sorted(params)
      ['dense_0', 'dense_1']
    """

    features: Sequence[int]
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape((x.shape[0], -1))
        for i, width in enumerate(self.features):
            x = ABDense(width, dtype=self.dtype, name=f"dense_{i}")(x)
            if i < len(self.features) - 1:
                x = self.activation(x)
        return x


@dataclasses.dataclass(frozen=True)
class ModelDef:
    """A model as AB-training uses it.

    Attributes:
      name: e.g. ``"mlp"``.
      module: the flax module.
      input_shape: one sample's shape ``(H, W, C)``.
      exclude: regexes of kernels kept full rank (the reference's ``full_rank_sync_names``: first conv, head).
      native_factors: the module takes ``Factors`` kernels itself (no composition before the forward pass).
      takes_train: the module's ``__call__`` has a ``train`` argument (BatchNorm, dropout).
    """

    name: str
    module: nn.Module
    input_shape: tuple[int, ...]
    exclude: tuple[str, ...] = ()
    native_factors: bool = False
    takes_train: bool = True

    def init(self, key: jax.Array) -> tuple[FlatParams, dict]:
        """``(flat float32 params, model_state)`` (model_state: ``batch_stats`` or ``{}``).

        One jitted program (eagerly, every initialiser and layer of the dummy forward pass compiled its own: 25
        programs for the smoke MLP); the values are the eager ``module.init``'s, bit for bit.
        """
        kwargs = {"train": False} if self.takes_train else {}

        def init(key):
            variables = self.module.init(key, jnp.zeros((2, *self.input_shape), jnp.float32), **kwargs)
            params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), flatten(variables["params"]))
            return params, {k: v for k, v in variables.items() if k != "params"}

        return jax.jit(init)(key)

    def layout(self, params: FlatParams) -> Layout:
        return plan_layout(params, exclude=self.exclude)

    def apply(self, params: FlatParams, model_state: dict, x: jax.Array, *, layout: Layout, train: bool,
              key: jax.Array | None = None) -> tuple[jax.Array, dict]:
        """Logits and the new model state; ``params`` in full or AB form."""
        if not self.native_factors:
            params = {k: compose(v, layout.shape(k)) if isinstance(v, Factors) else v for k, v in params.items()}
        variables = {"params": unflatten(params), **model_state}
        kwargs: dict[str, Any] = {"train": train} if self.takes_train else {}
        if train and key is not None:
            kwargs["rngs"] = {"dropout": key}
        if train and model_state:
            logits, updates = self.module.apply(variables, x, mutable=list(model_state), **kwargs)
            return logits, dict(updates)
        return self.module.apply(variables, x, **kwargs), model_state


MODELS = ("mlp", "vgg16_cifar", "vgg16_timm", "resnet18")


def make_model(name: str, *, num_classes: int = 10, hidden: Sequence[int] = (1024, 1024), width: float = 1.0,
               input_shape: tuple[int, ...] | None = None) -> ModelDef:
    """The models of the AB-training experiments.

    Args:
      name: ``"mlp"`` (ABMLP ``784-hidden-classes`` on 28x28 images; the head is kept full rank),
        ``"vgg16_cifar"`` (VGG16 with BatchNorm and a linear classifier on the flattened features),
        ``"vgg16_timm"`` (timm's VGG16: no BatchNorm, fc1/fc2 of 4096 x ``width``, dropout 0.1; 134.3M
        parameters at width 1 and 1000 classes), ``"resnet18"`` (CIFAR stem, ``64 * width`` filters). The conv
        nets keep their first conv and classifier full rank and take 32x32 inputs (Fashion-MNIST padded).
      num_classes: classifier outputs.
      hidden: the MLP's hidden widths.
      width: channel multiplier of the conv nets.
      input_shape: override the sample shape.
    """
    if name == "mlp":
        return ModelDef(name, ABMLP(features=(*hidden, num_classes)), input_shape or (28, 28, 1),
                        exclude=(f"^dense_{len(hidden)}/",), native_factors=True, takes_train=False)
    if name == "vgg16_cifar":
        return ModelDef(name, VGG.vgg16(num_classes, head="cifar", width=width), input_shape or (32, 32, 1),
                        exclude=("^conv_0/", "^classifier/"))
    if name == "vgg16_timm":
        fc = max(1, round(4096 * width))
        return ModelDef(name, VGG.vgg16(num_classes, head="timm", width=width, batch_norm=False, fc_width=fc,
                                        dropout=0.1), input_shape or (32, 32, 1), exclude=("^conv_0/", "^classifier/"))
    if name == "resnet18":
        return ModelDef(name, ResNet18(num_classes=num_classes, num_filters=max(1, round(64 * width)),
                                       small_inputs=True), input_shape or (32, 32, 1),
                        exclude=("^conv_init/", "^Dense_0/"))
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")


def classification_loss(logits: jax.Array, labels: jax.Array, *, label_smoothing: float) -> tuple[jax.Array, dict]:
    """Mean cross-entropy with label smoothing, and the accuracy."""
    n = logits.shape[-1]
    target = optax.smooth_labels(jax.nn.one_hot(labels, n, dtype=jnp.float32), label_smoothing)
    loss = optax.softmax_cross_entropy(logits.astype(jnp.float32), target).mean()
    acc = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
    return loss, {"accuracy": acc}


def pad_images(x: np.ndarray, size: int) -> np.ndarray:
    """Zero-pads ``(N, H, W, C)`` images symmetrically to ``size x size`` (Fashion-MNIST 28 -> 32)."""
    h, w = x.shape[1:3]
    if h > size or w > size:
        raise ValueError(f"images of {h}x{w} do not fit in {size}x{size}")
    top, left = (size - h) // 2, (size - w) // 2
    return np.pad(x, ((0, 0), (top, size - h - top), (left, size - w - left), (0, 0)))
