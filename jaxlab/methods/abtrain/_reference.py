"""A single-device loop oracle of ``ABTrainer.fit``: groups as Python lists, every SVD in NumPy float64.

It follows the same rules as the trainer (schedule events, per-leaf optimiser, per-group batch rows, the sync
modes, moments averaged over groups at a sync, factor moments kept per group and sliced or reset at a
truncation, a final sync) with none of its machinery: no meshes, no shard_map, no compiled programs. Factors
from a float64 SVD may differ from the trainer's float32 ones by the sign of a singular pair, which leaves
``A B`` and the whole trajectory of ``W`` unchanged (Adam is sign-equivariant), so compare full weights.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._factors import Factors, compose, to_matrix
from ._models import ModelDef, classification_loss
from ._params import Layout, init_opt, join_factors, opt_update, resize_state
from ._schedule import LearningRate, Schedule
from ._spmd import Plan


def _param_shape_of_state(state) -> tuple[int, ...] | None:
    shapes = [tuple(x.shape) for x in jax.tree.leaves(state) if hasattr(x, "shape") and len(x.shape) >= 2]
    return max(shapes, key=lambda s: int(np.prod(s))) if shapes else None


def _factors_reference(w: jax.Array, rank: int | None, tau: float | None, sigma: str,
                       svd_dtype=np.float64) -> tuple[np.ndarray, np.ndarray, int]:
    m = np.asarray(to_matrix(w), svd_dtype)
    if svd_dtype == np.float64:
        u, s, vt = np.linalg.svd(m, full_matrices=False)
    else:  # the trainer's float32 LAPACK SVD: the same signs of the singular pairs
        u, s, vt = (np.asarray(x, np.float64) for x in jnp.linalg.svd(jnp.asarray(m), full_matrices=False))
    r = len(s) if rank is None else rank
    if tau is not None and rank is None:
        r = max(1, int(np.sum(s > tau * s[0])))
    u, s, vt = u[:, :r], s[:r], vt[:r]
    if sigma == "split":
        a, b = u * np.sqrt(s), np.sqrt(s)[:, None] * vt
    else:  # "b"
        a, b = u, s[:, None] * vt
    return a.astype(np.float32), b.astype(np.float32), r


def train_reference(model: ModelDef, layout: Layout, params: dict, model_state: dict,
                    tx: optax.GradientTransformation, lr: LearningRate, schedule: Schedule,
                    get_batch: Callable[[int], tuple[np.ndarray, np.ndarray]], key: jax.Array, *, num_groups: int,
                    sync_mode: str, tau: float, clip_norm: float | None, label_smoothing: float,
                    on_rank_change: str = "slice", svd_dtype=np.float64) -> tuple[dict, list[dict[str, int]]]:
    """Runs the schedule; returns the final full-form params and the ranks chosen at every truncation.

    ``svd_dtype=np.float32`` takes the SVD from the same float32 LAPACK routine as the trainer: needed to compare
    runs that slice Adam moments on a rank change, whose result depends on the signs of the singular pairs.
    """
    plan = Plan.create(layout, num_groups, 1, sync_mode)
    side_of = {g: s for s, gs in plan.sides for g in gs}

    def loss_fn(p, ms, x, y, k):
        logits, new_ms = model.apply(p, ms, x, layout=layout, train=True, key=k)
        loss, _ = classification_loss(logits, y, label_smoothing=label_smoothing)
        return loss, new_ms

    grad = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))

    @jax.jit
    def group_grad(everything, train, ms, x, y, k):
        def f(train):
            return loss_fn(join_factors({**everything, **train}), ms, x, y, k)

        return jax.value_and_grad(f, has_aux=True)(train)

    update = jax.jit(lambda g, opt, p, rate: opt_update(tx, g, opt, p, rate, clip_norm=clip_norm))
    full = dict(params)
    full_opt = init_opt(tx, full)
    ms = model_state
    groups: list[dict] | None = None
    parked_w: dict = {}
    parked_f: list[dict] = [{} for _ in range(num_groups)]
    constants: dict = {}
    ranks: dict[str, int] | None = None
    history: list[dict[str, int]] = []

    def to_groups(first: bool) -> None:
        nonlocal groups, parked_w, constants, ranks, full, full_opt
        new_ranks, fac = {}, {}
        for p in layout.paths:
            a, b, r = _factors_reference(full[p], None, None if first else tau, plan.sigma, svd_dtype)
            new_ranks[p] = r
            fac[f"{p}.a"], fac[f"{p}.b"] = jnp.asarray(a), jnp.asarray(b)
        ranks = new_ranks
        history.append(dict(ranks))
        groups = []
        for g in range(num_groups):
            opt = {k: full_opt[k] for k in layout.full_rank}
            for p in layout.paths:
                for f, axis in (("a", 1), ("b", 0)):
                    k_ = f"{p}.{f}"
                    if f not in plan.trained:
                        continue
                    old = None if first or on_rank_change == "reset" else parked_f[g][k_]
                    if old is None or _param_shape_of_state(old) is None:
                        opt[k_] = tx.init(fac[k_])
                    else:
                        opt[k_] = resize_state(old, _param_shape_of_state(old), fac[k_], axis, reset=False, tx=tx)
            arrays = {**{k: full[k] for k in layout.full_rank}, **fac}
            groups.append({"params": {k: arrays[k] for k in plan.varying_keys}, "opt": opt, "ms": ms})
        constants = {k: fac[k] for k in plan.constant_keys}
        parked_w = {p: full_opt[p] for p in layout.paths}

    def mean(xs, ws):
        return jax.tree.map(lambda *v: sum(w * x for w, x in zip(ws, v) if w) if jnp.issubdtype(v[0].dtype, jnp.floating)
                            else np.max(np.stack(v), axis=0), *xs)

    def sync() -> None:
        nonlocal groups, full, full_opt, ms, parked_f, constants
        w_all = plan.weights(None)
        w_side = {s: plan.weights(s) for s in plan.trained}
        gp = [g_["params"] for g_ in groups]
        new = {k: mean([q[k] for q in gp], w_all) for k in layout.full_rank}
        for p in layout.paths:
            a_list = [q.get(f"{p}.a", constants.get(f"{p}.a")) for q in gp]
            b_list = [q[f"{p}.b"] for q in gp]
            if sync_mode == "full":
                new[p] = mean([compose(Factors(a, b), layout.shape(p)) for a, b in zip(a_list, b_list)], w_all)
                continue
            if sync_mode == "only-learned":
                a = mean(a_list, w_side["a"]) if "a" in plan.trained else a_list[0]
                b = mean(b_list, w_side["b"])
            else:
                a = mean(a_list, w_all) if f"{p}.a" in gp[0] else a_list[0]
                b = mean(b_list, w_all)
            new[p] = compose(Factors(a, b), layout.shape(p))
        full_opt = {k: mean([g_["opt"][k] for g_ in groups], w_all) for k in layout.full_rank}
        full_opt.update(parked_w)
        ms = mean([g_["ms"] for g_ in groups], w_all)
        parked_f = [{k: v for k, v in g_["opt"].items() if k not in layout.full_rank} for g_ in groups]
        full, groups, constants = new, None, {}

    for t in range(schedule.total_steps):
        for ev in schedule.events(t):
            if ev == "decompose":
                to_groups(first=True)
            elif ev == "sync":
                sync()
            elif ev == "truncate":
                to_groups(first=False)
        x, y = get_batch(t)
        k = jax.random.fold_in(key, t)
        rate = np.float32(lr(t))
        if groups is None:
            (_, ms), g = grad(full, ms, x, y, k)
            full, full_opt = update(g, full_opt, full, rate)
            continue
        rows = len(x) // num_groups
        for gi, grp in enumerate(groups):
            side = side_of[gi]
            trainable = plan.trainable(side)
            everything = {**grp["params"], **constants}
            train = {k_: everything[k_] for k_ in trainable}
            (_, grp["ms"]), g = group_grad(everything, train, grp["ms"], x[gi * rows:(gi + 1) * rows],
                                           y[gi * rows:(gi + 1) * rows], jax.random.fold_in(k, gi))
            new, new_opt = update(g, {k_: grp["opt"][k_] for k_ in trainable}, train, rate)
            grp["params"] = {**grp["params"], **new}
            grp["opt"] = {**grp["opt"], **new_opt}
    if groups is not None:
        sync()
    return full, history
