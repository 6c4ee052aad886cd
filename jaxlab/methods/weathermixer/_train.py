"""Loss functions, optimiser and sharded initialisation for training WeatherMixer."""

from __future__ import annotations

from typing import Any, Callable

import jax
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlab.parallel import tree_shardings

from ._loss import weighted_mse
from ._model import WeatherMixer
from ._sharded import make_apply


def make_loss_fn(
    model: WeatherMixer, mesh: Mesh | None = None, *, strategy: str = "jigsaw", remat: bool = True
) -> Callable:
    """``loss_fn(params, model_state, batch, key) -> (loss, (metrics, model_state))``.

    ``batch`` is a dict with ``state`` and ``target`` ``(B, lat, lon, C)`` and ``lat_weights``
    ``(lat,)``, laid out by ``state_sharding`` / ``lat_sharding`` on ``mesh``. The model output
    stays sharded; the loss reduction is one small all-reduce placed by XLA.
    """
    apply = make_apply(model, mesh, strategy=strategy, remat=remat)

    def loss_fn(params, model_state, batch, key):
        del key  # deterministic model (no dropout)
        pred = apply(params, batch["state"])
        loss = weighted_mse(pred, batch["target"], batch["lat_weights"])
        return loss, ({"loss": loss}, model_state)

    return loss_fn


def _label(path) -> str:
    top = str(getattr(path[0], "key", path[0]))
    return "io" if top in ("embed", "recovery") else "core"


def make_optimizer(learning_rate: float, *, io_learning_rate: float | None = None, clip_norm: float = 1.0):
    """Adam with global-norm clipping; the paper uses a lower rate for embedding and recovery.

    Args:
      learning_rate: Adam rate for the mixer blocks and heads (paper: 1e-4).
      io_learning_rate: rate for ``embed`` and ``recovery`` (paper: 2e-5); None: ``learning_rate``.
      clip_norm: global gradient norm clip (paper: 1).
    """
    io = learning_rate if io_learning_rate is None else io_learning_rate
    adam = optax.multi_transform(
        {"core": optax.adam(learning_rate), "io": optax.adam(io)},
        lambda params: jax.tree_util.tree_map_with_path(lambda p, _: _label(p), params),
    )
    return optax.chain(optax.clip_by_global_norm(clip_norm), adam)


def opt_state_bytes_per_device(tree: Any, device: jax.Device) -> int:
    """Bytes of the non-scalar leaves of ``tree`` that live on ``device`` (its shards)."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        if not hasattr(leaf, "addressable_shards") or leaf.ndim == 0:
            continue
        for s in leaf.addressable_shards:
            if s.device == device:
                total += s.data.nbytes
    return total


def init_opt_state(
    tx: optax.GradientTransformation, params: Any, mesh: Mesh | None = None, *, strategy: str = "jigsaw"
):
    """``tx.init(params)`` with every moment laid out like its parameter (nothing replicated)."""
    if mesh is None:
        return jax.jit(tx.init)(params)
    shapes = jax.eval_shape(tx.init, params)
    if strategy == "local":
        out = jax.tree.map(lambda _: NamedSharding(mesh, P()), shapes)
    else:
        out = tree_shardings(shapes, mesh)
    return jax.jit(tx.init, out_shardings=out)(params)
