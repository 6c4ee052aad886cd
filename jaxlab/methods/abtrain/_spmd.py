"""The SPMD programs of AB-training on a ``("group", "member")`` mesh.

The data axis of ``n`` devices is split into ``G = n / group_size`` contiguous groups (mesh axis ``"group"``,
the members of a group along ``"member"``). Five programs:

* ``full_step`` (all devices): synchronous data parallelism on the full weights; params replicated, the
  batch split over every device, so XLA all-reduces the gradients over all ``n`` devices.
* ``side_step`` (one **sub-mesh program per side**): the A-groups and the B-groups train factors of
  different shapes (``a (m, r)`` vs ``b (r, n)``), so their gradient all-reduces cannot be one SPMD op.
  We compile one program for the devices of the A-groups and one for those of the B-groups rather than
  pad both to a common buffer (padding would send ``max(m, n) r`` values instead of ``m r`` or ``r n``,
  and compute both factors' gradients everywhere). Each is ``vmap`` over its groups of the same per-group
  step; the batch of a group is split over its members, so its all-reduce spans one group only. Both
  run at once on disjoint devices.
* ``sync`` (all devices, ``shard_map``): the per-group copies are averaged over groups as the sync mode
  says, hierarchically: each member reduces a ``1/group_size`` slice across groups (the inter-node part),
  then the slices are all-gathered inside the group.
* ``svd`` (all devices, ``shard_map``): the SVD of factorised layer ``l`` runs on device ``l mod n`` only
  (every device holds the same replicated weights, so computing it ``n`` times would only burn time); the
  kept rank is max-reduced over all devices (``pmax``: the owner's count wins).
* ``to_groups`` (all devices): the owner's truncated factors are broadcast (``psum`` with zeros from the
  other devices) and copied into every group's slot, with the optimiser states of the factors sliced or
  reset for the new rank.

Arrays of the AB phase carry a leading group axis sharded over ``"group"``; the per-side programs take the
slices of their groups (:func:`split_groups`) without copying, and :func:`join_groups` puts them back.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlab.core import Array, PyTree
from jaxlab.parallel import shard_map

from ._factors import SVD, Factors, compose, factors_from_svd, svd, truncation_rank
from ._models import ModelDef, classification_loss
from ._params import FlatParams, Layout, init_opt, join_factors, opt_update, resize_state

GROUP, MEMBER = "group", "member"
SYNC_MODES = ("full", "with-stale", "only-learned", "only-b")


class FullState(NamedTuple):
    """State of the full-rank phases (replicated): step, full-form params and their per-leaf optimiser states."""

    step: Array
    params: FlatParams
    opt: dict[str, PyTree]
    model_state: dict


class GroupState(NamedTuple):
    """State of an AB phase: every leaf has a leading group axis. ``params`` and ``opt`` by leaf key
    (``path``, ``path.a``, ``path.b``); ``opt`` holds the leaves some side trains."""

    params: dict[str, Array]
    opt: dict[str, PyTree]
    model_state: dict


@dataclasses.dataclass(frozen=True)
class Plan:
    """Static description of the groups, the sides and which leaves they train.

    Attributes:
      layout: factorised kernels.
      num_groups: ``G``.
      group_size: devices per group.
      sync_mode: ``full``, ``with-stale``, ``only-learned`` or ``only-b``.
      sides: ``(side, groups)``: ``("a", first half), ("b", second half)``; ``only-b`` (or a single group)
        has only ``"b"`` (all groups), and the ``a`` factors stay constant.
    """

    layout: Layout
    num_groups: int
    group_size: int
    sync_mode: str
    sides: tuple[tuple[str, tuple[int, ...]], ...]

    @classmethod
    def create(cls, layout: Layout, num_groups: int, group_size: int, sync_mode: str) -> "Plan":
        if sync_mode not in SYNC_MODES:
            raise ValueError(f"sync_mode must be one of {SYNC_MODES}, got {sync_mode!r}")
        half = num_groups // 2
        if sync_mode == "only-b" or half == 0:
            sides = (("b", tuple(range(num_groups))),)
        else:
            sides = (("a", tuple(range(half))), ("b", tuple(range(half, num_groups))))
        return cls(layout, num_groups, group_size, sync_mode, sides)

    @property
    def trained(self) -> tuple[str, ...]:
        return tuple(s for s, _ in self.sides)

    @property
    def sigma(self) -> str:
        """How ``S`` is split: ``"b"`` (``A = U``) when only ``b`` is trained, as the reference does for only-b."""
        return "split" if "a" in self.trained else "b"

    @property
    def constant_keys(self) -> tuple[str, ...]:
        return tuple(f"{p}.{f}" for p in self.layout.paths for f in "ab" if f not in self.trained)

    @property
    def varying_keys(self) -> tuple[str, ...]:
        factors = tuple(f"{p}.{f}" for p in self.layout.paths for f in "ab" if f in self.trained)
        return tuple(self.layout.full_rank) + factors

    def trainable(self, side: str) -> tuple[str, ...]:
        return tuple(self.layout.full_rank) + tuple(f"{p}.{side}" for p in self.layout.paths)

    def groups(self, side: str) -> tuple[int, ...]:
        return dict(self.sides)[side]

    def weights(self, side: str | None) -> np.ndarray:
        """Averaging weights over groups: all groups (``None``) or one side's groups."""
        gs = range(self.num_groups) if side is None else self.groups(side)
        w = np.zeros(self.num_groups, np.float32)
        w[list(gs)] = 1.0 / len(gs)
        return w


def global_mesh(devices: np.ndarray, group_size: int) -> Mesh:
    """``(G, group_size)`` mesh of contiguous groups, axes ``("group", "member")``."""
    devices = np.asarray(devices).reshape(-1)
    if group_size < 1 or len(devices) % group_size:
        raise ValueError(f"{len(devices)} devices do not split into groups of {group_size}; choose a group_size "
                         f"that divides the device count")
    return Mesh(devices.reshape(-1, group_size), (GROUP, MEMBER))


def side_mesh(mesh: Mesh, groups: tuple[int, ...]) -> Mesh:
    """The sub-mesh of ``groups`` (contiguous rows of ``mesh``)."""
    return Mesh(mesh.devices[list(groups)], (GROUP, MEMBER))


def device_ids(mesh: Mesh) -> list[int]:
    """Global ids of the program's partitions, in partition order."""
    return [int(d.id) for d in mesh.devices.flat]


# ----------------------------------------------------------------------------------------------- shardings

def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def grouped(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(GROUP))


def batch_sharding(mesh: Mesh, *, per_group: bool) -> NamedSharding:
    """``(G, b, ...)`` split over groups then members, or ``(B, ...)`` split over all devices."""
    return NamedSharding(mesh, P(GROUP, MEMBER) if per_group else P((GROUP, MEMBER)))


def split_groups(tree: PyTree, mesh: Mesh, groups: tuple[int, ...]) -> PyTree:
    """The ``groups`` slices of ``(G, ...)`` arrays sharded over ``mesh``'s group axis, as arrays of the side
    mesh (no copy: the side arrays are the same device buffers)."""
    sub = side_mesh(mesh, groups)
    want = {d for d in sub.devices.flat}
    sharding = grouped(sub)

    def take(x):
        shards = [s.data for s in x.addressable_shards if s.device in want]
        return jax.make_array_from_single_device_arrays((len(groups), *x.shape[1:]), sharding, shards)

    return jax.tree.map(take, tree)


def join_groups(parts: list[PyTree], mesh: Mesh) -> PyTree:
    """Inverse of :func:`split_groups`: the sides' ``(G_s, ...)`` arrays as ``(G, ...)`` arrays of ``mesh``."""
    sharding = grouped(mesh)
    g = mesh.shape[GROUP]

    def put(*xs):
        shards = [s.data for x in xs for s in x.addressable_shards]
        return jax.make_array_from_single_device_arrays((g, *xs[0].shape[1:]), sharding, shards)

    return jax.tree.map(put, *parts)


def on_mesh(tree: PyTree, mesh: Mesh) -> PyTree:
    """Replicated arrays of a bigger mesh viewed as replicated arrays of the sub-mesh ``mesh`` (no copy)."""
    want = {d for d in mesh.devices.flat}
    sharding = replicated(mesh)

    def take(x):
        shards = [s.data for s in x.addressable_shards if s.device in want]
        return jax.make_array_from_single_device_arrays(x.shape, sharding, shards)

    return jax.tree.map(take, tree)


# ----------------------------------------------------------------------------------------------- steps

def _loss(model: ModelDef, layout: Layout, label_smoothing: float):
    def loss_fn(params: FlatParams, model_state, x, y, key):
        logits, new_ms = model.apply(params, model_state, x, layout=layout, train=True, key=key)
        loss, metrics = classification_loss(logits, y, label_smoothing=label_smoothing)
        return loss, (metrics, new_ms)

    return loss_fn


def make_full_step(model: ModelDef, layout: Layout, tx: optax.GradientTransformation, *,
                   clip_norm: float | None, label_smoothing: float) -> Callable:
    """``step(state: FullState, x, y, key, lr) -> (state, metrics)``: every full-form leaf is trained."""
    loss_fn = _loss(model, layout, label_smoothing)

    def step(state: FullState, x, y, key, lr):
        def f(params):
            return loss_fn(params, state.model_state, x, y, key)

        (loss, (metrics, model_state)), grads = jax.value_and_grad(f, has_aux=True)(state.params)
        params, opt = opt_update(tx, grads, state.opt, state.params, lr, clip_norm=clip_norm)
        return FullState(state.step + 1, params, opt, model_state), {"loss": loss, **metrics}

    return step


def make_side_step(model: ModelDef, plan: Plan, side: str, tx: optax.GradientTransformation, *,
                   clip_norm: float | None, label_smoothing: float) -> Callable:
    """``step(state: GroupState, constants, x, y, key, lr) -> (state, metrics)`` for one side's groups.

    ``x``: ``(G_s, b, ...)``; group ``g`` draws its dropout from ``fold_in(key, g)`` (global group index).
    """
    loss_fn = _loss(model, plan.layout, label_smoothing)
    trainable = plan.trainable(side)
    offset = plan.groups(side)[0]

    def one(params, opt, model_state, x, y, gid, constants, key, lr):
        everything = {**params, **constants}
        train = {k: everything[k] for k in trainable}

        def f(train):
            return loss_fn(join_factors({**everything, **train}), model_state, x, y, jax.random.fold_in(key, gid))

        (loss, (metrics, model_state)), grads = jax.value_and_grad(f, has_aux=True)(train)
        new, new_opt = opt_update(tx, grads, {k: opt[k] for k in trainable}, train, lr, clip_norm=clip_norm)
        return {**params, **new}, {**opt, **new_opt}, model_state, {"loss": loss, **metrics}

    def step(state: GroupState, constants, x, y, key, lr):
        gids = offset + jnp.arange(x.shape[0], dtype=jnp.int32)
        params, opt, ms, metrics = jax.vmap(one, in_axes=(0, 0, 0, 0, 0, 0, None, None, None))(
            state.params, state.opt, state.model_state, x, y, gids, constants, key, lr)
        return GroupState(params, opt, ms), metrics

    return step


# ----------------------------------------------------------------------------------------------- collectives

def _group_mean(x: Array, w: Array, group_size: int) -> Array:
    """Inside shard_map: ``sum_g w[g] x_g`` over the group axis, replicated; hierarchical (see module doc)."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        return lax.pmax(x, GROUP)
    flat = x.reshape(-1)
    n = flat.shape[0]
    k = -(-n // group_size)
    flat = jnp.pad(flat, (0, k * group_size - n))
    mine = lax.dynamic_slice(flat, (lax.axis_index(MEMBER) * k,), (k,))
    red = lax.psum(mine * w[lax.axis_index(GROUP)].astype(mine.dtype), GROUP)
    return lax.all_gather(red, MEMBER, tiled=True, to="invarying")[:n].reshape(x.shape)


def make_sync(plan: Plan, mesh: Mesh) -> Callable:
    """``sync(groups: GroupState, parked_w, constants, step) -> (FullState, parked factor states)``.

    Per sync mode (``w_all``: every group, ``w_a`` / ``w_b``: that side's groups):

    * ``with-stale``: ``A = mean_all(A)``, ``B = mean_all(B)`` (the frozen copies count), ``W = A B``;
    * ``only-learned``: ``A = mean_a(A)``, ``B = mean_b(B)``, ``W = A B``;
    * ``only-b``: ``B = mean_all(B)``, ``A`` is constant, ``W = A B``;
    * ``full``: ``W = mean_all(A_g B_g)``.

    Full-rank leaves, BatchNorm statistics and their optimiser states are averaged over all groups (Adam
    counts: max). The factors' optimiser states stay with their group (returned with the group axis, not
    communicated: each group resizes its own at the next truncation, as every rank of the reference keeps its
    own). The full weights' optimiser states (``parked_w``, unused in the AB phase) pass through.
    """
    layout, gsz = plan.layout, plan.group_size
    w_all = jnp.asarray(plan.weights(None))
    w_side = {s: jnp.asarray(plan.weights(s)) for s in plan.trained}

    def local(groups: GroupState, parked_w, constants, step):
        params = {k: v[0] for k, v in groups.params.items()}
        opt = jax.tree.map(lambda v: v[0], groups.opt)
        ms = jax.tree.map(lambda v: _group_mean(v[0], w_all, gsz), groups.model_state)
        full = {k: _group_mean(params[k], w_all, gsz) for k in layout.full_rank}
        for p in layout.paths:
            a = params.get(f"{p}.a", constants.get(f"{p}.a"))
            b = params[f"{p}.b"]
            if plan.sync_mode == "full":
                full[p] = _group_mean(compose(Factors(a, b), layout.shape(p)), w_all, gsz)
                continue
            if plan.sync_mode == "only-learned":
                a = _group_mean(a, w_side["a"], gsz) if "a" in plan.trained else a
                b = _group_mean(b, w_side["b"], gsz)
            else:  # with-stale, only-b: everyone's copy counts
                a = _group_mean(a, w_all, gsz) if f"{p}.a" in params else a
                b = _group_mean(b, w_all, gsz)
            full[p] = compose(Factors(a, b), layout.shape(p))
        full_opt = {k: jax.tree.map(lambda v: _group_mean(v, w_all, gsz), opt[k]) for k in layout.full_rank}
        full_opt.update(parked_w)
        parked = {k: v for k, v in groups.opt.items() if k not in layout.full_rank}  # local blocks, group axis kept
        return FullState(step, full, full_opt, ms), parked

    in_specs = (GroupState(P(GROUP), P(GROUP), P(GROUP)), P(), P(), P())
    return shard_map(local, mesh=mesh, in_specs=in_specs, out_specs=(P(), P(GROUP)))


def make_svd(plan: Plan, mesh: Mesh, tau: float) -> Callable:
    """``svd(full_params) -> (usv, counts)``: ``usv[path]`` is an :class:`SVD` with a leading device axis (the
    owner's SVD, zeros elsewhere); ``counts[path]`` the kept rank ``#{s_i > tau s_1}``, max-reduced."""
    layout = plan.layout
    n_dev = mesh.size

    def local(params):
        me = lax.axis_index(GROUP) * plan.group_size + lax.axis_index(MEMBER)
        usv, counts = {}, {}
        for i, p in enumerate(layout.paths):
            w = params[p]
            shapes = jax.eval_shape(svd, w)

            def zeros(w, shapes=shapes):
                return SVD(*(jnp.zeros(s.shape, s.dtype) for s in shapes))

            out = lax.cond(me == i % n_dev, svd, zeros, w)
            usv[p] = SVD(*(x[None] for x in out))
            count = jnp.where(me == i % n_dev, truncation_rank(out.s, tau), 0)
            counts[p] = lax.pmax(count, (GROUP, MEMBER))
        return usv, counts

    return shard_map(local, mesh=mesh, in_specs=(P(),), out_specs=(P((GROUP, MEMBER)), P()))


def make_to_groups(plan: Plan, mesh: Mesh, ranks: dict[str, int], tx: optax.GradientTransformation, *,
                   reset: bool, first: bool) -> Callable:
    """``to_groups(full: FullState, usv, parked_factors) -> (GroupState, parked_w, constants)``.

    The factors of rank ``ranks[path]`` come from the owner's SVD (``psum`` broadcast). Their optimiser states
    are fresh on the first decomposition (``first``), else each group's parked ones (group axis) resized
    (sliced/zero-padded, or ``reset``). Everything else is copied into the ``G`` group slots (local copies: no
    communication).
    """
    layout, g = plan.layout, plan.num_groups

    def factors(usv):
        def local(usv):
            out = {}
            for p in layout.paths:
                s = SVD(*(x[0] for x in usv[p]))
                f = factors_from_svd(s, ranks[p], sigma=plan.sigma)
                out[f"{p}.a"], out[f"{p}.b"] = lax.psum((f.a, f.b), (GROUP, MEMBER))
            return out

        return shard_map(local, mesh=mesh, in_specs=(P((GROUP, MEMBER)),), out_specs=P())(usv)

    def fn(full: FullState, usv, parked):
        fac = factors(usv)
        arrays = {**{k: full.params[k] for k in layout.full_rank}, **fac}
        def spread(x):
            return jax.lax.with_sharding_constraint(jnp.broadcast_to(x[None], (g, *x.shape)), grouped(mesh))

        opt = {k: jax.tree.map(spread, full.opt[k]) for k in layout.full_rank}
        for p in layout.paths:
            for f, axis in (("a", 1), ("b", 0)):
                key = f"{p}.{f}"
                if f not in plan.trained:
                    continue
                old_shape = None if first or reset else _param_shape_of_state(parked[key])
                if old_shape is None:  # first decomposition, reset, or a stateless optimiser
                    opt[key] = jax.tree.map(spread, tx.init(fac[key]))
                else:
                    old = parked[key]  # (G, ...): every group resizes its own states
                    old_shape = old_shape[1:]
                    opt[key] = jax.vmap(lambda st, key=key, axis=axis, old_shape=old_shape: resize_state(
                        st, old_shape, fac[key], axis, reset=False, tx=tx))(old)
        varying = {k: arrays[k] for k in plan.varying_keys}
        constants = {k: arrays[k] for k in plan.constant_keys}
        groups = GroupState(jax.tree.map(spread, varying), opt, jax.tree.map(spread, full.model_state))
        parked_w = {p: full.opt[p] for p in layout.paths}
        return groups, parked_w, constants

    return fn


def _param_shape_of_state(state: PyTree) -> tuple[int, ...] | None:
    """The factor shape an optimiser state was made for: that of its largest array leaf (None: no such leaf)."""
    shapes = [tuple(x.shape) for x in jax.tree.leaves(state) if hasattr(x, "shape") and len(x.shape) >= 2]
    return max(shapes, key=math.prod) if shapes else None


def make_eval(model: ModelDef, layout: Layout) -> Callable:
    """``evaluate(params, model_state, x, y) -> (correct, loss_sum)`` (no label smoothing)."""

    def fn(params, model_state, x, y):
        logits, _ = model.apply(params, model_state, x, layout=layout, train=False)
        loss, _ = classification_loss(logits, y, label_smoothing=0.0)
        correct = jnp.sum((jnp.argmax(logits, -1) == y).astype(jnp.int32))
        return correct, loss * y.shape[0]

    return fn


def init_full_state(params: FlatParams, model_state: dict, tx: optax.GradientTransformation) -> FullState:
    return FullState(jnp.zeros((), jnp.int32), params, init_opt(tx, params), model_state)


def abstract(tree: PyTree, sharding: Any) -> PyTree:
    """``ShapeDtypeStruct``s of ``tree`` with one sharding (a restore template)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
