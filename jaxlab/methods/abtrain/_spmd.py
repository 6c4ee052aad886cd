"""The SPMD programs of AB-training on a ``("group", "member")`` mesh.

The data axis of ``n`` devices is split into ``G = n / group_size`` contiguous groups (mesh axis ``"group"``,
the members of a group along ``"member"``). Five programs:

* ``full_step`` (all devices): synchronous data parallelism on the full weights with a sharded optimiser
  (ZeRO-1): params replicated, the batch split over every device, gradients reduce-scattered over the members
  of a group (intra-node), all-reduced across groups (inter-node, ``1/group_size`` of them per device), the
  optimiser updates its slice, and the new params are all-gathered over the members (intra-node): a
  hierarchical all-reduce, with each device keeping ``1/group_size`` of the optimiser state.
* ``side_step`` (one **sub-mesh program per side**): the A-groups and the B-groups train factors of
  different shapes (``a (m, r)`` vs ``b (r, n)``), so their gradient all-reduces cannot be one SPMD op.
  We compile one program for the devices of the A-groups and one for those of the B-groups rather than
  pad both to a common buffer (padding would send ``max(m, n) r`` values instead of ``m r`` or ``r n``,
  and compute both factors' gradients everywhere). Each device runs the step of its own group; gradients
  are reduce-scattered and params all-gathered over the group's members only (groups of ``group_size``).
  Both sides run at once on disjoint devices.
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

Optimiser states are per leaf (``_params``) and sharded: every array of a leaf's state is kept flat, padded to
a multiple of ``group_size`` and split over ``"member"`` (replicated across groups in the full phases, one copy
per group in the AB phases). Scalars (Adam's count) are replicated.

Deviation: BatchNorm normalises with per-device batch statistics (``jaxlab.nn``'s VGG and ResNet take no
``axis_name``, so there is no SyncBatchNorm); the running averages are averaged over the reducing devices at
every step.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlab.core import Array, PyTree
from jaxlab.parallel import shard_map

from ._factors import (
    SVD,
    Factors,
    compose,
    factors_from_svd,
    matrix_shape,
    svd,
    truncation_rank,
)
from ._models import ModelDef, classification_loss
from ._params import FlatParams, Layout, join_factors, resize_state

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
    def create(cls, layout: Layout, num_groups: int, group_size: int, sync_mode: str) -> Plan:
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


def opt_specs(tree: PyTree, *, grouped: bool) -> PyTree:
    """Specs of optimiser states: flat arrays over ``member`` (and ``group``), scalars replicated (or per group)."""
    def spec(x):
        dims = len(x.shape) - (1 if grouped else 0)
        if dims >= 1:
            return P(GROUP, MEMBER) if grouped else P(MEMBER)
        return P(GROUP) if grouped else P()

    return jax.tree.map(spec, tree)


def full_specs(state: FullState) -> FullState:
    return FullState(P(), P(), opt_specs(state.opt, grouped=False), P())


def group_specs(state: GroupState) -> GroupState:
    return GroupState(P(GROUP), opt_specs(state.opt, grouped=True), P(GROUP))


def shardings(mesh: Mesh, specs: PyTree, tree: PyTree) -> PyTree:
    """``NamedSharding``s of ``specs`` (a prefix of ``tree``) for every leaf of ``tree``."""
    def expand(spec, sub):
        return jax.tree.map(lambda _: NamedSharding(mesh, spec), sub)

    return jax.tree.map(expand, specs, tree, is_leaf=lambda x: isinstance(x, P))


def split_groups(state: GroupState, mesh: Mesh, groups: tuple[int, ...]) -> GroupState:
    """The ``groups`` slices of a group-stacked state of ``mesh`` as a state of the side mesh (no copy: the side
    arrays are the same device buffers)."""
    sub = side_mesh(mesh, groups)
    want = {d for d in sub.devices.flat}
    specs = shardings(sub, group_specs(state), state)

    def take(x, sharding):
        shards = [s.data for s in x.addressable_shards if s.device in want]
        return jax.make_array_from_single_device_arrays((len(groups), *x.shape[1:]), sharding, shards)

    return jax.tree.map(take, state, specs)


def join_groups(parts: list[GroupState], mesh: Mesh) -> GroupState:
    """Inverse of :func:`split_groups`: the sides' states as one group-stacked state of ``mesh``."""
    g = mesh.shape[GROUP]
    specs = shardings(mesh, group_specs(parts[0]), parts[0])

    def put(sharding, *xs):
        shards = [s.data for x in xs for s in x.addressable_shards]
        return jax.make_array_from_single_device_arrays((g, *xs[0].shape[1:]), sharding, shards)

    return jax.tree.map(put, specs, *parts)


def on_mesh(tree: PyTree, mesh: Mesh) -> PyTree:
    """Replicated arrays of a bigger mesh viewed as replicated arrays of the sub-mesh ``mesh`` (no copy)."""
    want = {d for d in mesh.devices.flat}
    sharding = replicated(mesh)

    def take(x):
        shards = [s.data for s in x.addressable_shards if s.device in want]
        return jax.make_array_from_single_device_arrays(x.shape, sharding, shards)

    return jax.tree.map(take, tree)


# ----------------------------------------------------------------------------------------------- sharded optimiser

def flat_len(shape: tuple[int, ...], d: int) -> int:
    """Length of a leaf flattened and padded to a multiple of ``d``."""
    n = math.prod(shape)
    return -(-n // d) * d


def flat_pad(x: Array, length: int) -> Array:
    flat = x.reshape(-1)
    return jnp.pad(flat, (0, length - flat.shape[0]))


def member_block(flat: Array, d: int) -> Array:
    """Inside shard_map: this member's ``1/d`` of a flat array."""
    k = flat.shape[0] // d
    return lax.dynamic_slice(flat, (lax.axis_index(MEMBER) * k,), (k,))


def gather_blocks(block: Array, shape: tuple[int, ...]) -> Array:
    """Inside shard_map: the members' blocks all-gathered, unpadded and reshaped (the same on every member)."""
    return lax.all_gather(block, MEMBER, tiled=True, to="invarying")[:math.prod(shape)].reshape(shape)


def init_opt_flat(tx: optax.GradientTransformation, shape: tuple[int, ...], d: int) -> PyTree:
    """A leaf's optimiser state in the flat layout (the full flat arrays; shard them over ``member``)."""
    return tx.init(jnp.zeros((flat_len(shape, d),), jnp.float32))


def sharded_update(tx: optax.GradientTransformation, grads: dict[str, Array], opt: dict[str, PyTree],
                   params: dict[str, Array], lr: Array, *, d: int, count: int, over_groups: bool,
                   clip_norm: float | None) -> tuple[dict[str, Array], dict[str, PyTree]]:
    """Inside shard_map: one ZeRO-1 step of the leaves in ``grads`` (each device's local mean gradient).

    Reduce-scatter over the members (and all-reduce the slices across groups when ``over_groups``), divide by
    the number of devices ``count``, clip by the global norm (as ``optax.clip_by_global_norm``), update this
    member's slice with ``tx`` and ``-lr``, all-gather the new params over the members.
    """
    slices = {}
    for k, g in grads.items():
        s = lax.psum_scatter(flat_pad(g, flat_len(g.shape, d)), MEMBER, tiled=True)
        if over_groups:
            s = lax.psum(s, GROUP)
        slices[k] = s / count
    if clip_norm is not None:
        norm = jnp.sqrt(lax.psum(sum(jnp.sum(s * s) for s in slices.values()), MEMBER))
        slices = {k: jnp.where(norm < clip_norm, s, (s / norm.astype(s.dtype)) * clip_norm) for k, s in slices.items()}
    new_p, new_s = {}, {}
    for k, g in slices.items():
        p_block = member_block(flat_pad(params[k], flat_len(params[k].shape, d)), d)
        u, new_s[k] = tx.update(g, opt[k], p_block)
        u, _ = optax.scale_by_learning_rate(lr).update(u, optax.EmptyState())
        new_p[k] = gather_blocks(optax.apply_updates(p_block, u), params[k].shape)
    return new_p, new_s


def _varying(tree: PyTree, axes) -> PyTree:
    """Marks replicated values as per-device, so that their gradients stay local (no implicit ``psum``) and the
    reduction is the explicit reduce-scatter of :func:`sharded_update`."""
    cast = (lambda x: lax.pcast(x, axes, to="varying")) if hasattr(lax, "pcast") else (lambda x: lax.pvary(x, axes))
    return jax.tree.map(cast, tree)


def _pmean_floats(tree: PyTree, axes) -> PyTree:
    return jax.tree.map(lambda v: lax.pmean(v, axes) if jnp.issubdtype(v.dtype, jnp.floating) else v, tree)


# ----------------------------------------------------------------------------------------------- steps

def _loss(model: ModelDef, layout: Layout, label_smoothing: float):
    def loss_fn(params: FlatParams, model_state, x, y, key):
        logits, new_ms = model.apply(params, model_state, x, layout=layout, train=True, key=key)
        loss, metrics = classification_loss(logits, y, label_smoothing=label_smoothing)
        return loss, (metrics, new_ms)

    return loss_fn


def make_full_step(model: ModelDef, layout: Layout, tx: optax.GradientTransformation, mesh: Mesh, *,
                   clip_norm: float | None, label_smoothing: float) -> Callable:
    """``step(state: FullState, x, y, key, lr) -> (state, metrics)``: data parallelism, every full-form leaf trained.

    Device ``i`` draws its dropout from ``fold_in(key, i)``.
    """
    loss_fn = _loss(model, layout, label_smoothing)
    d, n = mesh.shape[MEMBER], mesh.size

    def local(state: FullState, x, y, key, lr):
        me = lax.axis_index(GROUP) * d + lax.axis_index(MEMBER)

        def f(params):
            return loss_fn(params, state.model_state, x, y, jax.random.fold_in(key, me))

        (loss, (metrics, model_state)), grads = jax.value_and_grad(f, has_aux=True)(
            _varying(state.params, (GROUP, MEMBER)))
        params, opt = sharded_update(tx, grads, state.opt, state.params, lr, d=d, count=n, over_groups=True,
                                     clip_norm=clip_norm)
        model_state = _pmean_floats(model_state, (GROUP, MEMBER))
        metrics = lax.pmean({"loss": loss, **metrics}, (GROUP, MEMBER))
        return FullState(state.step + 1, params, opt, model_state), metrics

    def step(state: FullState, x, y, key, lr):
        specs = full_specs(state)
        batch = P((GROUP, MEMBER))
        return shard_map(local, mesh=mesh, in_specs=(specs, batch, batch, P(), P()),
                         out_specs=(specs, P()))(state, x, y, key, lr)

    return step


def make_side_step(model: ModelDef, plan: Plan, side: str, tx: optax.GradientTransformation, mesh: Mesh, *,
                   clip_norm: float | None, label_smoothing: float) -> Callable:
    """``step(state: GroupState, constants, x, y, key, lr) -> (state, metrics)`` for one side's groups on their
    sub-mesh ``mesh``; ``x``: ``(G_s, b, ...)``. Device ``i`` (global index) draws dropout from ``fold_in(key, i)``."""
    loss_fn = _loss(model, plan.layout, label_smoothing)
    trainable = plan.trainable(side)
    offset = plan.groups(side)[0]
    d = plan.group_size

    def local(state: GroupState, constants, x, y, key, lr):
        params = {k: v[0] for k, v in state.params.items()}
        opt = jax.tree.map(lambda v: v[0], state.opt)
        ms = jax.tree.map(lambda v: v[0], state.model_state)
        me = (offset + lax.axis_index(GROUP)) * d + lax.axis_index(MEMBER)
        everything = {**params, **constants}
        train = {k: everything[k] for k in trainable}

        def f(train):
            return loss_fn(join_factors({**everything, **train}), ms, x[0], y[0], jax.random.fold_in(key, me))

        (loss, (metrics, ms)), grads = jax.value_and_grad(f, has_aux=True)(_varying(train, MEMBER))
        new, new_opt = sharded_update(tx, grads, {k: opt[k] for k in trainable}, train, lr, d=d, count=d,
                                      over_groups=False, clip_norm=clip_norm)
        ms = _pmean_floats(ms, MEMBER)
        metrics = lax.pmean({"loss": loss, **metrics}, MEMBER)
        out = GroupState({k: v[None] for k, v in {**params, **new}.items()},
                         jax.tree.map(lambda v: v[None], {**opt, **new_opt}), jax.tree.map(lambda v: v[None], ms))
        return out, jax.tree.map(lambda v: v[None], metrics)

    def step(state: GroupState, constants, x, y, key, lr):
        specs = group_specs(state)
        batch = P(GROUP, MEMBER)
        return shard_map(local, mesh=mesh, in_specs=(specs, P(), batch, batch, P(), P()),
                         out_specs=(specs, P(GROUP)))(state, constants, x, y, key, lr)

    return step


# ----------------------------------------------------------------------------------------------- sync, svd, to_groups

def _group_mean(x: Array, w: Array | np.ndarray, group_size: int) -> Array:
    """Inside shard_map: ``sum_g w[g] x_g`` of a full array over the group axis, replicated; hierarchical: each
    member reduces its ``1/group_size`` slice across groups, then the slices are all-gathered in the group."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        return lax.pmax(x, GROUP)
    flat = flat_pad(x, flat_len(x.shape, group_size))
    red = lax.psum(member_block(flat, group_size) * jnp.asarray(w)[lax.axis_index(GROUP)].astype(x.dtype), GROUP)
    return gather_blocks(red, x.shape)


def _block_mean(x: Array, w: Array | np.ndarray) -> Array:
    """Inside shard_map: ``sum_g w[g] x_g`` of a member-sharded block (optimiser state) across groups."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        return lax.pmax(x, GROUP)
    return lax.psum(x * jnp.asarray(w)[lax.axis_index(GROUP)].astype(x.dtype), GROUP)


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
    w_all = plan.weights(None)  # NumPy: constants of the program
    w_side = {s: plan.weights(s) for s in plan.trained}

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
        full_opt = {k: jax.tree.map(lambda v: _block_mean(v, w_all), opt[k]) for k in layout.full_rank}
        full_opt.update(parked_w)
        parked = {k: v for k, v in groups.opt.items() if k not in layout.full_rank}  # local blocks, group axis kept
        return FullState(step, full, full_opt, ms), parked

    def sync(groups: GroupState, parked_w, constants, step):
        full_opt = {**{k: jax.tree.map(lambda v: v[0], groups.opt[k]) for k in layout.full_rank}, **parked_w}
        parked = {k: v for k, v in groups.opt.items() if k not in layout.full_rank}
        out_full = FullState(P(), P(), opt_specs(full_opt, grouped=False), P())
        in_specs = (group_specs(groups), opt_specs(parked_w, grouped=False), P(), P())
        return shard_map(local, mesh=mesh, in_specs=in_specs,
                         out_specs=(out_full, opt_specs(parked, grouped=True)))(groups, parked_w, constants, step)

    return sync


def make_svd(plan: Plan, mesh: Mesh, tau: float) -> Callable:
    """``svd(full_params) -> (usv, counts)``, without collectives: ``usv[path]`` is an :class:`SVD` with a leading
    device axis (the owner's SVD, zeros elsewhere), ``counts[path]`` the owner's kept rank ``#{s_i > tau s_1}`` (0
    elsewhere), also per device. :func:`make_cut` max-reduces the counts; the trainer waits for this program
    first, so that no device waits inside a collective while an owner computes its SVD."""
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
            counts[p] = jnp.where(me == i % n_dev, truncation_rank(out.s, tau), 0)[None]
        return usv, counts

    return shard_map(local, mesh=mesh, in_specs=(P(),), out_specs=(P((GROUP, MEMBER)), P((GROUP, MEMBER))))


def make_cut(mesh: Mesh) -> Callable:
    """``cut(counts) -> ranks``: the per-device kept ranks max-reduced over all devices (``pmax``)."""

    def local(counts):
        return jax.tree.map(lambda c: lax.pmax(c[0], (GROUP, MEMBER)), counts)

    return shard_map(local, mesh=mesh, in_specs=(P((GROUP, MEMBER)),), out_specs=P())


def factor_shape(plan: Plan, path: str, f: str, rank: int) -> tuple[int, int]:
    m, n, _ = matrix_shape(plan.layout.shape(path))
    return (m, rank) if f == "a" else (rank, n)


def make_to_groups(plan: Plan, mesh: Mesh, ranks: dict[str, int], tx: optax.GradientTransformation, *,
                   reset: bool, old_ranks: dict[str, int] | None) -> Callable:
    """``to_groups(full: FullState, usv, parked_factors) -> (GroupState, parked_w, constants)``.

    The factors of rank ``ranks[path]`` come from the owner's SVD (``psum`` broadcast). Their optimiser states
    are fresh on the first decomposition (``old_ranks is None``) or with ``reset``; otherwise every group's
    parked states (rank ``old_ranks[path]``) are sliced or zero-padded to the new rank (``resize_state``).
    Everything else is copied into the group slots (no communication).
    """
    layout, d = plan.layout, plan.group_size

    def local(full: FullState, usv, parked):
        fac = {}
        for p in layout.paths:
            s = SVD(*(x[0] for x in usv[p]))
            f = factors_from_svd(s, ranks[p], sigma=plan.sigma)
            fac[f"{p}.a"], fac[f"{p}.b"] = lax.psum((f.a, f.b), (GROUP, MEMBER))
        arrays = {**{k: full.params[k] for k in layout.full_rank}, **fac}
        opt = {k: full.opt[k] for k in layout.full_rank}
        for p in layout.paths:
            for f, axis in (("a", 1), ("b", 0)):
                key = f"{p}.{f}"
                if f not in plan.trained:
                    continue
                new_shape = factor_shape(plan, p, f, ranks[p])
                fresh = jax.tree.map(lambda z: member_block(z, d) if z.ndim == 1 else z,
                                     init_opt_flat(tx, new_shape, d))
                if old_ranks is None or reset or not any(x.ndim >= 2 for x in jax.tree.leaves(parked[key])):
                    opt[key] = fresh
                    continue
                old_shape = factor_shape(plan, p, f, old_ranks[p])

                def unflat(block, old_shape=old_shape):
                    if block.ndim < 2:
                        return block[0]
                    return lax.all_gather(block[0], MEMBER, tiled=True)[:math.prod(old_shape)].reshape(old_shape)

                old = jax.tree.map(unflat, parked[key])
                resized = resize_state(old, old_shape, jnp.zeros(new_shape, jnp.float32), axis, reset=False, tx=tx)
                length = flat_len(new_shape, d)
                opt[key] = jax.tree.map(lambda x, length=length: member_block(flat_pad(x, length), d)
                                        if x.ndim >= 1 else x, resized)
        groups = GroupState({k: arrays[k][None] for k in plan.varying_keys},
                            jax.tree.map(lambda v: v[None], opt), jax.tree.map(lambda v: v[None], full.model_state))
        parked_w = {p: full.opt[p] for p in layout.paths}
        constants = {k: arrays[k] for k in plan.constant_keys}
        return groups, parked_w, constants

    def to_groups(full: FullState, usv, parked):
        shapes = {k: jax.tree.map(lambda x: x, full.opt[k]) for k in layout.full_rank}
        for p in layout.paths:
            for f in plan.trained:
                shape = factor_shape(plan, p, f, ranks[p])
                shapes[f"{p}.{f}"] = jax.eval_shape(lambda shape=shape: init_opt_flat(tx, shape, d))
        group_opt = jax.tree.map(lambda x: jax.ShapeDtypeStruct((1, *x.shape), x.dtype), shapes)
        out_groups = GroupState(P(GROUP), opt_specs(group_opt, grouped=True), P(GROUP))
        parked_w = {p: full.opt[p] for p in layout.paths}
        in_specs = (full_specs(full), P((GROUP, MEMBER)), opt_specs(parked, grouped=True))
        return shard_map(local, mesh=mesh, in_specs=in_specs,
                         out_specs=(out_groups, opt_specs(parked_w, grouped=False), P()))(full, usv, parked)

    return to_groups


def make_eval(model: ModelDef, layout: Layout) -> Callable:
    """``evaluate(params, model_state, x, y) -> (correct, loss_sum)`` (no label smoothing)."""

    def fn(params, model_state, x, y):
        logits, _ = model.apply(params, model_state, x, layout=layout, train=False)
        loss, _ = classification_loss(logits, y, label_smoothing=0.0)
        correct = jnp.sum((jnp.argmax(logits, -1) == y).astype(jnp.int32))
        return correct, loss * y.shape[0]

    return fn


def init_full_state(params: FlatParams, model_state: dict, tx: optax.GradientTransformation, d: int) -> FullState:
    """Step 0: the params and a fresh optimiser state per leaf in the flat layout (see the module docstring).

    One jitted program (eagerly, every leaf's ``tx.init`` compiled its zeros)."""

    def init(params, model_state):
        opt = {k: init_opt_flat(tx, tuple(v.shape), d) for k, v in params.items()}
        return FullState(jnp.zeros((), jnp.int32), params, opt, model_state)

    return jax.jit(init)(params, model_state)


def abstract(tree: PyTree, shardings_tree: PyTree) -> PyTree:
    """``ShapeDtypeStruct``s of ``tree`` with the matching shardings (a restore template)."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings_tree)
