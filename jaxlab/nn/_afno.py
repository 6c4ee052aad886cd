"""FourCastNet's AFNO network (Pathak et al., "FourCastNet", arXiv 2202.11214; Guibas et al., "Adaptive
Fourier Neural Operators", arXiv 2111.13587) in flax.linen.

An image (NHWC) is cut into patches, embedded, mixed over tokens by :class:`AFNO2D` (an FFT over the
patch grid, a block-diagonal complex two-layer MLP per frequency, soft-shrink, inverse FFT) and over
channels by an MLP, and projected back to pixels.

Differences from NVlabs/FourCastNet (networks/afnonet.py): ``hard_thresholding_fraction < 1`` keeps
the lowest ``|k|`` frequencies on both axes (the reference slices the middle of the unshifted FFT
axis, i.e. the highest frequencies); the token mixer runs in the input dtype (the reference casts to
float32); there is no DropPath.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import Array


def _soft_shrink(x: Array, lam: float) -> Array:
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - lam, 0.0)


def _mode_mask(h: int, wf: int, fraction: float) -> np.ndarray:
    """1 for the kept frequencies of an ``rfft2`` of an ``h x (2 (wf - 1))`` grid, else 0."""
    kh = np.abs(np.fft.fftfreq(h) * h)
    kw = np.arange(wf)
    keep_h = kh < max(1, int(round((h // 2 + 1) * fraction)))
    keep_w = kw < max(1, int(round(wf * fraction)))
    return (keep_h[:, None] & keep_w[None, :]).astype(np.float32)


def afno2d_mix(x: Array, w1: Array, b1: Array, w2: Array, b2: Array, *, sparsity_threshold: float = 0.01,
               hard_thresholding_fraction: float = 1.0) -> Array:
    """The AFNO token mixer as a pure function (without the residual ``+ x``).

    Args:
      x: tokens on a grid, ``(batch, h, w, channels)``.
      w1: ``(2, num_blocks, block, block * factor)``: real and imaginary parts of the first layer.
      b1: ``(2, num_blocks, block * factor)``.
      w2: ``(2, num_blocks, block * factor, block)``.
      b2: ``(2, num_blocks, block)``.
      sparsity_threshold: soft-shrink threshold on the real and imaginary parts.
      hard_thresholding_fraction: fraction of the frequencies kept per axis.

    Returns:
      The mixed tokens, same shape and dtype as ``x`` (bfloat16/float16 inputs are mixed in float32).
    """
    b, h, w, c = x.shape
    nb, bs = w1.shape[1], w1.shape[2]
    if nb * bs != c:
        raise ValueError(f"channels {c} != num_blocks {nb} x block size {bs}; make channels divisible")
    dtype = x.dtype
    # XLA's FFT takes float32/float64 only: half-precision tokens are transformed (and mixed) in float32,
    # as FourCastNet does under autocast.
    if jnp.finfo(dtype).bits < 32:
        x = x.astype(jnp.float32)
    xf = jnp.fft.rfft2(x, axes=(1, 2), norm="ortho").reshape(b, h, w // 2 + 1, nb, bs)
    xr, xi = xf.real, xf.imag

    def cmul(ar, ai, wgt, bias):  # (a_r + i a_i)(W_r + i W_i) + (b_r + i b_i), per block
        rr = jnp.einsum("...nd,nde->...ne", ar, wgt[0]) - jnp.einsum("...nd,nde->...ne", ai, wgt[1])
        ii = jnp.einsum("...nd,nde->...ne", ai, wgt[0]) + jnp.einsum("...nd,nde->...ne", ar, wgt[1])
        return rr + bias[0], ii + bias[1]

    o1r, o1i = cmul(xr, xi, w1.astype(xr.dtype), b1.astype(xr.dtype))
    o1r, o1i = jax.nn.relu(o1r), jax.nn.relu(o1i)
    o2r, o2i = cmul(o1r, o1i, w2.astype(xr.dtype), b2.astype(xr.dtype))
    o2r, o2i = _soft_shrink(o2r, sparsity_threshold), _soft_shrink(o2i, sparsity_threshold)
    if hard_thresholding_fraction < 1.0:
        mask = jnp.asarray(_mode_mask(h, w // 2 + 1, hard_thresholding_fraction), xr.dtype)[:, :, None, None]
        o2r, o2i = o2r * mask, o2i * mask
    out = jax.lax.complex(o2r, o2i).reshape(b, h, w // 2 + 1, c)
    return jnp.fft.irfft2(out, s=(h, w), axes=(1, 2), norm="ortho").astype(dtype)


def afno2d_mix_reference(x, w1, b1, w2, b2, *, sparsity_threshold=0.01, hard_thresholding_fraction=1.0):
    """NumPy oracle of :func:`afno2d_mix`: complex weights, a loop over blocks, ``numpy.fft``."""
    x = np.asarray(x, np.float64)
    b, h, w, c = x.shape
    nb, bs = w1.shape[1], w1.shape[2]
    xf = np.fft.rfft2(x, axes=(1, 2), norm="ortho")
    W1 = np.asarray(w1[0], np.float64) + 1j * np.asarray(w1[1], np.float64)
    B1 = np.asarray(b1[0], np.float64) + 1j * np.asarray(b1[1], np.float64)
    W2 = np.asarray(w2[0], np.float64) + 1j * np.asarray(w2[1], np.float64)
    B2 = np.asarray(b2[0], np.float64) + 1j * np.asarray(b2[1], np.float64)
    out = np.zeros_like(xf)
    for n in range(nb):
        blk = xf[..., n * bs:(n + 1) * bs]
        o1 = blk @ W1[n] + B1[n]
        o1 = np.maximum(o1.real, 0) + 1j * np.maximum(o1.imag, 0)
        o2 = o1 @ W2[n] + B2[n]
        shrink = lambda v: np.sign(v) * np.maximum(np.abs(v) - sparsity_threshold, 0)  # noqa: E731
        out[..., n * bs:(n + 1) * bs] = shrink(o2.real) + 1j * shrink(o2.imag)
    if hard_thresholding_fraction < 1.0:
        out = out * _mode_mask(h, w // 2 + 1, hard_thresholding_fraction)[None, :, :, None]
    return np.fft.irfft2(out, s=(h, w), axes=(1, 2), norm="ortho")


class AFNO2D(nn.Module):
    """Adaptive Fourier token mixer with a residual connection: ``x + afno2d_mix(x)``.

    Attributes:
      num_blocks: diagonal blocks of the complex MLP (channels must divide by it).
      sparsity_threshold: soft-shrink threshold (lambda = 0.01 in FourCastNet).
      hard_thresholding_fraction: fraction of frequencies kept per axis.
      hidden_size_factor: hidden width of the complex MLP per block, as a multiple of the block size.
    """

    num_blocks: int = 8
    sparsity_threshold: float = 0.01
    hard_thresholding_fraction: float = 1.0
    hidden_size_factor: int = 1

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        if c % self.num_blocks:
            raise ValueError(f"AFNO2D: channels {c} must be divisible by num_blocks {self.num_blocks}")
        bs, f = c // self.num_blocks, self.hidden_size_factor
        init = nn.initializers.normal(0.02)
        w1 = self.param("w1", init, (2, self.num_blocks, bs, bs * f))
        b1 = self.param("b1", init, (2, self.num_blocks, bs * f))
        w2 = self.param("w2", init, (2, self.num_blocks, bs * f, bs))
        b2 = self.param("b2", init, (2, self.num_blocks, bs))
        return x + afno2d_mix(x, w1, b1, w2, b2, sparsity_threshold=self.sparsity_threshold,
                              hard_thresholding_fraction=self.hard_thresholding_fraction)


class AFNOBlock(nn.Module):
    """``x = x + AFNO(LN(x)); x = x + MLP(LN(x))`` (FourCastNet's double skip)."""

    num_blocks: int = 8
    mlp_ratio: float = 4.0
    sparsity_threshold: float = 0.01
    hard_thresholding_fraction: float = 1.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        # AFNO2D adds its input, so this is x + (LN(x) + mix(LN(x))) as in the reference (double skip).
        x = x + AFNO2D(self.num_blocks, self.sparsity_threshold, self.hard_thresholding_fraction)(
            nn.LayerNorm(epsilon=1e-6, dtype=self.dtype)(x))
        y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype)(x)
        y = nn.Dense(int(c * self.mlp_ratio), dtype=self.dtype)(y)
        y = nn.Dense(c, dtype=self.dtype)(nn.gelu(y, approximate=False))
        return x + y


class AFNONet(nn.Module):
    """FourCastNet's backbone: patch embedding, ``depth`` AFNO blocks, linear head, un-patchify.

    Attributes:
      out_channels: channels of the output field (20 for FourCastNet's ERA5 variables).
      patch_size: square patch edge (8 in FourCastNet); image sides must divide by it.
      embed_dim: token width (768).
      depth: number of blocks (12).
      num_blocks: AFNO diagonal blocks (8).
      mlp_ratio: channel-MLP expansion (4).
      sparsity_threshold: soft-shrink lambda (0.01).
      hard_thresholding_fraction: kept frequency fraction (1.0).
      dtype: computation dtype of the dense layers.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> net = AFNONet(out_channels=2, patch_size=4, embed_dim=16, depth=1, num_blocks=4)
      >>> x = jnp.zeros((1, 16, 32, 3))
      >>> jax.eval_shape(lambda k: net.apply(net.init(k, x), x), jax.random.key(0)).shape
      (1, 16, 32, 2)
    """

    out_channels: int
    patch_size: int = 8
    embed_dim: int = 768
    depth: int = 12
    num_blocks: int = 8
    mlp_ratio: float = 4.0
    sparsity_threshold: float = 0.01
    hard_thresholding_fraction: float = 1.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = True):
        """Maps NHWC fields ``(batch, H, W, in_channels)`` to ``(batch, H, W, out_channels)``."""
        del train  # no dropout / DropPath
        b, hh, ww, _ = x.shape
        p = self.patch_size
        if hh % p or ww % p:
            raise ValueError(f"image {hh}x{ww} must be divisible by patch_size {p}; crop or pad the input")
        h, w = hh // p, ww // p
        x = nn.Conv(self.embed_dim, (p, p), strides=(p, p), padding="VALID", dtype=self.dtype,
                    name="patch_embed")(x)
        pos = self.param("pos_embed", nn.initializers.truncated_normal(0.02), (1, h, w, self.embed_dim))
        x = x + pos.astype(x.dtype)
        for i in range(self.depth):
            x = AFNOBlock(self.num_blocks, self.mlp_ratio, self.sparsity_threshold,
                          self.hard_thresholding_fraction, self.dtype, name=f"block_{i}")(x)
        x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm")(x)
        x = nn.Dense(self.out_channels * p * p, use_bias=False, dtype=self.dtype, name="head")(x)
        x = x.reshape(b, h, w, p, p, self.out_channels).transpose(0, 1, 3, 2, 4, 5)
        return jnp.asarray(x.reshape(b, hh, ww, self.out_channels), jnp.float32)
