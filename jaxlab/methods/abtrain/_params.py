"""Parameters as flat ``{path: leaf}`` dicts, factorised leaves, and the per-leaf optimiser.

Full form: ``{"dense_0/kernel": W, "dense_0/bias": b, ...}`` (flax's params flattened with ``/``). AB form:
the factorised kernels become :class:`Factors` ``(a, b)`` at the same path. Optimiser leaves are named by
*leaf keys*: the path for full-form leaves, ``path + ".a"`` / ``path + ".b"`` for the factors.

The optimiser is any optax transformation applied **per leaf**, each leaf with its own state (as PyTorch
keeps a step count per parameter): a factor first trained at step ``W`` gets Adam's bias correction from
its own first step, not from the run's. Global-norm clipping runs jointly over the leaves trained in a step,
and the update is ``-lr * tx(g)`` with ``lr`` an argument of the step (no recompilation when it changes).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from jaxlab.core import Array, PyTree

from ._factors import Factors, matrix_shape

FlatParams = dict[str, Any]


def flatten(tree: Mapping) -> FlatParams:
    """flax params (nested dicts) to ``{"a/b/c": leaf}``."""
    return {"/".join(k): v for k, v in traverse_util.flatten_dict(dict(tree)).items()}


def unflatten(flat: Mapping[str, Any]) -> dict:
    """Inverse of :func:`flatten` (``Factors`` values stay whole)."""
    return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


@dataclasses.dataclass(frozen=True)
class Layout:
    """Which kernels are factorised, and their shapes.

    Attributes:
      shapes: ``(path, kernel shape)`` of every factorised kernel, in order.
      full_rank: paths kept full rank (biases, norms, first conv, head: everything else).
    """

    shapes: tuple[tuple[str, tuple[int, ...]], ...]
    full_rank: tuple[str, ...]

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(p for p, _ in self.shapes)

    def shape(self, path: str) -> tuple[int, ...]:
        return dict(self.shapes)[path]

    def full_rank_of(self, path: str) -> int:
        """``min(m, n)`` of the kernel's 2-D view."""
        m, n, _ = matrix_shape(self.shape(path))
        return min(m, n)

    def leaf_keys(self, factors: str = "ab") -> tuple[str, ...]:
        """Optimiser leaf keys of the AB form: the full-rank paths, then ``path.a`` / ``path.b`` for ``factors``."""
        keys = list(self.full_rank)
        for p in self.paths:
            keys += [f"{p}.{f}" for f in factors]
        return tuple(keys)


def plan_layout(params: Mapping, *, exclude: Sequence[str] = ()) -> Layout:
    """Factorises every kernel with >= 2 axes whose path matches none of the ``exclude`` regexes.

    Args:
      params: flax params (nested) or a flat dict.
      exclude: regexes (``re.search``) of paths to keep full rank, e.g. ``("^conv_init/", "^Dense_0/")``.

    Raises:
      ValueError: when an ``exclude`` pattern matches no parameter (a typo would silently factorise it).
    """
    flat = params if all(isinstance(k, str) and "/" in k for k in params) else flatten(params)
    patterns = [re.compile(x) for x in exclude]
    for pat in patterns:
        if not any(pat.search(k) for k in flat):
            raise ValueError(f"exclude pattern {pat.pattern!r} matches no parameter; paths are {sorted(flat)[:12]}")
    shapes, full = [], []
    for k, v in flat.items():
        if k.rsplit("/", 1)[-1] == "kernel" and jnp.ndim(v) >= 2 and not any(p.search(k) for p in patterns):
            shapes.append((k, tuple(int(d) for d in jnp.shape(v))))
        else:
            full.append(k)
    return Layout(tuple(shapes), tuple(full))


def split_factors(params: FlatParams) -> dict[str, Array]:
    """``{leaf key: array}``: every ``Factors`` split into ``path.a`` and ``path.b``."""
    out = {}
    for k, v in params.items():
        if isinstance(v, Factors):
            out[f"{k}.a"], out[f"{k}.b"] = v.a, v.b
        else:
            out[k] = v
    return out


def join_factors(arrays: Mapping[str, Array]) -> FlatParams:
    """Inverse of :func:`split_factors`: ``path.a`` and ``path.b`` become ``Factors`` at ``path``."""
    out: dict[str, Any] = {}
    parts: dict[str, dict[str, Array]] = {}
    for k, v in arrays.items():
        if k.endswith((".a", ".b")):
            parts.setdefault(k[:-2], {})[k[-1]] = v
        else:
            out[k] = v
    for path, ab in parts.items():
        if set(ab) != {"a", "b"}:
            raise ValueError(f"factor leaves of {path!r} incomplete: have {sorted(ab)}, need a and b")
        out[path] = Factors(ab["a"], ab["b"])
    return out


def init_opt(tx: optax.GradientTransformation, arrays: Mapping[str, Array]) -> dict[str, PyTree]:
    """A per-leaf optimiser state for each array."""
    return {k: tx.init(v) for k, v in arrays.items()}


def opt_update(tx: optax.GradientTransformation, grads: Mapping[str, Array], opt: Mapping[str, PyTree],
               params: Mapping[str, Array], lr: Array, *, clip_norm: float | None) -> tuple[dict, dict]:
    """One optimiser step of the leaves in ``grads``: ``(new params of those leaves, their new states)``."""
    grads = dict(grads)
    if clip_norm is not None:
        grads, _ = optax.clip_by_global_norm(clip_norm).update(grads, optax.EmptyState())
    new_p, new_s = {}, {}
    for k in grads:
        u, new_s[k] = tx.update(grads[k], opt[k], params[k])
        u, _ = optax.scale_by_learning_rate(lr).update(u, optax.EmptyState())
        new_p[k] = optax.apply_updates(params[k], u)
    return new_p, new_s


def resize_state(state: PyTree, old_shape: tuple[int, ...], new: Array, axis: int, *, reset: bool,
                 tx: optax.GradientTransformation) -> PyTree:
    """An optimiser state of a factor whose rank changes: reset to ``tx.init(new)`` or sliced/zero-padded.

    Slicing (the reference's ``change_adam_shapes``) keeps every state array shaped like the old factor and
    cuts it along ``axis`` (the rank axis) to the new size, padding with zeros when the rank grew; other
    entries (Adam's count) are kept. It is ill-posed once the new SVD has changed the basis: column ``i`` of
    the old moments belongs to the old ``i``-th singular vector.
    """
    if reset:
        return tx.init(new)
    size = new.shape[axis]

    def fit(x):
        if not hasattr(x, "shape") or tuple(x.shape) != tuple(old_shape):
            return x
        if x.shape[axis] >= size:
            return jax.lax.slice_in_dim(x, 0, size, axis=axis)
        pad = [(0, 0)] * x.ndim
        pad[axis] = (0, size - x.shape[axis])
        return jnp.pad(x, pad)

    return jax.tree.map(fit, state)


def side_keys(layout: Layout, side: str) -> tuple[str, ...]:
    """Leaf keys trained by one side in AB phases: the full-rank leaves and that side's factor."""
    return tuple(layout.full_rank) + tuple(f"{p}.{side}" for p in layout.paths)


def iter_factor_keys(layout: Layout) -> Iterable[tuple[str, str, int]]:
    """``(leaf key, path, rank axis)`` of every factor leaf: ``a`` is ``(m, r)`` (axis 1), ``b`` ``(r, n)`` (axis 0)."""
    for p in layout.paths:
        yield f"{p}.a", p, 1
        yield f"{p}.b", p, 0
