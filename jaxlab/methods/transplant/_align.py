"""Baselines that fuse by averaging weights: plain averaging, OT fusion ("wts") and weight matching.

Both alignments permute each member's units (per dependency group, so that coupled residual channels move
together) to match an anchor member, then average:

- :func:`ot_perms`: OT fusion of Singh & Jaggi ("Model Fusion via Optimal Transport", arXiv 1910.05653) in
  its weight mode ("wts") with exact OT, as Neuron Transplantation's reference runs it (copied from
  sidak/otfusion: uniform marginals, Euclidean ground metric, not squared, not normalised, "past
  correction"). Layer by layer, the incoming kernels of a group, with their inputs already aligned by the
  groups before it, give the cost between the anchor's and the member's units. With equal widths and
  uniform marginals the optimal transport plan is a permutation matrix divided by ``n`` (the assignment
  polytope's vertices are permutations, Birkhoff), so ``scipy.optimize.linear_sum_assignment`` solves the
  same linear program exactly and the "correction" (multiplying the plan by ``n``) makes it that permutation.
- :func:`weight_matching_perms`: weight matching of git re-basin (Ainsworth et al., arXiv 2209.04836):
  coordinate ascent on ``sum_layers <W_anchor, P W_member P'^T>`` over all parameters, one linear
  assignment per group in random order until no group improves.

Deviations from the reference's OT: its loop walks ``named_parameters()``, so a bias would be aligned as a
layer of its own (hence its bias-free models) and the classifier's outputs, the classes, get a transport
plan of their own; here only hidden groups are aligned (the classes stay fixed), the OT cost uses the
incoming kernels only, and biases and BatchNorm vectors follow their units. Its OT step materialises an ``n x n x d``
difference tensor (22 GB for 1024 units); here the distances come from ``|a|^2 + |b|^2 - 2 a.b``. Only equal
widths are supported (the reference's correction step also assumes them).

Residual couplings (the order of the groups). OT aligns a group from its *incoming kernels* (params arrays
whose last axis the group spans), after permuting their other unit axes, the kernel's inputs, by the groups
aligned before. In a feed-forward model the declared order of groups is such an order. A residual stream is a
cycle: the stream group's incoming kernels include every block's last convolution, which reads the block's
inner group, which reads the stream. The rule here, which the cycle forces and which follows otfusion's
treatment of skip connections (reuse the transport of the layer that feeds the stream): a kernel is *ready* when every
other group its axes span is aligned; repeatedly align the first group, in declared order, that has a ready
incoming kernel, using all of its kernels ready at that moment (the others are not used for its cost). For a
ResNet the stem's stream is aligned from the stem convolution alone (its input is the image), a later
stage's stream from the projection (shortcut) convolution that starts it, together with the last
convolution of any block whose inner groups are already aligned; each inner group then follows its block's
input stream. For a model whose declared order is feed-forward this is exactly the layer-by-layer order
with all incoming kernels, as before. A group without any incoming kernel, or groups left with no ready
kernel (every kernel reads another group still unaligned, a cycle with no input from outside), are refused
with a ValueError; weight matching has no order and handles both.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from jaxlab.core._host import host_computable, host_value

from ._concat import Member, _structure
from ._layout import Path, flatten, groups_of, is_jax, unflatten, unit_axes, view_shape


def _take_units(x, path: Path, axes, sizes, perms: Mapping[str, np.ndarray], skip: str | None = None):
    """``x`` with the units of every permuted group (except ``skip``) reordered: new unit j = old unit perm[j]."""
    todo = [(u, d) for u, d in zip(axes, view_shape(np.shape(x), axes, sizes, path)[1])
            if u.group in perms and u.group != skip]
    if not todo:
        return x
    x, back = host_value(x)
    xp = jnp if is_jax(x) else np
    shape = np.shape(x)
    v = x.reshape(view_shape(shape, axes, sizes, path)[0])
    for u, d in todo:
        v = xp.take(v, xp.asarray(perms[u.group]), axis=d)
    return back(v.reshape(shape))


def permute(config: Any, variables: Mapping, perms: Mapping[str, Sequence[int]]):
    """The same function with its units reordered: in group ``g`` new unit ``j`` is old unit ``perms[g][j]``.

    Every array axis the group spans moves together, so the model computes exactly what it did.

    Raises:
      ValueError: an unknown group or a ``perms[g]`` that is not a permutation of ``range(size)``.
    """
    groups = {g.name: g for g in groups_of(config)}
    for name, perm in perms.items():
        if name not in groups:
            raise ValueError(f"unknown group {name!r}; {type(config).__name__} declares {sorted(groups)}")
        if sorted(np.asarray(perm).tolist()) != list(range(groups[name].size)):
            raise ValueError(f"perms[{name!r}] must be a permutation of range({groups[name].size})")
    leaves, bare = flatten(variables)
    axes = unit_axes(tuple(groups.values()), leaves)
    sizes = {n: g.size for n, g in groups.items()}
    perms = {n: np.asarray(p) for n, p in perms.items()}
    return unflatten({p: _take_units(x, p, axes[p], sizes, perms) for p, x in leaves.items()}, bare)


def average(members: Sequence[Member], *, weights: Sequence[float] | None = None):
    """Weight averaging: ``(config, mean of the members' variables)`` (members of equal shapes).

    BatchNorm statistics are averaged too; recalibrate them afterwards.
    """
    _, leaves, bare, _, sizes = _structure(members)
    if any(s != sizes[0] for s in sizes):
        raise ValueError("weight averaging needs members of equal widths")
    k = len(members)
    w = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, np.float64)
    out = {}
    for path in leaves[0]:
        xs = [lv[path] for lv in leaves]
        back = lambda y: y  # noqa: E731
        if all(host_computable(x) for x in xs):  # the same products and sums, in NumPy, put back like member 0's
            (xs[0], back), xs[1:] = host_value(xs[0]), [np.asarray(x) for x in xs[1:]]
        xp = jnp if is_jax(xs[0]) else np
        dtype = xs[0].dtype
        out[path] = back(sum(xp.asarray(wi, dtype) * x for wi, x in zip(w, xs)))
    return members[0][0], unflatten(out, bare)


def _unit_rows(x, path, axes, sizes, group) -> np.ndarray:
    """``(n, -1)`` float64 rows: unit ``j`` of ``group`` owns row ``j``."""
    v = np.asarray(x, np.float64)
    shape, dims = view_shape(v.shape, axes, sizes, path)
    d = dims[[u.group for u in axes].index(group)]
    return np.moveaxis(v.reshape(shape), d, 0).reshape(sizes[group], -1)


def _pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` and ``b`` (``|a|^2 + |b|^2 - 2 a.b``, clipped at 0)."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(sq, 0.0))


def _check_pair(config, anchor, other):
    groups = groups_of(config)
    la, bare = flatten(anchor)
    lb, _ = flatten(other)
    if set(la) != set(lb) or any(np.shape(la[p]) != np.shape(lb[p]) for p in la):
        raise ValueError("alignment needs two models of equal shapes (equal widths)")
    axes = unit_axes(groups, la)
    sizes = {g.name: g.size for g in groups}
    return groups, la, lb, axes, sizes


def _incoming_kernels(group, la, axes) -> list[Path]:
    """The params arrays (at least 2-D) whose last axis ``group`` spans: what OT reads to align it."""
    out = []
    for ax in group.axes:
        path = ax.path
        if path not in la or path[0] != "params" or np.ndim(la[path]) < 2:
            continue
        ua = axes[path]
        if ua[-1].group == group.name and ua[-1].axis == np.ndim(la[path]) - 1:
            out.append(path)
    return out


def _unaligned_inputs(path: Path, group: str, axes, perms) -> list[str]:
    """The groups other than ``group`` that kernel ``path`` spans and that are not aligned yet."""
    return [u.group for u in axes[path] if u.group != group and u.group not in perms]


def ot_perms(config: Any, anchor: Mapping, other: Mapping) -> dict[str, np.ndarray]:
    """OT fusion's ("wts", exact) alignment of ``other`` to ``anchor``: a permutation per group.

    ``permute(config, other, ot_perms(config, anchor, other))`` is ``other`` aligned unit by unit to ``anchor``.
    Groups are aligned in the order of the module docstring (feed-forward: declared order; a residual
    stream from the kernel that feeds it, e.g. a ResNet's stem or shortcut convolution).

    Raises:
      ValueError: a group without an incoming kernel, or groups none of whose incoming kernels can be
        aligned because each also reads another group still unaligned (use :func:`weight_matching_perms`).
    """
    groups, la, lb, axes, sizes = _check_pair(config, anchor, other)
    incoming = {g.name: _incoming_kernels(g, la, axes) for g in groups}
    for g in groups:
        if not incoming[g.name]:
            raise ValueError(f"group {g.name!r} has no incoming kernel (an array of params whose last axis it "
                             "spans); OT fusion cannot align it")
    perms: dict[str, np.ndarray] = {}
    while len(perms) < len(groups):
        todo = [g for g in groups if g.name not in perms]
        choices = ((g, [p for p in incoming[g.name] if not _unaligned_inputs(p, g.name, axes, perms)])
                   for g in todo)
        g, ready = next(((g, r) for g, r in choices if r), (todo[0], []))
        if not ready:
            p = incoming[g.name][0]
            raise ValueError(
                f"OT fusion ('wts') aligns a group from incoming kernels whose other inputs are aligned, but "
                f"every incoming kernel of the unaligned groups {[t.name for t in todo]} reads one of them "
                f"(e.g. {'/'.join(p)} of {g.name!r} reads {_unaligned_inputs(p, g.name, axes, perms)[0]!r}): "
                "a cycle with no input from outside; use weight_matching_perms for this model")
        rows_a, rows_b = [], []
        for path in ready:
            ua = axes[path]
            b = _take_units(np.asarray(lb[path]), path, ua, sizes, perms, skip=g.name)
            rows_a.append(_unit_rows(la[path], path, ua, sizes, g.name))
            rows_b.append(_unit_rows(b, path, ua, sizes, g.name))
        cost = _pairwise_distances(np.concatenate(rows_a, 1), np.concatenate(rows_b, 1))
        _, cols = linear_sum_assignment(cost)
        perms[g.name] = cols
    return {g.name: perms[g.name] for g in groups}


def weight_matching_perms(config: Any, anchor: Mapping, other: Mapping, *, max_iter: int = 100,
                          seed: int = 0) -> dict[str, np.ndarray]:
    """Weight matching (git re-basin) of ``other`` to ``anchor``: a permutation per group.

    Args:
      max_iter: sweeps over all groups at most (stops earlier when no group improves).
      seed: order of the groups within a sweep (NumPy generator).
    """
    groups, la, lb, axes, sizes = _check_pair(config, anchor, other)
    perms = {g.name: np.arange(g.size) for g in groups}
    rng = np.random.default_rng(seed)
    for _ in range(max_iter):
        improved = False
        for gi in rng.permutation(len(groups)):
            g = groups[gi]
            score = np.zeros((g.size, g.size))
            for ax in g.axes:
                if ax.path not in la or ax.path[0] != "params":
                    continue
                ua = axes[ax.path]
                b = _take_units(np.asarray(lb[ax.path]), ax.path, ua, sizes, perms, skip=g.name)
                score += _unit_rows(la[ax.path], ax.path, ua, sizes, g.name) @ \
                    _unit_rows(b, ax.path, ua, sizes, g.name).T
            _, cols = linear_sum_assignment(score, maximize=True)
            old = score[np.arange(g.size), perms[g.name]].sum()
            new = score[np.arange(g.size), cols].sum()
            if new > old + 1e-12 * max(1.0, abs(old)):
                improved = True
                perms[g.name] = cols
        if not improved:
            break
    return perms


def _align_and_average(members: Sequence[Member], anchor: int, align) -> tuple[Any, Any]:
    _structure(members)
    if not 0 <= anchor < len(members):
        raise ValueError(f"anchor must index a member (0..{len(members) - 1}), got {anchor}")
    config, ref = members[anchor]
    aligned = [(config, ref if i == anchor else permute(config, v, align(config, ref, v)))
               for i, (_, v) in enumerate(members)]
    return average(aligned)


def ot_fusion(members: Sequence[Member], *, anchor: int = 0):
    """OT fusion ("wts", exact): every member aligned to ``members[anchor]`` by :func:`ot_perms`, then averaged.

    As the reference's multi-model version: each member is aligned to the anchor, and all are averaged with
    equal weights. Recalibrate BatchNorm afterwards.

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> from jaxlab.nn import MLP
      >>> cfg, x = MLP(features=(6, 3), use_bias=False), jnp.ones((2, 4), jnp.float32)
      >>> v = cfg.init(jax.random.key(0), x)
      >>> shuffled = permute(cfg, v, {"dense_0": np.array([2, 0, 1, 5, 4, 3])})
      >>> _, fused = ot_fusion([(cfg, v), (cfg, shuffled)])
      >>> bool(np.allclose(fused["params"]["dense_0"]["kernel"], v["params"]["dense_0"]["kernel"]))
      True
    """
    return _align_and_average(members, anchor, ot_perms)


def weight_matching(members: Sequence[Member], *, anchor: int = 0, max_iter: int = 100, seed: int = 0):
    """Weight matching (git re-basin): every member aligned to ``members[anchor]``, then averaged."""
    return _align_and_average(
        members, anchor, lambda c, a, b: weight_matching_perms(c, a, b, max_iter=max_iter, seed=seed))
