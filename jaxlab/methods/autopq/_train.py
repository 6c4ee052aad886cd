"""Training the cINN by maximum likelihood on the true targets, as the reference does.

Adam at lr 5e-4 with torch-style (coupled) weight decay 1e-5 after clipping the gradient norm to 1.0,
batch 512, 100 epochs, shuffled each epoch with the last batch partial (torch's ``DataLoader(shuffle=
True)``), and a random 20% of the samples held out (the reference only prints their loss; here it is
returned per epoch). One epoch is one jitted ``lax.scan`` over its batches.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import PRNGKey

from ._cinn import CINN, init_cinn, nll_loss


@dataclasses.dataclass(frozen=True)
class CINNTraining:
    """The cINN's optimiser settings (the reference's)."""

    epochs: int = 100
    batch_size: int = 512
    learning_rate: float = 5e-4
    weight_decay: float = 1e-5
    clip_norm: float = 1.0
    holdout: float = 0.2


class CINNFit(NamedTuple):
    """A trained cINN: ``model``, ``params`` and the per-epoch mean training and held-out losses."""

    model: CINN
    params: Any
    train_loss: np.ndarray
    holdout_loss: np.ndarray


def cinn_optimizer(settings: CINNTraining) -> optax.GradientTransformation:
    """torch ``clip_grad_norm_(1.0)`` then ``Adam(lr, weight_decay)``: decay is added to the clipped gradient."""
    return optax.chain(optax.clip_by_global_norm(settings.clip_norm),
                       optax.add_decayed_weights(settings.weight_decay),
                       optax.scale_by_adam(), optax.scale(-settings.learning_rate))


def epoch_indices(key: PRNGKey, num_samples: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """One epoch's batches as :func:`fit_cinn` draws them: a permutation of the samples in ``ceil(N / B)``
    batches of ``B``, the last one filled up with sample 0 at weight 0 (torch's partial last batch).

    Pure ``jnp`` (``fit_cinn`` calls it inside its jitted epoch).

    Returns:
      ``(index, weight)``, both ``(ceil(N / B), B)``: sample indices (int32) and float32 weights (1, or 0 for
      the fill). Batch ``i`` is ``{"target": x[index[i]], "cond": cond[index[i]], "weight": weight[i]}``.
    """
    bs = min(batch_size, num_samples)
    num_batches = -(-num_samples // bs)
    perm = jax.random.permutation(key, num_samples)
    idx = jnp.concatenate([perm, jnp.zeros(num_batches * bs - num_samples, perm.dtype)])
    weight = (jnp.arange(num_batches * bs) < num_samples).astype(jnp.float32)
    return idx.reshape(num_batches, bs), weight.reshape(num_batches, bs)


def weighted_nll(model: CINN, params, x: jax.Array, cond: jax.Array, weight: jax.Array) -> jax.Array:
    """The batch loss of :func:`fit_cinn`: :func:`nll_loss` per sample, averaged with ``weight`` ``(B,)``
    (all ones: exactly ``nll_loss``; zeros drop the fill of a partial last batch)."""
    z, log_det = cast(tuple[jax.Array, jax.Array], model.apply(params, x, cond))
    per = jnp.mean(jnp.square(z), -1) / 2 - log_det / x.shape[-1]   # mean over the batch = nll_loss
    return jnp.sum(weight * per) / jnp.sum(weight)


def cinn_nll(model: CINN, params, x: jax.Array, cond: jax.Array) -> jax.Array:
    """:func:`nll_loss` of the cINN on targets ``x`` given ``cond`` (:func:`fit_cinn`'s hold-out loss)."""
    return nll_loss(*cast(tuple[jax.Array, jax.Array], model.apply(params, x, cond)))


def cinn_update(model: CINN, tx: optax.GradientTransformation, params, opt_state, x: jax.Array, cond: jax.Array,
                weight: jax.Array):
    """One optimiser step on :func:`weighted_nll`: ``(params, opt_state, loss before the step)``; the body of
    :func:`fit_cinn`'s scan and of the public ``train_step``."""
    loss, g = jax.value_and_grad(lambda p: weighted_nll(model, p, x, cond, weight))(params)
    updates, opt_state = tx.update(g, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def fit_cinn(x: np.ndarray, cond: np.ndarray, *, key: PRNGKey, model: CINN | None = None,
             settings: CINNTraining = CINNTraining(), progress: bool = False) -> CINNFit:
    """Trains a cINN on targets ``x (N, H)`` given conditions ``cond (N, D)``.

    Args:
      x: the (scaled) target vectors.
      cond: the (scaled) conditions.
      key: PRNG key (initialisation, hold-out, shuffling).
      model: the network (default ``CINN(horizon=H)``, the reference's).
      settings: optimiser settings.
      progress: show a tqdm bar over the epochs.

    Returns:
      A :class:`CINNFit` with the parameters after the last epoch.
    """
    x = np.asarray(x, np.float32)
    cond = np.asarray(cond, np.float32)
    if x.ndim != 2 or cond.ndim != 2 or x.shape[0] != cond.shape[0]:
        raise ValueError(f"fit_cinn needs x (N, H) and cond (N, D) with the same N, got {x.shape} and {cond.shape}")
    n, horizon = x.shape
    model = CINN(horizon=horizon) if model is None else model
    k_init, k_hold, k_epochs = jax.random.split(key, 3)
    n_hold = int(n * settings.holdout)
    order = np.asarray(jax.random.permutation(k_hold, n))
    hold, train = order[:n_hold], order[n_hold:]
    if train.size == 0:
        raise ValueError(f"no training samples left after holding out {settings.holdout:.0%} of {n}")
    # device_put, not jnp.asarray: the latter compiles a copy program per shape
    xt, ct, xh, ch = jax.device_put((x[train], cond[train], x[hold], cond[hold]))
    params = init_cinn(model, k_init, x[train[:1]], cond[train[:1]])
    tx = cinn_optimizer(settings)
    opt_state = tx.init(params)
    bs = min(settings.batch_size, train.size)

    @jax.jit
    def epoch(params, opt_state, key, xt, ct):   # data enter as arguments (no constant folding)
        idx, weight = epoch_indices(key, train.size, bs)

        def step(carry, inp):
            p, s = carry
            i, w = inp
            p, s, loss = cinn_update(model, tx, p, s, xt[i], ct[i], w.astype(xt.dtype))
            return (p, s), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (idx, weight))
        return params, opt_state, jnp.mean(losses)

    holdout_loss = jax.jit(functools.partial(cinn_nll, model))

    it = range(settings.epochs)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="cINN", leave=False)
    train_curve, hold_curve = [], []
    for e in it:
        params, opt_state, loss = epoch(params, opt_state, jax.random.fold_in(k_epochs, e), xt, ct)
        train_curve.append(loss)
        hold_curve.append(holdout_loss(params, xh, ch) if n_hold else jnp.nan)
    jax.block_until_ready(params)
    return CINNFit(model, params, np.asarray(jax.device_get(train_curve), np.float64),
                   np.asarray(jax.device_get(hold_curve), np.float64))
