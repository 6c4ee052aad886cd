"""``run(config, workdir)``: train WeatherMixer with Jigsaw on a mesh, evaluate lat-weighted RMSE."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlab.core import Constraint, each, in_range, nonnegative, positive, write_json
from jaxlab.data import SyntheticDynamics, global_batch, load_navy_winds
from jaxlab.parallel import make_mesh
from jaxlab.train import TrainState, is_writer, make_train_step, plot_metrics, to_global, train_loop

from ._loss import latitude_weights, rollout, weighted_rmse
from ._model import WeatherMixer
from ._sharded import check_mesh, init_params, lat_sharding, make_apply, state_sharding
from ._train import init_opt_state, make_loss_fn, make_optimizer


@dataclasses.dataclass(frozen=True)
class WeatherMixerConfig:
    """Settings of one WeatherMixer run (model, mesh, data, optimiser, schedule).

    ``mesh`` is ``(data, space, tensor)``; one entry may be -1 (the rest of the devices). When the
    process has fewer devices than the mesh needs and ``shrink_mesh`` is set, the run falls back to
    one device (the summary records the mesh used).
    """

    dataset: Literal["synthetic", "navy_winds"] = "synthetic"
    grid: tuple[int, int] = (32, 64)  # synthetic only (navy_winds: 72 x 144)
    channels: int = 8  # synthetic only (navy_winds: 4 = U, V at t and t-1)
    synthetic_steps: int = 256
    test_fraction: float = 0.2  # synthetic only (navy_winds: the last 24 months)
    patch: int = 4
    hidden: int = 64
    token_hidden: int = 256
    channel_hidden: int = 64
    num_blocks: int = 3
    linear_residual: bool = True
    mesh: tuple[int, int, int] = (1, 2, 2)
    shrink_mesh: bool = True
    batch_size: int = 2
    learning_rate: float = 1e-3
    io_learning_rate: float = 1e-3
    clip_norm: float = 1.0
    num_steps: int = 500
    eval_every: int = 100
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 25
    rollout_steps: int = 4
    seed: int = 0

    CONSTRAINTS: ClassVar[dict] = {
        "grid": each(positive), "channels": positive, "synthetic_steps": positive,
        "test_fraction": in_range(0.0, 1.0, low_open=True, high_open=True), "patch": positive, "hidden": positive,
        "token_hidden": positive, "channel_hidden": positive, "num_blocks": positive,
        "mesh": Constraint(lambda m: all(s == -1 or s >= 1 for s in m) and list(m).count(-1) <= 1,
                           "three sizes >= 1, one of which may be -1 (the rest of the devices)"),
        "batch_size": positive, "learning_rate": positive, "io_learning_rate": positive, "clip_norm": positive,
        "num_steps": positive, "eval_every": nonnegative, "checkpoint_every": nonnegative,
        "keep_checkpoints": positive, "log_every": positive, "rollout_steps": nonnegative, "seed": in_range(0, 2**32 - 1),
    }


def load_data(config: WeatherMixerConfig):
    """``(source, train_ids, test_ids)``: the dataset ``config`` names and its split into sample indices.

    A source reads states and targets ``(len(ids), lat, lon, C)`` (float32, normalised):
    ``source.read(ids)`` and ``source.read(ids, target=True)`` on the host, or
    ``jaxlab.data.global_batch(source, ids, state_sharding(mesh))`` slab by slab on a mesh.

    Raises:
      DataNotFoundError: for ``navy_winds`` when the Debian package's file is missing (the message names it).
    """
    if config.dataset == "navy_winds":
        src = load_navy_winds(lags=2, train_months=108)
        ids = np.arange(src.num_samples)
        # sample i reads months i, i + 1 and predicts i + 2: train on targets before month 108
        return src, ids[ids + 2 < 108], ids[ids + 2 >= 108]
    src = SyntheticDynamics(config.grid, config.channels, num_steps=config.synthetic_steps, seed=config.seed)
    n_test = max(1, int(round(src.num_samples * config.test_fraction)))
    ids = np.arange(src.num_samples)
    return src, ids[:-n_test], ids[-n_test:]


def _build_mesh(config: WeatherMixerConfig):
    sizes = tuple(config.mesh)
    n = len(jax.devices())
    need = math.prod(s for s in sizes if s != -1)
    if -1 in sizes or need <= n:
        devices = jax.devices() if -1 in sizes else jax.devices()[:need]
        return make_mesh(*sizes, devices=devices)
    if not config.shrink_mesh:
        raise ValueError(
            f"mesh {sizes} needs {need} devices but this process has {n}; on CPU run with "
            "XLA_FLAGS=--xla_force_host_platform_device_count=8, or pass --set mesh=1,1,1"
        )
    print(f"weathermixer: mesh {sizes} needs {need} devices, {n} present: running on one device")
    return make_mesh(1, 1, 1, devices=jax.devices()[:1])


def _make_model(config: WeatherMixerConfig, grid, channels: int) -> WeatherMixer:
    """The model of ``config`` on a ``(lat, lon)`` grid with ``channels`` channels (its dataset's)."""
    return WeatherMixer(
        grid=tuple(grid), channels=channels, patch=config.patch, hidden=config.hidden,
        token_hidden=config.token_hidden, channel_hidden=config.channel_hidden,
        num_blocks=config.num_blocks, linear_residual=config.linear_residual,
    )


def _make_tx(config: WeatherMixerConfig):
    """The optimiser of ``config`` (:func:`make_optimizer`)."""
    return make_optimizer(config.learning_rate, io_learning_rate=config.io_learning_rate, clip_norm=config.clip_norm)


def _make_scores(apply):
    """``scores(params, state, target, lat_weights) -> (model RMSE, persistence RMSE)``, each ``(C,)``.

    The per-channel latitude-weighted RMSE (:func:`weighted_rmse`) of the one-step forecast and of persistence
    (the state itself as the forecast) on one batch; ``apply`` is a :func:`make_apply` function.
    """

    def scores(params, x, y, lat_w):
        pred = apply(params, x)
        return weighted_rmse(pred, y, lat_w), weighted_rmse(x, y, lat_w)

    return scores


def _channel_names(src) -> tuple[tuple[str, ...], int]:
    """``(names of the C channels, number of prognostic channels)``: the scores average the first ``nvar``
    (the current time level; lagged copies of the same variables follow them)."""
    names = getattr(src, "channel_names", tuple(f"c{i}" for i in range(src.channels)))
    return names, len(getattr(src, "variables", names))


def _channel_std(src) -> np.ndarray:
    """Per-variable normalisation scales (ones for synthetic data): RMSE in physical units = normalised x std."""
    return np.asarray(getattr(src, "std", np.ones(src.channels)))


def _rmse_summary(scores, params, batches, lat_w, names, nvar: int, std) -> dict:
    """The evaluation metrics of ``run``: ``scores`` (:func:`_make_scores`, jitted) of each ``(state,
    target)`` pair of ``batches`` gives per-channel RMSE rows of the model and of persistence, each ``(C,)``,
    averaged over batches, then over the ``nvar`` prognostic channels (normalised units), and per prognostic
    channel in physical units (x ``std[c % len(std)]``)."""
    rm, rp = [], []
    for x, y in batches:
        m, p = scores(params, x, y, lat_w)
        rm.append(np.asarray(m))
        rp.append(np.asarray(p))
    rm, rp = np.mean(rm, 0), np.mean(rp, 0)
    out = {"test_rmse": float(np.mean(rm[:nvar])), "persistence_rmse": float(np.mean(rp[:nvar]))}
    for c in range(nvar):
        out[f"test_rmse_{names[c]}"] = float(rm[c] * std[c % len(std)])
    return out


def run(config: WeatherMixerConfig, workdir: str | Path, *, progress: bool = True, meter="auto") -> dict:
    """Trains with Jigsaw on ``config.mesh``; writes metrics, checkpoints, summary.json and plots."""
    workdir = Path(workdir)
    src, train_ids, test_ids = load_data(config)
    mesh = _build_mesh(config)
    model = _make_model(config, src.grid, src.channels)
    check_mesh(model, mesh, config.batch_size)
    key = jax.random.key(config.seed)
    k_init, k_train = jax.random.split(key)
    params = init_params(model, key=k_init, mesh=mesh)
    tx = _make_tx(config)
    # the step counter replicated on the mesh, as the step returns it: a one-device counter would make the
    # second call compile the train step again
    step0 = to_global(np.zeros((), np.int32), NamedSharding(mesh, P()))
    state = TrainState(step=step0, params=params, opt_state=init_opt_state(tx, params, mesh), model_state={})
    step = make_train_step(make_loss_fn(model, mesh), tx)
    s_shard = state_sharding(mesh)
    lat_w = to_global(np.asarray(jnp.asarray(latitude_weights(src.lat))), lat_sharding(mesh))  # across processes
    steps_per_epoch = max(1, len(train_ids) // config.batch_size)

    def get_batch(i: int) -> dict:
        epoch, j = divmod(i, steps_per_epoch)
        perm = np.random.default_rng([config.seed, epoch]).permutation(train_ids)
        ids = perm[j * config.batch_size:(j + 1) * config.batch_size]
        return {"state": global_batch(src, ids, s_shard), "target": global_batch(src, ids, s_shard, target=True),
                "lat_weights": lat_w}

    apply = make_apply(model, mesh)
    n_eval = (len(test_ids) // config.batch_size) * config.batch_size
    eval_ids = test_ids[:n_eval]

    scores = jax.jit(_make_scores(apply))
    names, nvar = _channel_names(src)
    std = _channel_std(src)

    def eval_fn(st: TrainState) -> dict:
        batches = ((global_batch(src, ids, s_shard), global_batch(src, ids, s_shard, target=True))
                   for ids in (eval_ids[j:j + config.batch_size] for j in range(0, n_eval, config.batch_size)))
        return _rmse_summary(scores, st.params, batches, lat_w, names, nvar, std)

    state, loop_summary = train_loop(
        state, step, get_batch, num_steps=config.num_steps, key=k_train, workdir=workdir, eval_fn=eval_fn,
        eval_every=config.eval_every, checkpoint_every=config.checkpoint_every,
        keep_checkpoints=config.keep_checkpoints, log_every=config.log_every, meter=meter, progress=progress,
        description=f"weathermixer/{config.dataset}",
    )
    # multi-step rollout from the first test states (normalised units, mean over prognostic channels)
    leads = min(config.rollout_steps, len(test_ids) - config.batch_size)
    table = []
    if leads >= 1:
        ids = test_ids[:config.batch_size]
        x0 = global_batch(src, ids, s_shard)
        truths = tuple(global_batch(src, ids + k, s_shard, target=True) for k in range(leads))

        @jax.jit
        def rollout_scores(params, x0, truths):
            fc = rollout(apply, params, x0, leads)
            return ([jnp.mean(weighted_rmse(fc[k], t, lat_w)[:nvar]) for k, t in enumerate(truths)],
                    [jnp.mean(weighted_rmse(x0, t, lat_w)[:nvar]) for t in truths])

        r_model, r_pers = rollout_scores(state.params, x0, truths)
        for k in range(leads):
            table.append({"lead_steps": k + 1, "rmse_model": float(r_model[k]), "rmse_persistence": float(r_pers[k])})
    ev = loop_summary.get("eval", {})
    summary = {
        **loop_summary,
        "test_rmse": ev.get("test_rmse"),
        "persistence_rmse": ev.get("persistence_rmse"),
        "train_loss": loop_summary.get("train", {}).get("loss"),
        "mesh": dict(mesh.shape),
        "num_params": int(sum(np.size(p) for p in jax.tree.leaves(state.params))),
        "table": table,
    }
    if is_writer():  # across processes, process 0 writes the records
        plot = plot_metrics(workdir)
        if plot is not None:
            summary["plots"] = [plot.name]
        write_json(workdir / "summary.json", summary)
    return summary
