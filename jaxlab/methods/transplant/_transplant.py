"""Transplantation: prune the wide model back to the members' width by magnitude, keeping units of any member.

The importance is torch-pruning v1.3's ``MagnitudeImportance(p=2)`` with the default mean reduction, as
the reference uses it: for each unit, the mean over the group's scored arrays of the sum of ``|w|^p``
over the unit's slice (incoming kernel columns, outgoing kernel rows, BatchNorm scale; biases and running
statistics are not scored). :func:`jaxlab.prune.group_importance` computes it on any model; here it is
computed on the wide model of :func:`concat` without building it: a wide unit's slice holds only its own
member's entries (cross-member entries are zero), scaled by ``c_i`` where it writes into the output.

Then every group keeps exactly its original width ``w`` of the ``k w`` units, ties broken by the lower
wide index (member 0 first). The reference prunes with ``pruning_ratio = 1 - 1/k`` and keeps ``w - 1``
units when ``k (1 - 1/k) w`` rounds down (k = 3, 5, 6, 7, ...), which then breaks its hierarchical
variant; torch's ``topk`` does not break ties stably either.

For members of equal width, :func:`transplant_stacked` does all of it in one jitted program on the
stacked members (leading axis ``k``): scores, the stable top-``w`` choice and the gathers. It never
materialises the wide model (``O(k^2)`` memory in its middle layers), only the fused one. Members of
unequal width go through the wide model (:func:`concat`, then :func:`jaxlab.prune.shrink`).

Deviation from the reference: ``transplant_iterative`` weights the running model by the number of members
it already holds (``weighting="members"``), so that every member counts equally in the output; the
reference's fixed 1/2 per step (``weighting="reference"``) dilutes the first members geometrically.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import prune

from ._concat import Member, _check_weights, _output_weights, _structure, concat
from ._layout import flatten, groups_of, is_output, unflatten, unit_axes, view_shape


def _widths(groups, sizes, width: Mapping[str, int] | None) -> dict[str, int]:
    out = dict(sizes[0])
    for name, w in (width or {}).items():
        if name not in out:
            raise ValueError(f"width names unknown group {name!r}; the model declares {sorted(out)}")
        out[name] = int(w)
    total = {g.name: sum(s[g.name] for s in sizes) for g in groups}
    for name, w in out.items():
        if not 1 <= w <= total[name]:
            raise ValueError(f"group {name!r} must keep between 1 and {total[name]} units, got width {w}")
    return out


# ----------------------------------------------------------------------------- the jitted core


def _spec(groups, axes, sizes0, widths, p):
    """A hashable description of the program (groups, unit axes, widths, p)."""
    return (tuple((g.name, int(g.size), g.axes) for g in groups), tuple(sorted(axes.items())),
            tuple(sorted(sizes0.items())), tuple(sorted(widths.items())), float(p))


def _view(x, path, axes, sizes):
    """``x`` of shape ``(k, *shape)`` viewed as ``(k, *view)``; returns the view and its unit dims (+1)."""
    shape, dims = view_shape(x.shape[1:], axes, sizes, path)
    return x.reshape((x.shape[0],) + shape), [d + 1 for d in dims]


def _unit_sums(v, d: int, p: float):
    """``sum |v|^p`` over every axis but the member axis 0 and the unit axis ``d``: shape ``(k, n)``.

    The array is first reshaped to ``(k, before, n, after)`` with its size-one axes dropped: reducing the view
    (many size-one axes) directly makes XLA insert a relayout copy first, which made the scores the larger
    part of transplantation's time on CPUs."""
    k, n = v.shape[0], v.shape[d]
    before = int(np.prod(v.shape[1:d], dtype=np.int64))
    after = int(np.prod(v.shape[d + 1:], dtype=np.int64))
    shape = [q for q in (k, before) if q > 1] + [n] + ([after] if after > 1 else [])
    unit = (k > 1) + (before > 1)
    w = v.reshape(shape)
    mag = jnp.square(w) if p == 2.0 else jnp.abs(w) ** p
    reduce = tuple(a for a in range(len(shape)) if a != unit and not (k > 1 and a == 0))
    return (jnp.sum(mag, axis=reduce) if reduce else mag).reshape(k, n)


def _scores(spec, leaves, c):
    """Wide importance per group, shape ``(k * n,)``; index ``i * n + j`` is unit ``j`` of member ``i``."""
    groups, axes_items, sizes_items, _, p = spec
    axes, sizes = dict(axes_items), dict(sizes_items)
    out = {}
    for name, _, gaxes in groups:
        contributions = []
        for ax in gaxes:
            if ax.path not in leaves or not ax.score:
                continue
            x = leaves[ax.path]
            ua = axes[ax.path]
            v, dims = _view(x, ax.path, ua, sizes)
            d = dims[[u.group for u in ua].index(name)]
            s = _unit_sums(v, d, p)   # (k, n)
            if is_output(ax.path, x.ndim - 1, ua):
                s = s * jnp.abs(c[:, None]) ** p
            contributions.append(s)
        if not contributions:
            raise ValueError(f"group {name!r} has no scored axis in these variables")
        out[name] = (sum(contributions) / len(contributions)).reshape(-1)
    return out


def _select(scores, width: int):
    """The ``width`` highest scores, ties to the lower index (as :func:`jaxlab.prune.top_units`), sorted."""
    order = jnp.argsort(-scores, stable=True)[:width]
    return jnp.sort(order)


def _gather(path, x, ua, sizes, kept, c):
    """The fused array: entries of the kept units, zero across members, output arrays weighted by ``c``.

    ``x`` is the members' array stacked, ``(k, *shape)``, or a tuple of the ``k`` arrays (then see
    :func:`_gather_members`)."""
    if isinstance(x, tuple):
        return _gather_members(path, x, ua, sizes, kept, c)
    if not ua:
        return jnp.tensordot(c.astype(x.dtype), x, axes=1)
    shape1 = x.shape[1:]
    v, dims = _view(x, path, ua, sizes)
    d1 = dims[0]
    # merge the member axis into the first unit axis: index i * n + j is the wide index of the unit
    moved = jnp.moveaxis(v, 0, d1 - 1)                      # (..., k, n1, ...) with k at d1 - 1
    merged = moved.reshape(moved.shape[:d1 - 1] + (moved.shape[d1 - 1] * sizes[ua[0].group],)
                           + moved.shape[d1 + 1:])
    first = ua[0]
    n1 = sizes[first.group]
    idx1 = kept[first.group]
    out = jnp.take(merged, idx1, axis=d1 - 1)               # unit dims now at dims[j] - 1
    member1 = idx1 // n1
    for u, d in zip(ua[1:], dims[1:]):
        n = sizes[u.group]
        idx = kept[u.group]
        out = jnp.take(out, idx % n, axis=d - 1)
        same = member1[:, None] == (idx // n)[None, :]
        shape = [1] * out.ndim
        shape[d1 - 1], shape[d - 1] = same.shape
        out = jnp.where(same.reshape(shape), out, jnp.zeros((), out.dtype))
    if is_output(path, len(shape1), ua):
        shape = [1] * out.ndim
        shape[d1 - 1] = idx1.shape[0]
        out = out * c.astype(out.dtype)[member1].reshape(shape)
    return _final_shape(out, shape1, ua, dims, kept)


def _final_shape(out, shape1, ua, dims, kept):
    final = list(shape1)
    for u, d in zip(ua, dims):
        final[u.axis] = out.shape[d - 2] * kept[u.group].shape[0] * u.block
    return out.reshape(final)


def _gather_members(path, xs, ua, sizes, kept, c):
    """:func:`_gather` on a tuple of the ``k`` members' arrays, never stacked or concatenated.

    Member ``i`` contributes, on every unit axis, the units ``idx % n`` gathered from its own array, and keeps
    them where every unit axis's kept unit is its own (``idx // n == i``); the rest stays zero. That is ``k``
    gathers of the fused array's size, where concatenating the members first would copy all ``k`` arrays and
    then gather from the ``k`` times wider one (on CPUs about three times slower: XLA's gather along a minor
    axis of a wide array is the cost of transplantation)."""
    if not ua:
        return sum(c[i].astype(m.dtype) * m for i, m in enumerate(xs))
    shape1 = xs[0].shape
    out = None
    dims: list[int] = []
    for i, m in enumerate(xs):
        v, dims = _view(m[None], path, ua, sizes)
        g = v[0]
        mask = None
        for u, d in zip(ua, dims):
            n = sizes[u.group]
            idx = kept[u.group]
            g = jnp.take(g, idx % n, axis=d - 1)
            shape = [1] * g.ndim
            shape[d - 1] = idx.shape[0]
            own = (idx // n == i).reshape(shape)
            mask = own if mask is None else mask & own
        out = jnp.where(mask, g, jnp.zeros((), g.dtype) if out is None else out)
    assert out is not None
    if is_output(path, len(shape1), ua):
        d1 = dims[0]
        idx1 = kept[ua[0].group]
        shape = [1] * out.ndim
        shape[d1 - 1] = idx1.shape[0]
        out = out * c.astype(out.dtype)[idx1 // sizes[ua[0].group]].reshape(shape)
    return _final_shape(out, shape1, ua, dims, kept)


def _core(spec, leaves, c):
    groups, axes_items, sizes_items, widths_items, _ = spec
    axes, sizes, widths = dict(axes_items), dict(sizes_items), dict(widths_items)
    scores = _scores(spec, leaves, c)
    kept = {name: _select(scores[name], widths[name]) for name, _, _ in groups}
    fused = {path: _gather(path, x, axes[path], sizes, kept, c) for path, x in leaves.items()}
    return fused, kept, scores


def _core_members(spec, members_leaves, c):
    """:func:`_core` on a tuple of the members' leaves, never stacked: scores member by member, and every fused
    array gathered from the members concatenated on its first unit axis."""
    groups, axes_items, sizes_items, widths_items, _ = spec
    axes, widths = dict(axes_items), dict(widths_items)
    sizes = dict(sizes_items)
    per_member = [_scores(spec, {p: x[None] for p, x in m.items()}, c[i:i + 1])
                  for i, m in enumerate(members_leaves)]
    scores = {name: jnp.concatenate([s[name] for s in per_member]) for name, _, _ in groups}
    kept = {name: _select(scores[name], widths[name]) for name, _, _ in groups}
    fused = {path: _gather(path, tuple(m[path] for m in members_leaves), axes[path], sizes, kept, c)
             for path in members_leaves[0]}
    return fused, kept, scores


@functools.lru_cache(maxsize=64)
def _compiled(spec, stacked: bool = True):
    return jax.jit(functools.partial(_core if stacked else _core_members, spec))


# ----------------------------------------------------------------------------- public functions


def transplant_stacked(config: Any, stacked: Mapping, *, width: Mapping[str, int] | None = None,
                       weights: Sequence[float] | None = None, p: float = 2.0) -> tuple[Any, Any, dict]:
    """Neuron Transplantation of ``k`` members of one config whose variables are stacked on a leading axis.

    This is the form vmapped training produces. One jitted program (compiled once per architecture and
    widths) scores the units, keeps the top ``width`` of every group and gathers the fused model.

    Args:
      config: the members' config (declares ``dependency_groups()``).
      stacked: variables (or a bare params tree) whose every leaf has a leading member axis of size k.
      width: units to keep per group (default: the config's widths).
      weights: the output weights ``c_i`` (default ``1/k``).
      p: the norm's exponent (2 as in the reference).

    Returns:
      ``(config, variables, keep)``: the fused config, its variables (same form as ``stacked`` without the
      member axis) and, per group, the kept wide indices (``i * n + j`` for unit ``j`` of member ``i``), the
      indices :func:`jaxlab.prune.shrink` would take on the wide model of :func:`concat`.
    """

    leaves, bare = flatten(stacked)
    ks = {np.shape(v)[0] if np.ndim(v) else None for v in leaves.values()}
    if len(ks) != 1 or None in ks:
        raise ValueError(f"every stacked leaf needs the same leading member axis, got sizes {sorted(map(str, ks))}")
    k = ks.pop()
    shapes = {path: np.shape(v)[1:] for path, v in leaves.items()}
    return _run(config, (leaves,), shapes, bare, k, width, weights, p, stacked=True)


def _run(config, args, shapes, bare, k, width, weights, p, *, stacked):
    groups = groups_of(config)
    axes = unit_axes(groups, {path: np.broadcast_to(np.int8(0), s) for path, s in shapes.items()})
    sizes0 = {g.name: int(g.size) for g in groups}
    widths = _widths(groups, [sizes0] * k, width)
    c = np.full(k, 1.0 / k) if weights is None else _check_weights(weights, k)
    spec = _spec(groups, axes, sizes0, widths, p)
    if stacked:
        leaves = {path: jnp.asarray(v) for path, v in args[0].items()}
    else:
        leaves = tuple({path: jnp.asarray(v) for path, v in m.items()} for m in args)
    fused, kept, _ = _compiled(spec, stacked)(leaves, np.asarray(c, np.float32))  # a NumPy argument: no copy program
    keep = {name: np.asarray(i) for name, i in kept.items()}
    for g in groups:
        config = g.resize(config, keep[g.name])
    return config, unflatten(fused, bare), keep


def _equal(leaves, sizes) -> bool:
    if any(s != sizes[0] for s in sizes):
        return False
    shapes = {p: np.shape(v) for p, v in leaves[0].items()}
    return all({p: np.shape(v) for p, v in lv.items()} == shapes for lv in leaves[1:])


def importance(members: Sequence[Member], *, weights: Sequence[float] | None = None,
               p: float = 2.0) -> dict[str, np.ndarray]:
    """The wide model's unit importance per group (what :func:`transplant` ranks), without building it.

    Equals ``jaxlab.prune.group_importance(concat(members, weights=weights)[1], group)`` for every group of the
    wide model (float64 NumPy arrays of length ``sum_i n_i``).
    """
    groups, leaves, _, axes, sizes = _structure(members)
    k = len(members)
    c = _output_weights(leaves, axes, sizes) if weights is None else _check_weights(weights, k)
    out = {}
    for g in groups:
        per_member = []
        for i in range(k):
            scaled = {path: (np.asarray(x, np.float64) * c[i] if is_output(path, np.ndim(x), axes[path]) else x)
                      for path, x in leaves[i].items()}
            grp = g._replace(size=sizes[i][g.name])
            per_member.append(prune.group_importance(unflatten(scaled, False), grp, p=p))
        out[g.name] = np.concatenate(per_member)
    return out


def transplant(members: Sequence[Member], *, width: Mapping[str, int] | None = None,
               weights: Sequence[float] | None = None, p: float = 2.0, via: str = "auto",
               return_keep: bool = False):
    """Neuron Transplantation: the ``k`` members fused into one model of the original width.

    Concatenates the members (:func:`concat`, the exact output-averaged ensemble), then keeps in every
    dependency group the ``w`` units of largest importance (see the module docstring) from any member,
    ties to the lower wide index, and returns the ordinary model of width ``w``. Fine-tune it afterwards
    (its cross-member weights start at zero), and recalibrate its BatchNorm statistics.

    Args:
      members: ``(config, variables)`` pairs of one architecture.
      width: units to keep per group (default: member 0's widths).
      weights: the output weights ``c_i`` (default ``in_i / sum_j in_j``: ``1/k`` for equal widths).
      p: the norm's exponent.
      via: ``"direct"`` (one jitted program on the stacked members, equal widths only), ``"wide"``
        (build the wide model and :func:`jaxlab.prune.shrink` it, as the reference) or ``"auto"`` (direct
        when the widths are equal). Both give the same model.
      return_keep: also return the kept wide indices per group.

    Returns:
      ``(config, variables)`` (and ``keep`` when ``return_keep``).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlab.nn import MLP
      >>> cfg, x = MLP(features=(8, 8, 3)), jnp.ones((2, 5), jnp.float32)
      >>> members = [(cfg, cfg.init(jax.random.key(i), x)) for i in range(4)]
      >>> fused_cfg, fused = transplant(members)
      >>> fused_cfg == cfg, fused["params"]["dense_1"]["kernel"].shape
      (True, (8, 8))
    """
    if via not in ("auto", "direct", "wide"):
        raise ValueError(f"via must be 'auto', 'direct' or 'wide', got {via!r}")
    groups, leaves, bare, axes, sizes = _structure(members)
    k = len(members)
    c = _output_weights(leaves, axes, sizes) if weights is None else _check_weights(weights, k)
    direct = via != "wide" and _equal(leaves, sizes)
    if via == "direct" and not direct:
        raise ValueError("via='direct' needs members of equal widths and shapes; use via='wide' or 'auto'")
    if direct:
        shapes = {path: np.shape(v) for path, v in leaves[0].items()}
        cfg, variables, keep = _run(members[0][0], tuple(leaves), shapes, bare, k, width, c, p, stacked=False)
    else:
        widths = _widths(groups, sizes, width)
        wide_cfg, wide = concat(members, weights=c)
        wide_groups = {g.name: g for g in wide_cfg.dependency_groups()}
        keep = {name: prune.top_units(prune.group_importance(wide, wide_groups[name], p=p), widths[name])
                for name in widths}
        cfg, variables = prune.shrink(wide_cfg, wide, keep)
    return (cfg, variables, keep) if return_keep else (cfg, variables)


_WEIGHTINGS = ("members", "reference")


def _pair_weights(a: int, b: int, weighting: str) -> tuple[float, float]:
    if weighting not in _WEIGHTINGS:
        raise ValueError(f"weighting must be one of {_WEIGHTINGS}, got {weighting!r}")
    return (a / (a + b), b / (a + b)) if weighting == "members" else (0.5, 0.5)


def transplant_iterative(members: Sequence[Member], *, weighting: str = "members", p: float = 2.0):
    """Running fusion: ``fused = transplant([fused, member])`` for each further member.

    ``weighting="members"`` gives the running model the weight of the ``j`` members it holds (``j/(j+1)``
    against ``1/(j+1)``); ``"reference"`` uses 1/2 per step as the reference's ``fuse_ensemble_iterative``,
    where member 0 ends with weight ``2**-(k-1)``.
    """
    fused = members[0]
    for j, m in enumerate(members[1:], start=1):
        fused = transplant([fused, m], weights=_pair_weights(j, 1, weighting), p=p)
    return fused


def transplant_hierarchical(members: Sequence[Member], *, weighting: str = "members", p: float = 2.0):
    """Merge-sort fusion: halves fused recursively, two or three members fused at once (the reference's base case).

    ``weighting="members"`` weights each half by its number of members; ``"reference"`` by 1/2.
    """
    k = len(members)
    if k <= 3:
        return transplant(members, p=p)
    mid = k // 2
    left = transplant_hierarchical(members[:mid], weighting=weighting, p=p)
    right = transplant_hierarchical(members[mid:], weighting=weighting, p=p)
    return transplant([left, right], weights=_pair_weights(mid, k - mid, weighting), p=p)
