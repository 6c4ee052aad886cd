"""AutoPQ's conditional invertible network (cINN) over the horizon vector, in Flax.

A port of the reference's FrEIA graph (SMEISEN/AutoPQ ``pywatts_modules/inn_base_functions.py``; base
method: Phipps et al., Applied Intelligence 2024, arXiv 2302.01800): ``num_blocks`` conditional GLOW
coupling blocks, each followed by a fixed random permutation, and a small condition network whose
output feeds every block.

One block maps ``x = (x1, x2)`` (``x1`` the first ``H // 2`` entries) to ``y = (y1, y2)``::

    [s2, t2] = net2([x2, c]);  y1 = x1 * e(s2) + t2
    [s1, t1] = net1([y1, c]);  y2 = x2 * e(s1) + t1
    log e(s) = clamp * 0.636 * atan(s / clamp),   log|det J| = sum log e(s2) + sum log e(s1)

and the inverse undoes ``y2`` first, then ``y1``. Each ``net`` is Linear -> 32 -> tanh -> Linear; the
condition network is Linear -> 8 -> tanh -> Linear -> 4. The permutation after block ``k`` is
``numpy.random.RandomState(k).permutation(H)`` (FrEIA's ``PermuteRandom(seed=k)``), so the graph is the
reference's. Initialisation as in the reference: the coupling networks' weights and biases are
``0.01 * N(0, 1)``; the condition network keeps torch's default ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
(the reference rescales only the FrEIA graph's parameters).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import Array

#: The soft clamp's atan factor (about 2 / pi), as in FrEIA.
ATAN_FACTOR = 0.636


def soft_clamp(s: Array, clamp: float) -> Array:
    """``clamp * 0.636 * atan(s / clamp)``: the log-scale of a coupling, bounded by about ``clamp``."""
    return clamp * ATAN_FACTOR * jnp.arctan(s / clamp)


def block_permutation(horizon: int, seed: int) -> np.ndarray:
    """The fixed permutation after block ``seed`` (FrEIA ``PermuteRandom(seed=seed)``): ``y = x[:, perm]``."""
    return np.random.RandomState(seed).permutation(horizon)


def _normal_001(key, shape, dtype=jnp.float32):
    return 0.01 * jax.random.normal(key, shape, dtype)


def _torch_uniform(fan_in: int):
    bound = 1.0 / np.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


class _TorchDense(nn.Module):
    """Dense with torch's default initialisation (weights and bias uniform in +-1/sqrt(fan_in))."""

    features: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        fan_in = x.shape[-1]
        kernel = self.param("kernel", _torch_uniform(fan_in), (fan_in, self.features))
        bias = self.param("bias", _torch_uniform(fan_in), (self.features,))
        return x @ kernel + bias


class ConditionNet(nn.Module):
    """``c -> Linear(8) -> tanh -> Linear(4)``."""

    hidden: int = 8
    features: int = 4

    @nn.compact
    def __call__(self, c: Array) -> Array:
        return _TorchDense(self.features, name="out")(jnp.tanh(_TorchDense(self.hidden, name="hidden")(c)))


class _Subnet(nn.Module):
    """A coupling network: Linear -> hidden -> tanh -> Linear, all parameters ``0.01 * N(0, 1)``."""

    features: int
    hidden: int = 32

    @nn.compact
    def __call__(self, u: Array) -> Array:
        h = nn.Dense(self.hidden, kernel_init=_normal_001, bias_init=_normal_001, name="hidden")(u)
        return nn.Dense(self.features, kernel_init=_normal_001, bias_init=_normal_001, name="out")(jnp.tanh(h))


class GlowCoupling(nn.Module):
    """One conditional GLOW coupling block (FrEIA ``GLOWCouplingBlock``) on ``(B, H)``."""

    horizon: int
    clamp: float = 0.5
    hidden: int = 32

    def setup(self):
        self.len1 = self.horizon // 2
        self.len2 = self.horizon - self.len1
        self.net1 = _Subnet(2 * self.len2, self.hidden)   # acts on [y1, c], gives s1, t1 for x2
        self.net2 = _Subnet(2 * self.len1, self.hidden)   # acts on [x2, c], gives s2, t2 for x1

    def _affine2(self, u: Array, c: Array) -> tuple[Array, Array]:
        a = self.net2(jnp.concatenate([u, c], -1))
        return soft_clamp(a[:, : self.len1], self.clamp), a[:, self.len1 :]

    def _affine1(self, u: Array, c: Array) -> tuple[Array, Array]:
        a = self.net1(jnp.concatenate([u, c], -1))
        return soft_clamp(a[:, : self.len2], self.clamp), a[:, self.len2 :]

    def __call__(self, x: Array, c: Array) -> tuple[Array, Array]:
        x1, x2 = x[:, : self.len1], x[:, self.len1 :]
        log_s2, t2 = self._affine2(x2, c)
        y1 = x1 * jnp.exp(log_s2) + t2
        log_s1, t1 = self._affine1(y1, c)
        y2 = x2 * jnp.exp(log_s1) + t1
        return jnp.concatenate([y1, y2], -1), jnp.sum(log_s2, -1) + jnp.sum(log_s1, -1)

    def inverse(self, y: Array, c: Array) -> tuple[Array, Array]:
        y1, y2 = y[:, : self.len1], y[:, self.len1 :]
        log_s1, t1 = self._affine1(y1, c)
        x2 = (y2 - t1) * jnp.exp(-log_s1)
        log_s2, t2 = self._affine2(x2, c)
        x1 = (y1 - t2) * jnp.exp(-log_s2)
        return jnp.concatenate([x1, x2], -1), -(jnp.sum(log_s2, -1) + jnp.sum(log_s1, -1))


class CINN(nn.Module):
    """AutoPQ's cINN: ``x (B, H)`` and conditions ``c (B, D)`` to the latent ``z (B, H)``.

    ``apply(params, x, c)`` returns ``(z, log|det dz/dx|)``; ``apply(params, z, c, method=CINN.inverse)``
    returns ``(x, log|det dx/dz|)``.

    Attributes:
      horizon: H, the length of the forecast vector (at least 2).
      num_blocks: coupling blocks (10 in the reference).
      clamp: the soft clamp of the log-scales (0.5).
      hidden: width of the coupling networks (32).
      cond_hidden, cond_features: widths of the condition network (8, 4).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> model = CINN(horizon=4, num_blocks=2)
      >>> x, c = jnp.ones((3, 4)), jnp.zeros((3, 5))
      >>> params = model.init(jax.random.key(0), x, c)
      >>> z, log_det = model.apply(params, x, c)
      >>> back, _ = model.apply(params, z, c, method=CINN.inverse)
      >>> bool(jnp.allclose(back, x, atol=1e-5)), z.shape, log_det.shape
      (True, (3, 4), (3,))
    """

    horizon: int
    num_blocks: int = 10
    clamp: float = 0.5
    hidden: int = 32
    cond_hidden: int = 8
    cond_features: int = 4

    def setup(self):
        if self.horizon < 2:
            raise ValueError(f"the cINN needs a horizon of at least 2 steps to split, got {self.horizon}")
        self.condition = ConditionNet(self.cond_hidden, self.cond_features)
        self.blocks = [GlowCoupling(self.horizon, self.clamp, self.hidden) for _ in range(self.num_blocks)]
        perms = [block_permutation(self.horizon, k) for k in range(self.num_blocks)]
        self.perms = tuple(perms)
        self.inverse_perms = tuple(np.argsort(p) for p in perms)

    def __call__(self, x: Array, c: Array) -> tuple[Array, Array]:
        self._check(x, c)
        h = self.condition(c)
        log_det = jnp.zeros(x.shape[:1], x.dtype)
        for block, perm in zip(self.blocks, self.perms):
            x, ld = block(x, h)
            x = x[:, perm]
            log_det = log_det + ld
        return x, log_det

    def inverse(self, z: Array, c: Array) -> tuple[Array, Array]:
        self._check(z, c)
        h = self.condition(c)
        log_det = jnp.zeros(z.shape[:1], z.dtype)
        for block, inv in zip(reversed(self.blocks), reversed(self.inverse_perms)):
            z, ld = block.inverse(z[:, inv], h)
            log_det = log_det + ld
        return z, log_det

    def _check(self, x: Array, c: Array) -> None:
        if x.ndim != 2 or x.shape[1] != self.horizon:
            raise ValueError(f"CINN(horizon={self.horizon}) takes x of shape (B, {self.horizon}), got {x.shape}")
        if c.ndim != 2 or c.shape[0] != x.shape[0]:
            raise ValueError(f"CINN conditions must be (B, D) with B = {x.shape[0]}, got {c.shape}")


def init_cinn(model: CINN, key, x: Array, c: Array):
    """The variables of ``model.init(key, x, c)`` in distribution, drawn with two RNG calls.

    Flax's ``init`` draws every leaf separately, and compiling threefry for the 82 leaves of the 10-block
    graph takes seconds on a CPU; this traces the shapes only (``jax.eval_shape``), draws one normal and
    one uniform vector and cuts them into the leaves: coupling weights and biases ``0.01 * N(0, 1)``,
    condition-network weights and biases ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.
    """
    shapes = jax.eval_shape(model.init, jax.random.key(0), x, c)
    leaves, tree = jax.tree_util.tree_flatten_with_path(shapes)
    sizes = [int(np.prod(leaf.shape)) for _, leaf in leaves]
    k_normal, k_uniform = jax.random.split(key)
    total = int(sum(sizes))
    normal = np.asarray(jax.random.normal(k_normal, (total,), jnp.float32))
    uniform = np.asarray(jax.random.uniform(k_uniform, (total,), jnp.float32, -1.0, 1.0))
    kernels = {tuple(_key_names(path)[:-1]): leaf.shape for path, leaf in leaves if _key_names(path)[-1] == "kernel"}
    out, start = [], 0
    for (path, leaf), size in zip(leaves, sizes):
        names = _key_names(path)
        if "condition" in names:
            fan_in = kernels[tuple(names[:-1])][0]
            value = uniform[start : start + size] / np.sqrt(fan_in)
        else:
            value = 0.01 * normal[start : start + size]
        out.append(jax.device_put(value.reshape(leaf.shape).astype(leaf.dtype)))  # no per-shape copy program
        start += size
    return jax.tree_util.tree_unflatten(tree, out)


def _key_names(path) -> list[str]:
    return [str(getattr(p, "key", p)) for p in path]


def nll_loss(z: Array, log_det: Array) -> Array:
    """The reference's maximum-likelihood loss: ``mean(z^2) / 2 - mean(log|det J|) / H``."""
    return jnp.mean(jnp.square(z)) / 2 - jnp.mean(log_det) / z.shape[-1]
