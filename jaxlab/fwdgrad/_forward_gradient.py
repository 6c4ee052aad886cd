"""Multi-tangent forward gradients: k directional derivatives combined into one gradient estimate.

Implements "Beyond Backpropagation: Optimization with Multi-Tangent Forward Gradients" (Fluegel,
Coquelin, Weiel, Debus, Streit, Goetz; arXiv 2410.17764). The directional derivatives
``d_i = <grad f, v_i>`` come from forward-mode differentiation (``mode="jvp"``: ``jax.jvp`` vmapped
over the tangents; the true gradient is never formed) or, for fast experiments, from the true
gradient (``mode="simulated"``: backprop, then ``V^T g``; same result, but its cost says nothing
about forward mode).

Two execution paths give the same numbers for the same key (up to float rounding in the last bits):

* default (``tangent_batch_size=None``): all k tangents are drawn and held at once.
* streaming (``tangent_batch_size=b``, elementwise samplers only): a ``lax.scan`` over k / b
  batches of tangents computes ``d``; in ``jvp`` mode each leaf's tangent is drawn where the loss
  first combines that leaf with data (``_lazy_jvp``), so the JVP holds about one layer's tangent.
  The tangents are then *regenerated* from the key instead of being stored: the Gram matrix
  (projection only) is accumulated leaf after leaf over blocks of elements, and ``sum_i c_i v_i``
  is formed leaf by leaf; with ``fuse_combination`` it is one elementwise expression per leaf, which
  XLA fuses with an update that reads the gradient once (SGD) into one in-place pass over the
  donated parameters.
  Working memory no longer grows with k or with the depth of the net.

XLA on CPU schedules breadth first and expands ``optimization_barrier`` before scheduling, so the
order of this work is fixed with true data dependencies that are always zero (``_schedule.after``).

Deviations from the paper's code: see ``_aggregations`` (global projection; solve instead of an
inverse) and ``_samplers`` (per-leaf and per-row keys).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxlab.core import Array, PRNGKey, PyTree

from ._aggregations import (
    aggregate,
    aggregation_coefficients,
    check_aggregation,
    length_correction_factor,
    needs_gram,
)
from ._lazy_jvp import jvp_along_generated_tangent
from ._samplers import (
    ELEMENTWISE_SAMPLERS,
    check_sampler,
    leaf_tangent_from_seeds,
    num_parameters,
    sample_tangent,
    sample_tangents,
    tangent_seeds,
    tangent_sq_norms,
)
from ._schedule import after

MODES: tuple[str, ...] = ("jvp", "simulated")


def _check_loss(loss: Any) -> None:
    if jnp.shape(loss) != ():
        raise ValueError(f"loss_fn must return a scalar loss (or (loss, aux) with has_aux=True), got shape "
                         f"{jnp.shape(loss)}; reduce it with jnp.mean")


def _split_aux(out: Any, has_aux: bool):
    if has_aux:
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ValueError("with has_aux=True, loss_fn must return a pair (loss, aux)")
        return out
    return out, None


def _contract(tangents: PyTree, grad: PyTree) -> Array:
    """``d_i = <v_i, g>`` for stacked tangents."""
    pairs = zip(jax.tree_util.tree_leaves(tangents), jax.tree_util.tree_leaves(grad))
    return sum((v.reshape(v.shape[0], -1) @ g.reshape(-1)) for v, g in pairs)


def _jvp_derivatives(f: Callable, params: PyTree, tangents: PyTree, has_aux: bool):
    def one(v):
        if has_aux:
            primal, tangent_out, aux = jax.jvp(f, (params,), (v,), has_aux=True)
        else:
            primal, tangent_out = jax.jvp(f, (params,), (v,))
            aux = None
        return primal, tangent_out, aux

    loss, d, aux = jax.vmap(one, out_axes=(None, 0, None))(tangents)
    return d, loss, aux


def _generated_jvp_derivatives(f: Callable, params: PyTree, seeds: Array, sampler: str, has_aux: bool):
    """``_jvp_derivatives`` along elementwise-sampler tangents with seeds ``(b, num_leaves, 2)``,
    each leaf's tangent drawn where the loss first uses that leaf."""
    leaves, treedef = jax.tree_util.tree_flatten(params)

    def one(s):
        g = lambda xs: _split_aux(f(jax.tree_util.tree_unflatten(treedef, xs)), has_aux)  # noqa: E731
        (primal, aux), (tangent_out, _) = jvp_along_generated_tangent(g, leaves, list(s), sampler, gate=seeds)
        return primal, tangent_out, aux

    loss, d, aux = jax.vmap(one, out_axes=(None, 0, None))(seeds)
    return d, loss, aux


def directional_derivatives(loss_fn: Callable, params: PyTree, tangents: PyTree, *args: Any,
                            mode: str = "jvp", has_aux: bool = False):
    """``d_i = <grad loss, v_i>`` for stacked tangents (leading axis k).

    Args:
      loss_fn: ``loss_fn(params, *args) -> loss`` (or ``(loss, aux)`` with ``has_aux``), scalar loss.
      params: the point of differentiation.
      tangents: pytree like ``params`` with a leading axis k on every leaf.
      *args: further arguments of ``loss_fn`` (not differentiated).
      mode: "jvp" (forward mode, vmapped over tangents) or "simulated" (backprop then ``V^T g``).
      has_aux: whether ``loss_fn`` returns ``(loss, aux)``.

    Returns:
      ``(d, loss)``, or ``(d, (loss, aux))`` with ``has_aux``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    f = lambda p: loss_fn(p, *args)  # noqa: E731
    if mode == "jvp":
        d, loss, aux = _jvp_derivatives(f, params, tangents, has_aux)
    else:
        (loss, aux), g = jax.value_and_grad(lambda p: _split_aux(f(p), has_aux), has_aux=True)(params)
        d = _contract(tangents, g)
    _check_loss(loss)
    return (d, (loss, aux)) if has_aux else (d, loss)


def forward_gradient_reference(loss_fn: Callable, params: PyTree, *args: Any, key: PRNGKey, num_tangents: int,
                               aggregation: str = "projection", sampler: str = "normal"):
    """Oracle: the same estimate from ``jax.grad`` and NumPy formulas on the flattened tangents.

    Returns:
      ``(grads, loss)`` with ``grads`` a pytree like ``params`` (float64 NumPy leaves).
    """
    import numpy as np
    from jax.flatten_util import ravel_pytree

    from ._aggregations import aggregate_reference
    from ._samplers import sample_tangents_reference

    loss, g = jax.value_and_grad(lambda p: loss_fn(p, *args))(params)
    flat_g, unravel = ravel_pytree(g)
    V = sample_tangents_reference(key, params, num_tangents, sampler=sampler)
    d = V.astype(np.float64) @ np.asarray(flat_g, np.float64)
    leaves = jax.tree_util.tree_leaves(params)
    sizes = [math.prod(jnp.shape(x)) for x in leaves]
    est = aggregate_reference(V, d, aggregation, leaf_sizes=sizes)
    bounds = np.cumsum([0, *sizes])
    out = [est[a:b].reshape(jnp.shape(x)) for x, a, b in zip(leaves, bounds[:-1], bounds[1:])]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), out), loss


def _streamed_leaf_grams(seeds: Array, params: PyTree, sampler: str, block_elements: int,
                         start: Array) -> list[Array]:
    """Per-leaf Gram matrices of the raw tangents, accumulated over blocks of ``block_elements / k``.

    The leaves are done one after the other (each waits for the previous leaf's Gram matrix, the
    first for ``start``): independent per-leaf work would otherwise be drawn all at once.
    """
    k = seeds.shape[0]
    grams = []
    for l, x in enumerate(jax.tree_util.tree_leaves(params)):
        shape, dtype = jnp.shape(x), jnp.result_type(x)
        numel = math.prod(shape)
        chunk = max(1, min(numel, block_elements // k))
        leaf_seeds = after(seeds[:, l], start if not grams else grams[-1])

        def block(start, shape=shape, dtype=dtype, chunk=chunk, leaf_seeds=leaf_seeds):
            V = jax.vmap(lambda s: leaf_tangent_from_seeds(s, shape, dtype, sampler, start, chunk))(leaf_seeds)
            return V @ V.T

        if chunk == numel:
            grams.append(block(0))
        else:
            starts = jnp.arange(0, numel, chunk, dtype=jnp.uint32)
            acc, _ = jax.lax.scan(lambda acc, s0: (acc + block(s0), None), jnp.zeros((k, k), dtype), starts)
            grams.append(acc)
    return grams


#: With ``fuse_combination``, up to this many tangents the combination is one elementwise expression
#: per leaf; beyond, a loop over the tangents with one accumulator per leaf.
UNROLL_COMBINE = 32


def _streamed_combine(seeds: Array, params: PyTree, coefficients: Array, sampler: str, fuse: bool) -> PyTree:
    """``sum_i c_i v_i`` with the tangents regenerated leaf by leaf from ``seeds`` (k, num_leaves, 2).

    The sum is never formed over a vmapped axis, which would first materialise all k tangents of
    a leaf. The tangents are regenerated only after the coefficients are known (``_schedule.after``).
    ``fuse``: one elementwise expression per leaf (XLA fuses it into an update that reads the
    gradient once, such as SGD's: no buffer for the estimate at all); otherwise a loop over the
    tangents (one buffer per leaf, whatever the optimiser; XLA splits the fused expression, one
    buffer per tangent, when the gradient has several elementwise consumers, as in Adam).
    """
    leaves, treedef = jax.tree_util.tree_flatten(params)
    k = coefficients.shape[-1]
    seeds = after(seeds, coefficients)
    out = []
    for l, x in enumerate(leaves):
        shape, dtype = jnp.shape(x), jnp.result_type(x)
        c = (coefficients if coefficients.ndim == 1 else coefficients[l]).astype(dtype)

        def term(i, acc, l=l, shape=shape, dtype=dtype, c=c):
            return acc + c[i] * leaf_tangent_from_seeds(seeds[i, l], shape, dtype, sampler)

        if fuse and k <= UNROLL_COMBINE:
            acc = jnp.zeros(shape, dtype)
            for i in range(k):
                acc = term(i, acc)
            out.append(acc)
        else:
            out.append(jax.lax.fori_loop(0, k, term, jnp.zeros(shape, dtype)))
    return jax.tree_util.tree_unflatten(treedef, out)


def _streaming_forward_gradient(f, params, key, k, b, aggregation, sampler, mode, normalize, selection,
                                has_aux, gram_block_elements, fuse_combination):
    if k % b:
        raise ValueError(f"num_tangents={k} must be a multiple of tangent_batch_size={b}")
    if sampler not in ELEMENTWISE_SAMPLERS:
        raise ValueError(f"tangent_batch_size needs an elementwise sampler {ELEMENTWISE_SAMPLERS}, got {sampler!r}; "
                         "pass tangent_batch_size=None for the orthonormal sampler")

    want_norms = (normalize or aggregation == "max_normalized"
                  or (needs_gram(aggregation) and selection in ("max", "min")))
    leaves = jax.tree_util.tree_leaves(params)
    d_dtype = jnp.result_type(*leaves)
    if mode == "simulated":
        (loss, aux), g = jax.value_and_grad(lambda p: _split_aux(f(p), has_aux), has_aux=True)(params)

    seeds = tangent_seeds(key, jnp.arange(k, dtype=jnp.uint32), len(leaves))  # (k, num_leaves, 2)

    def body(carry, xs):
        j, seeds_b = xs
        # Whole tangents only where needed (norms, simulated mode): they hold all leaves at once.
        if want_norms or mode == "simulated":
            V = jax.vmap(lambda i: sample_tangent(key, params, i, sampler=sampler))(j * b + jnp.arange(b))
        sq = tangent_sq_norms(V) if want_norms else jnp.ones((b,), d_dtype)
        if mode == "jvp":
            d_b, loss_b, aux_b = _generated_jvp_derivatives(f, params, seeds_b, sampler, has_aux)
        else:
            d_b, loss_b, aux_b = _contract(V, g), None, None
        return carry, (d_b, sq, loss_b, aux_b)

    _, (d, sq, losses, auxs) = jax.lax.scan(body, None, (jnp.arange(k // b), seeds.reshape(k // b, b, -1, 2)))
    d, sq = d.reshape(k), sq.reshape(k)
    if mode == "jvp":
        loss = losses[0]
        aux = jax.tree_util.tree_map(lambda a: a[0], auxs)
    # Normalised tangents v_i = s_i u_i: d scales by s, the Gram by s s^T, and sum_i c_i v_i becomes
    # sum_i (c_i s_i) u_i, so the raw tangents u_i are all that is ever regenerated.
    s = jax.lax.rsqrt(sq) if normalize else jnp.ones_like(sq)
    d = d * s
    leaf_grams = None
    if needs_gram(aggregation):
        raw = _streamed_leaf_grams(seeds, params, sampler, gram_block_elements, d)
        leaf_grams = [gm * jnp.outer(s, s).astype(gm.dtype) for gm in raw]
    sizes = [math.prod(jnp.shape(x)) for x in leaves]
    c = aggregation_coefficients(d, aggregation, sq_norms=sq * s * s, leaf_grams=leaf_grams, leaf_sizes=sizes,
                                 selection=selection)
    grads = _streamed_combine(seeds, params, c * s, sampler, fuse_combination)
    return grads, loss, aux


def forward_gradient(loss_fn: Callable, params: PyTree, *args: Any, key: PRNGKey, num_tangents: int = 1,
                     aggregation: str = "projection", sampler: str = "normal", mode: str = "jvp",
                     normalize: bool = False, length_correction: bool = False, selection: str | None = None,
                     has_aux: bool = False, tangent_batch_size: int | None = None,
                     gram_block_elements: int = 1 << 20, fuse_combination: bool = False):
    """Estimates the gradient of ``loss_fn`` at ``params`` from ``num_tangents`` directional derivatives.

    .. math::

       d = V^\\top \\nabla f, \\qquad \\hat g = \\sum_i c_i(d, V)\\, v_i,
       \\qquad \\text{projection: } c = (V^\\top V)^{-1} d .

    Args:
      loss_fn: ``loss_fn(params, *args) -> scalar`` (or ``(scalar, aux)`` with ``has_aux=True``).
      params: pytree of floating point arrays (mixed shapes and dtypes are fine).
      *args: further arguments of ``loss_fn`` (a batch, ...), not differentiated.
      key: PRNG key for the tangents; use a fresh one every step.
      num_tangents: k >= 1. For ``projection`` with k > n only n tangents are kept (``selection``).
      aggregation: "projection" (default; the paper's orthogonal projection over all parameters),
        "projection_per_leaf" (the reference code's per-tensor variant), "mean", "sum", "max",
        "max_normalized".
      sampler: "normal" (default), "rademacher" or "orthonormal".
      mode: "jvp" (forward mode; never forms the true gradient) or "simulated" (true gradient by
        backprop, then ``V^T g``; identical estimates, for fast experiments).
      normalize: use unit-length tangents.
      length_correction: multiply by the paper's scaling correction (``length_correction_factor``;
        "projection", "mean" and "sum" only) so the estimate's expected length matches the gradient's.
      selection: which n tangents the projection keeps if k > n: "first_n", "max" or "min" (by
        |d_i| / ||v_i||) or "pivoted" (a pivoted Cholesky's well-conditioned ones; exact in float32 where
        the first n are nearly dependent); None (default): "pivoted" for ``projection``, "first_n" (the
        reference's) for ``projection_per_leaf``.
      has_aux: ``loss_fn`` returns ``(loss, aux)``.
      tangent_batch_size: None (hold all k tangents) or b dividing k: stream the tangents b at a time
        and regenerate them from ``key`` (normal and rademacher samplers); memory no longer grows with k
        (nor, in ``jvp`` mode, with depth: each leaf's tangent is drawn where its layer runs). It trades
        memory for time: each of the k / b passes evaluates the primal once and pushes b tangents
        through it, so a pass costs 1 + 2b matmuls per dense layer (k / b + 2k in all, against 3 for a
        backprop step) and holds about b tangent activations (plus one layer's tangent per tangent).
      gram_block_elements: streaming only: elements per block (all k tangents) when accumulating the Gram matrix.
      fuse_combination: streaming only: form ``sum_i c_i v_i`` as one elementwise expression per leaf
        (k <= 32), which XLA fuses with an optimiser update that reads the gradient once (SGD, SGD
        with momentum) into one in-place pass: no buffer for the estimate. Leave it off for
        optimisers that read the gradient twice (Adam), where XLA would keep one buffer per tangent.
        The estimate is the same up to float rounding.

    Returns:
      ``(grads, loss)`` (``(grads, (loss, aux))`` with ``has_aux``); ``grads`` is shaped like ``params``.

    Raises:
      ValueError: for unknown options, a non-scalar loss or non-float parameters.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> loss = lambda p, x: jnp.sum((p["w"] * x) ** 2)
      >>> p = {"w": jnp.ones(3)}
      >>> g, l = forward_gradient(loss, p, jnp.arange(3.0), key=jax.random.key(0), num_tangents=3)
      >>> jnp.allclose(g["w"], jax.grad(loss)(p, jnp.arange(3.0))["w"], atol=1e-4)
      Array(True, dtype=bool)
    """
    check_aggregation(aggregation, selection)
    check_sampler(sampler)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    if int(num_tangents) != num_tangents or num_tangents < 1:
        raise ValueError(f"num_tangents must be a positive integer, got {num_tangents!r}")
    k = int(num_tangents)
    n = num_parameters(params)
    f = lambda p: loss_fn(p, *args)  # noqa: E731

    if tangent_batch_size is None:
        tangents = sample_tangents(key, params, k, sampler=sampler, normalize=normalize)
        d, out = directional_derivatives(loss_fn, params, tangents, *args, mode=mode, has_aux=has_aux)
        loss, aux = out if has_aux else (out, None)
        grads = aggregate(tangents, d, aggregation, selection=selection)
    else:
        b = int(tangent_batch_size)
        if b < 1:
            raise ValueError(f"tangent_batch_size must be a positive integer or None, got {tangent_batch_size!r}")
        grads, loss, aux = _streaming_forward_gradient(f, params, key, k, b, aggregation, sampler, mode, normalize,
                                                       selection, has_aux, gram_block_elements,
                                                       fuse_combination)
        _check_loss(loss)

    if length_correction:
        sq_norm = 1.0 if (normalize or sampler == "orthonormal") else float(n)
        factor = length_correction_factor(aggregation, k, n, sq_norm)
        grads = jax.tree_util.tree_map(lambda g: g * jnp.asarray(factor, g.dtype), grads)
    return (grads, (loss, aux)) if has_aux else (grads, loss)
