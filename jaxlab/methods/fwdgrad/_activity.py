"""Activity-perturbed forward gradients for the MLP experiment: tangents on the layer outputs, not on the weights.

This is what the reference code runs for the paper's network experiments (Helmholtz-AI-Energy/frog: the
CLI default ``--perturbation_mode node`` with ``fg_computation_mode = sim`` in configs/defaults.ini,
i.e. ``nn_training/simfg_models.py:ActivityPerturbedSimFGModel``; the README's section 4.4 command
passes neither option). Per step:

1. One set of k tangents ``V`` over the concatenated block outputs of one sample (dimension
   ``n_act = sum of the layer widths``, e.g. 128 + 128 + 10), shared by every sample of the batch.
2. Per sample b, ``d_b = V^T a'_b`` with ``a'_b`` the gradient of the batch loss w.r.t. that sample's block
   outputs (simulated: taken from backprop, as the reference's ``sim`` mode does).
3. The per-sample activity estimate is aggregated over all blocks at once (``jaxlab.fwdgrad.aggregate``;
   "projection" is the projection onto span(V) in activity space, as the reference's global jvps do).
4. Each block's parameter gradient is a *local* backward pass of that block alone, seeded with its part
   of the activity estimate (inputs held fixed).

With k = n_act and the projection, step 3 recovers the activity gradients exactly and the result is the
backprop gradient (tested). Deviation from the reference: only the simulated mode is implemented (a jvp
of the per-sample losses would give the same ``d``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxlab import fwdgrad
from jaxlab.core import PRNGKey, PyTree

#: Experiment method name -> (aggregation, tangent sampler) of the activity forward gradient. The orthonormal
#: rows are the control: with V^T V = I the projection is exactly k times the mean.
ACTIVITY_METHODS: dict[str, tuple[str, str]] = {
    "activity_mean": ("mean", "normal"), "activity_projection": ("projection", "normal"),
    "activity_mean_orthonormal": ("mean", "orthonormal"),
    "activity_projection_orthonormal": ("projection", "orthonormal")}


def _layer_names(params: PyTree) -> list[str]:
    return sorted(params, key=lambda name: int(name.rsplit("_", 1)[1]))


def mlp_blocks(params: PyTree, x: jax.Array, offsets=None, *, local: bool = False) -> list[jax.Array]:
    """Outputs of the blocks (Dense + ReLU, ..., Dense) of ``jaxlab.nn.MLP`` with ReLU, flattened input.

    Args:
      params: the MLP's ``params`` dict (``dense_0``, ``dense_1``, ...).
      x: inputs (batch, features).
      offsets: optional per-block additive offsets (zeros: differentiating w.r.t. them gives the
        activity gradients).
      local: stop gradients between blocks (each block's vjp then is its local backward pass).
    """
    h, outs = x.reshape(x.shape[0], -1), []
    names = _layer_names(params)
    for i, name in enumerate(names):
        z = (jax.lax.stop_gradient(h) if local else h) @ params[name]["kernel"] + params[name]["bias"]
        if i < len(names) - 1:
            z = jax.nn.relu(z)
        if offsets is not None:
            z = z + offsets[i]
        outs.append(z)
        h = z
    return outs


def activity_forward_gradient(params: PyTree, x: jax.Array, y: jax.Array, *, key: PRNGKey, num_tangents: int,
                              aggregation: str = "projection", sampler: str = "normal"):
    """Activity-perturbed forward gradient of the mean cross-entropy of an MLP (simulated ``d``).

    Args:
      sampler: the tangent sampler over the concatenated block outputs ("normal", the reference's; or
        "orthonormal", k <= n_act orthonormal tangents, the control where the projection is k times the mean).

    Returns:
      ``(grads, loss, logits)`` with ``grads`` shaped like ``params``.
    """
    widths = [params[n]["bias"].shape[0] for n in _layer_names(params)]
    zeros = [jnp.zeros((x.shape[0], w), x.dtype) for w in widths]

    def loss_of(offsets):
        logits = mlp_blocks(params, x, offsets)[-1]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

    (loss, logits), act_grads = jax.value_and_grad(loss_of, has_aux=True)(zeros)
    tangents = fwdgrad.sample_tangents(key, [jnp.zeros((w,), x.dtype) for w in widths], num_tangents,
                                       sampler=sampler)
    d = sum(v @ g.T for v, g in zip(tangents, act_grads))  # (k, batch)
    estimate = jax.vmap(lambda d_b: fwdgrad.aggregate(tangents, d_b, aggregation), out_axes=0)(d.T)
    _, local_vjp = jax.vjp(lambda p: mlp_blocks(p, x, local=True), params)
    (grads,) = local_vjp(list(estimate))
    return grads, loss, logits


def make_activity_grad_fn(*, num_tangents: int, aggregation: str, sampler: str = "normal") -> Callable:
    """A ``grad_fn`` for ``jaxlab.train.make_train_step`` whose batch is ``(x, y)`` of an MLP classifier.

    The ``loss_fn`` passed by the step is not differentiated (the estimate needs the block structure);
    the cross-entropy it reports is recomputed here. The key is split as in ``fwdgrad.make_grad_fn``.
    """
    if aggregation not in fwdgrad.AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; choose one of {fwdgrad.AGGREGATIONS}")
    if sampler not in fwdgrad.SAMPLERS:
        raise ValueError(f"unknown tangent sampler {sampler!r}; choose one of {fwdgrad.SAMPLERS}")

    def grad_fn(loss_fn, params, model_state, batch, key):
        del loss_fn
        _, tangent_key = jax.random.split(key)
        x, y = batch
        grads, loss, _ = activity_forward_gradient(params, x, y, key=tangent_key, num_tangents=num_tangents,
                                                   aggregation=aggregation, sampler=sampler)
        return (loss, ({}, model_state)), grads

    return grad_fn
