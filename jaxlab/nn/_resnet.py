"""ResNet (He et al., "Deep Residual Learning for Image Recognition", arXiv 1512.03385) in flax.linen.

ResNet18/34 use basic blocks, ResNet50/101/152 bottleneck blocks (the "v1.5" variant: stride on the
3x3 convolution, as torchvision and google/flax:examples/imagenet). Inputs are NHWC. BatchNorm
statistics live in the ``batch_stats`` collection (the ``model_state`` of ``jaxlab.train``):

>>> import jax, jax.numpy as jnp
>>> model = ResNet18(num_classes=10, num_filters=8)
>>> x = jnp.zeros((2, 32, 32, 3))
>>> def init_and_apply(key):  # in a training script: jax.jit(init_and_apply)(key)
...     variables = model.init(key, x, train=False)
...     return model.apply(variables, x, train=True, mutable=["batch_stats"])
>>> logits, updates = jax.eval_shape(init_and_apply, jax.random.key(0))  # shapes only, no compile
>>> logits.shape, sorted(updates)
((2, 10), ['batch_stats'])

Differences from torchvision: the last BatchNorm of each residual branch starts with scale 0
(Goyal et al., arXiv 1706.02677), which the paper's ResNet50 recipe also uses; ``small_inputs=True``
replaces the 7x7/2 stem and max-pool by a 3x3/1 stem for 32x32 images (CIFAR style).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxlab.core._groups import Axis, Group, replace_fields

ModuleDef = Any


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection."""

    filters: int
    conv: ModuleDef
    norm: ModuleDef
    act: Callable = nn.relu
    strides: tuple[int, int] = (1, 1)
    zero_init_residual: bool = True

    @nn.compact
    def __call__(self, x):
        residual = x
        y = self.conv(self.filters, (3, 3), self.strides)(x)
        y = self.act(self.norm()(y))
        y = self.conv(self.filters, (3, 3))(y)
        y = self.norm(scale_init=nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones)(y)
        if residual.shape != y.shape:
            residual = self.conv(self.filters, (1, 1), self.strides, name="conv_proj")(residual)
            residual = self.norm(name="norm_proj")(residual)
        return self.act(residual + y)


class BottleneckBlock(nn.Module):
    """1x1 (reduce) -> 3x3 (stride) -> 1x1 (expand x4) with a residual connection."""

    filters: int
    conv: ModuleDef
    norm: ModuleDef
    act: Callable = nn.relu
    strides: tuple[int, int] = (1, 1)
    zero_init_residual: bool = True

    @nn.compact
    def __call__(self, x):
        residual = x
        y = self.act(self.norm()(self.conv(self.filters, (1, 1))(x)))
        y = self.act(self.norm()(self.conv(self.filters, (3, 3), self.strides)(y)))
        y = self.conv(self.filters * 4, (1, 1))(y)
        y = self.norm(scale_init=nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones)(y)
        if residual.shape != y.shape:
            residual = self.conv(self.filters * 4, (1, 1), self.strides, name="conv_proj")(residual)
            residual = self.norm(name="norm_proj")(residual)
        return self.act(residual + y)


class ResNet(nn.Module):
    """A ResNet classifier.

    Attributes:
      stage_sizes: blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet50.
      block_cls: :class:`BasicBlock` or :class:`BottleneckBlock`.
      num_classes: outputs of the final dense layer.
      num_filters: filters of the first stage (doubled per stage); 64 in the paper.
      dtype: computation dtype (parameters stay float32), e.g. ``jnp.bfloat16`` on GPUs.
      small_inputs: 3x3/1 stem without max-pool, for images of about 32x32.
      bn_momentum: running-average momentum of BatchNorm (0.9 as in flax's ImageNet example).
      zero_init_residual: the last BatchNorm of every block starts with scale 0, so every residual branch
        starts at zero (flax's ImageNet example, Goyal et al. arXiv 1706.02677); False starts it at 1 like the
        others (torchvision's default, ``zero_init_residual=False``).
    """

    stage_sizes: Sequence[int]
    block_cls: ModuleDef
    num_classes: int = 1000
    num_filters: int = 64
    dtype: Any = jnp.float32
    small_inputs: bool = False
    bn_momentum: float = 0.9
    zero_init_residual: bool = True

    @nn.compact
    def __call__(self, x, train: bool = True):
        """Logits of shape ``(batch, num_classes)`` for NHWC images ``x``; ``train`` uses batch statistics."""
        conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, padding="SAME")
        norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=self.bn_momentum,
                                 epsilon=1e-5, dtype=self.dtype)
        x = jnp.asarray(x, self.dtype)
        if self.small_inputs:
            x = conv(self.num_filters, (3, 3), name="conv_init")(x)
            x = nn.relu(norm(name="bn_init")(x))
        else:
            x = conv(self.num_filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name="conv_init")(x)
            x = nn.relu(norm(name="bn_init")(x))
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for i, n in enumerate(self.stage_sizes):
            for j in range(n):
                strides = (2, 2) if i > 0 and j == 0 else (1, 1)
                x = self.block_cls(self.num_filters * 2**i, conv=conv, norm=norm, strides=strides,
                                   zero_init_residual=self.zero_init_residual)(x)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dense(self.num_classes, dtype=self.dtype)(x)
        return jnp.asarray(x, jnp.float32)

    def dependency_groups(self) -> tuple[Group, ...]:
        """The channel groups: one per inner convolution of each block, one per residual stream.

        Channels that are added together are one group (torch-pruning couples them the same way): the
        residual stream of a stage spans the outputs of the stem (or of the projection that starts the stage),
        of every block's last convolution and BatchNorm, and the inputs of every block's first convolution
        and projection reading it, up to the next projection (or the classifier). Groups: ``"stem"`` (the
        stem's stream; with basic blocks also stage 0's), ``"residual_<i>"`` (the stream started by stage
        ``i``'s projection), ``"<Block>_<j>/Conv_<c>"`` (an inner convolution's channels). Every width follows
        ``num_filters``, so a group can only be resized to a multiple of its share of it (``2**stage``, times 4
        for a bottleneck stream); shrink all groups by the same factor.

        Examples:
          >>> [g.name for g in ResNet18(num_classes=10, num_filters=4).dependency_groups()][:3]
          ['BasicBlock_0/Conv_0', 'BasicBlock_1/Conv_0', 'BasicBlock_2/Conv_0']
        """
        P, S = "params", "batch_stats"
        block = getattr(self.block_cls, "__name__", type(self.block_cls).__name__)
        bottleneck = block == BottleneckBlock.__name__ or getattr(self.block_cls, "func", None) is BottleneckBlock
        n_convs = 3 if bottleneck else 2
        F = self.num_filters

        def bn(*path):
            return [Axis((P, *path, "scale"), 0), Axis((P, *path, "bias"), 0, score=False),
                    Axis((S, *path, "mean"), 0, score=False), Axis((S, *path, "var"), 0, score=False)]

        inner, streams = [], []
        stream_name, stream_mult = "stem", 1
        stream = [Axis((P, "conv_init", "kernel"), -1), *bn("bn_init")]
        idx = 0
        for i, n in enumerate(self.stage_sizes):
            for j in range(n):
                name = f"{block}_{idx}"
                stride = 2 if i > 0 and j == 0 else 1
                filters = F * 2**i
                out_mult = 2**i * (4 if bottleneck else 1)
                proj = stride != 1 or stream_mult != out_mult
                stream.append(Axis((P, name, "Conv_0", "kernel"), -2))
                if proj:
                    stream.append(Axis((P, name, "conv_proj", "kernel"), -2))
                for c in range(n_convs - 1):
                    inner.append(Group(f"{name}/Conv_{c}", filters, (
                        Axis((P, name, f"Conv_{c}", "kernel"), -1), *bn(name, f"BatchNorm_{c}"),
                        Axis((P, name, f"Conv_{c + 1}", "kernel"), -2)), _resize_filters(2**i)))
                if proj:
                    streams.append(Group(stream_name, F * stream_mult, tuple(stream), _resize_filters(stream_mult)))
                    stream_name, stream_mult = f"residual_{i}", out_mult
                    stream = [Axis((P, name, "conv_proj", "kernel"), -1), *bn(name, "norm_proj")]
                last = n_convs - 1
                stream += [Axis((P, name, f"Conv_{last}", "kernel"), -1), *bn(name, f"BatchNorm_{last}")]
                idx += 1
        stream.append(Axis((P, "Dense_0", "kernel"), 0))
        streams.append(Group(stream_name, F * stream_mult, tuple(stream), _resize_filters(stream_mult)))
        return tuple(inner) + tuple(streams)


def _resize_filters(share: int):
    """``Group.resize`` for a ResNet group of width ``num_filters * share``."""

    def resize(config, kept: np.ndarray):
        if len(kept) % share:
            raise ValueError(f"a ResNet group of width num_filters * {share} cannot keep {len(kept)} channels: "
                             f"every width follows num_filters, so keep a multiple of {share}")
        return replace_fields(config, num_filters=len(kept) // share)

    return resize


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock)
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BottleneckBlock)
ResNet101 = functools.partial(ResNet, stage_sizes=(3, 4, 23, 3), block_cls=BottleneckBlock)
ResNet152 = functools.partial(ResNet, stage_sizes=(3, 8, 36, 3), block_cls=BottleneckBlock)
