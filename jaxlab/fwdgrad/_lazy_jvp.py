"""JVPs along tangents that are generated where the loss first needs them, not before the first layer.

``jax.jvp(f, (params,), (tangent,))`` takes the whole tangent as an input, so each leaf's tangent
exists from the start of the program. XLA's CPU scheduler (breadth first by default) then draws
every leaf's tangent up front, and for a deep net all of them (as many bytes as the parameters)
are alive at once, although layer ``l`` only needs its own.

:func:`jvp_along_generated_tangent` instead traces the loss to a jaxpr and re-evaluates it with
each parameter leaf wrapped in a ``custom_jvp`` identity whose tangent is drawn from seeds by an
elementwise sampler. The seeds of leaf ``l`` are made to depend on the non-parameter operands (the
activations) of the first operation that combines leaf ``l`` with them, so the tangent of layer
``l`` cannot be drawn before layer ``l`` runs, and it is consumed right after. The dependency is an
``optimization_barrier`` (honoured by schedulers that see it) plus a true data dependency that is
always zero (:func:`jaxlab.core.after`), because XLA on CPU expands barriers before it
schedules, and schedules breadth first. Operations that depend on parameters only (``w.T``, casts) are
evaluated lazily, after that point. The JVP is bit-for-bit the same as with an explicit tangent.

Where a leaf only meets data inside a single operation that covers many layers (a ``lax.scan`` over
stacked layers, a jitted sub-function), its tangent is drawn just before that operation: correct,
only less lean.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from jax.extend.core import Literal

from jaxlab.core import Array

from ._samplers import leaf_tangent_from_seeds
from ._schedule import after, orderable


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def with_generated_tangent(sampler: str, x: Array, seeds: Array) -> Array:
    """Identity on ``x``; its JVP ignores the incoming tangent and draws one from ``seeds``."""
    del sampler, seeds
    return x


@with_generated_tangent.defjvp
def _with_generated_tangent_jvp(sampler, primals, tangents):
    del tangents
    x, seeds = primals
    return x, leaf_tangent_from_seeds(seeds, jnp.shape(x), jnp.result_type(x), sampler)


def _bind(eqn, invals: Sequence[Any]) -> list[Any]:
    """Applies one jaxpr equation (as ``jax.core.eval_jaxpr`` does)."""
    params = eqn.primitive.get_bind_params(eqn.params)
    if isinstance(params, tuple):  # older JAX: (subfuns, params)
        subfuns, params = params
        invals = [*subfuns, *invals]
    with eqn.ctx.manager:
        out = eqn.primitive.bind(*invals, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _anchors(jaxpr, num_leaves: int):
    """Which leaves each equation anchors, and which equations depend on parameters only.

    A value is "pure" when it is computed from parameter leaves (and constants) alone; it records
    the set of leaves it depends on. An equation that mixes pure operands with other values (data,
    activations) anchors the pure operands' leaves that no earlier equation anchored.
    """
    leaf_of = {v: frozenset({l}) for l, v in enumerate(jaxpr.invars[:num_leaves])}
    pure: dict[Any, frozenset] = dict(leaf_of)
    anchored: set[int] = set()
    anchors: dict[int, list[int]] = {}
    for e, eqn in enumerate(jaxpr.eqns):
        ins = [v for v in eqn.invars if not isinstance(v, Literal)]
        mixed = any(v not in pure for v in ins)
        if eqn.effects or mixed:
            new = sorted(set().union(*(pure.get(v, frozenset()) for v in ins)) - anchored)
            if new:
                anchors[e] = new
                anchored.update(new)
        else:
            deps = frozenset().union(*(pure[v] for v in ins))
            for v in eqn.outvars:
                pure[v] = deps
    lazy = {e for e, eqn in enumerate(jaxpr.eqns) if eqn.outvars and all(v in pure for v in eqn.outvars)}
    return anchors, lazy


def jvp_along_generated_tangent(f: Callable, leaves: Sequence[Array], seeds: Sequence[Array], sampler: str,
                                gate: Array | None = None):
    """``jax.jvp(f, (leaves,), (tangent,))`` with leaf ``l`` of the tangent drawn from ``seeds[l]``.

    Args:
      f: ``f(leaves) -> out`` (any pytree output; differentiable outputs get tangents).
      leaves: the parameter leaves (a list of floating point arrays).
      seeds: per leaf, the two uint32 seeds of :func:`leaf_tangent_from_seeds`.
      sampler: an elementwise sampler ("normal" or "rademacher").
      gate: optional array; the first operation that reads data waits for it (``_schedule.after``).
        Pass the seeds so that the (sequential) key derivation finishes before the first layer and
        does not hold back the tangents while the forward pass runs ahead.

    Returns:
      ``(primal_out, tangent_out)`` as ``jax.jvp`` returns them.
    """
    leaves = list(leaves)
    closed, out_shape = jax.make_jaxpr(lambda *xs: f(list(xs)), return_shape=True)(*leaves)
    jaxpr, consts = closed.jaxpr, closed.consts
    out_tree = jax.tree_util.tree_structure(out_shape)
    anchors, lazy = _anchors(jaxpr, len(leaves))
    producer = {v: e for e in lazy for v in jaxpr.eqns[e].outvars}

    def evaluate(xs):
        env: dict[Any, Any] = dict(zip(jaxpr.constvars, consts))
        leaf_vars = {v: l for l, v in enumerate(jaxpr.invars)}
        leaf_seeds = list(seeds)
        pending_gate = gate

        def read(v):
            if isinstance(v, Literal):
                return v.val
            if v not in env:
                if v in leaf_vars:
                    l = leaf_vars[v]
                    env[v] = with_generated_tangent(sampler, xs[l], leaf_seeds[l])
                else:  # a parameter-only value, computed on first use
                    eqn = jaxpr.eqns[producer[v]]
                    for o, val in zip(eqn.outvars, _bind(eqn, [read(u) for u in eqn.invars])):
                        env[o] = val
            return env[v]

        for e, eqn in enumerate(jaxpr.eqns):
            if e in lazy:
                continue
            data = {i: read(v) for i, v in enumerate(eqn.invars)
                    if not isinstance(v, Literal) and v not in leaf_vars and v not in producer}
            if pending_gate is not None and data:
                # The first data operation: let it wait for the gate (the seeds).
                for i, v in data.items():
                    if orderable(v):
                        data[i] = after(v, pending_gate)
                        pending_gate = None
                        break
            if e in anchors:
                # The leaves' seeds become available only together with this operation's data
                # operands, so their tangents are drawn here and not at the start.
                new = anchors[e]
                out = jax.lax.optimization_barrier(([leaf_seeds[l] for l in new], list(data.values())))
                data = dict(zip(data, out[1]))
                values = list(data.values())
                for l, s in zip(new, out[0]):
                    leaf_seeds[l] = after(s, *values)
            invals = [data[i] if i in data else read(v) for i, v in enumerate(eqn.invars)]
            for o, val in zip(eqn.outvars, _bind(eqn, invals)):
                env[o] = val
        return jax.tree_util.tree_unflatten(out_tree, [read(v) for v in jaxpr.outvars])

    # The zero tangents are never read (the custom rule replaces them) and compile away.
    return jax.jvp(evaluate, (leaves,), ([jnp.zeros_like(x) for x in leaves],))
