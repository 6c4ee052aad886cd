"""Jigsaw domain x tensor parallel layers, written with ``shard_map``.

Jigsaw (Kieckhefen et al., "Jigsaw: Training Multi-Billion-Parameter AI Weather Models with
Optimized Model Parallelism", arXiv 2507.05753) splits a mixer's activations ``(tokens, channels)``
over a grid of devices: tokens (the domain) over ``space``, channels over ``tensor``, and every
weight over both, so nothing is replicated inside a model instance.

A layer contracts either over channels (channel mixing; the contracted axis lives on ``tensor``)
or over tokens (token mixing; it lives on ``space``). Call the contracted axis ``A`` and the other
model axis ``B``. Device ``(a, b)`` holds the activation block ``X[b, a]`` and, for a kernel
``W (in, out)``, the block ``W[in-chunk b, out-chunk a]`` (see ``_rules.py``). One layer is then:

1. ``all_gather`` of ``X`` over ``A`` (the row partners' blocks: the full contracted axis);
2. a ring over ``B``: multiply the local kernel chunk first, while ``ppermute`` passes the kernel
   chunks around ``B`` (the column partners' blocks); each received chunk is multiplied with the
   matching slice of the gathered ``X`` and summed. The send of the next chunk does not depend on
   the current product, so the scheduler can overlap them;
3. the result has the same layout as ``X``: rows on ``B``, output features on ``A``.

Backward pass (``remat=True``, the default): only the local blocks ``X`` and ``W`` are kept from
the forward pass, as in the reference's ``XWT_fourway`` / ``XTW_fourway``. The backward gathers
``X`` over ``A`` and ``W`` over ``B`` again, forms ``dX`` and ``dW`` of the gathered blocks with one
contraction each and returns them with a ``psum_scatter`` over ``A`` and ``B``. With
``remat=False`` autodiff transposes the forward pass instead (the ``all_gather`` becomes the ``dX``
``psum_scatter``, the ring a reverse ring of kernel gradients): the backward then moves only the
forward's bytes, but every layer's gathered ``X`` and received kernel chunks stay alive from the
forward pass until its backward, along with (on XLA:CPU, which allocates them at the start) the
zero-filled buffers of the gathered size that transpose the ring's ``dynamic_slice``: on (1, 2, 2)
twice the activation memory per device of the default (``scripts/bench_jigsaw.py``).
On a 2 x 2 grid this is the paper's scheme (one X block and one W block per layer and direction);
it works on any ``space x tensor`` grid, and sizes of 1 drop the corresponding exchange.

Per device and linear layer ``(in -> out)`` acting on ``R_local`` local rows, the forward pass
receives ``(n_A - 1) / n_A * R_local * in`` activation and ``(n_B - 1) / n_B * in * out / n_A``
weight elements; the backward pass receives twice that (the two gathers again, then the two
reductions; ``remat=False``: the same amounts once). Data parallelism adds one all-reduce of each
device's parameter shard over ``data`` (:meth:`JigsawOps.data_parallel`).
``scripts/bench_jigsaw.py`` checks these against the bytes of the compiled program.

Differences from the reference (DeifiliaTo/Jigsaw_SC): any mesh rather than a fixed 2 x 2 group;
LayerNorm parameters are sharded over both axes too (the reference replicates them within a pair
and all-reduces their gradients); the data-parallel gradient reduction is JAX's transpose of the
``data``-invariant parameters (a ``psum`` over ``data`` of each shard), not a separate DDP step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._mesh import DATA, MESH_AXES, SPACE, TENSOR, mesh_sizes
from ._rules import JIGSAW_RULES, local_shape, spec_for_path

Array = jax.Array


def shard_map(f: Callable, *, mesh: Mesh, in_specs: Any, out_specs: Any) -> Callable:
    """``jax.shard_map`` (JAX >= 0.8), falling back to ``jax.experimental.shard_map`` on older JAX.

    All mesh axes are manual and the replication checks are on (``check_vma``; ``check_rep`` before).
    """
    sm = getattr(jax, "shard_map", None)
    if sm is not None:
        return sm(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs)
    from jax.experimental.shard_map import shard_map as sm_old  # pragma: no cover (JAX < 0.8)

    return sm_old(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs)  # pragma: no cover


def _to_varying(x: Array, axis_name: str) -> Array:
    """Marks ``x`` as varying over ``axis_name``; its cotangent is ``psum``-ed over that axis."""
    if hasattr(lax, "pcast"):
        return lax.pcast(x, axis_name, to="varying")
    return lax.pvary(x, axis_name)  # pragma: no cover (JAX versions without pcast)


def _gather(x: Array, axis_name: str, n: int, dim: int) -> Array:
    """Named exchange: concatenates the ``n`` blocks of ``x`` held along ``axis_name`` on ``dim``."""
    if n == 1:
        return x
    return lax.all_gather(x, axis_name, axis=dim, tiled=True)


def _scatter(x: Array, axis_name: str, n: int, dim: int) -> Array:
    """Named exchange, the transpose of :func:`_gather`: sums ``x`` over ``axis_name`` and keeps block ``dim``."""
    if n == 1:
        return x
    return lax.psum_scatter(x, axis_name, scatter_dimension=dim, tiled=True)


def _ring_contract(
    x_full: Array, kernel: Array, *, contract_dim: int, axis_name: str, n: int, spec: str
) -> Array:
    """``einsum(spec, x_full, W)`` where ``W``'s rows are split in ``n`` chunks along ``axis_name``.

    The local chunk is used first; the others arrive one by one through ``ppermute`` (device ``i``
    receives from ``i + 1``), each multiplied with its slice of ``x_full``'s contracted dimension.
    """
    if n == 1:
        return jnp.einsum(spec, x_full, kernel)
    idx = lax.axis_index(axis_name)
    rows = kernel.shape[0]
    perm = [(i, (i - 1) % n) for i in range(n)]
    w = kernel
    acc = None
    for r in range(n):
        if r + 1 < n:
            w_next = lax.ppermute(w, axis_name, perm=perm)  # independent of this step's product
        chunk = (idx + r) % n
        xs = lax.dynamic_slice_in_dim(x_full, chunk * rows, rows, axis=contract_dim)
        part = jnp.einsum(spec, xs, w)
        acc = part if acc is None else acc + part
        if r + 1 < n:
            w = w_next
    return acc


def _after(dep: Array, *xs: Array) -> tuple[Array, ...]:
    """``xs`` unchanged, but computed from ``dep`` (plus ``0 * dep[0, ..., 0]``).

    Makes the backward re-exchange depend on the incoming cotangent, so that XLA can neither merge
    it with the forward exchange (CSE) nor hoist it into the forward pass, where the gathered blocks
    would stay alive until the backward after all. ``lax.optimization_barrier`` (what
    ``jax.checkpoint`` uses) does not do this on XLA:CPU, which expands the barriers before CSE and
    scheduling. A non-finite ``dep[0, ..., 0]`` makes ``xs`` NaN; the gradients would not be finite
    anyway.
    """
    zero = jnp.reshape(lax.slice(dep, (0,) * dep.ndim, (1,) * dep.ndim), ()) * 0
    return tuple(x + zero.astype(x.dtype) for x in xs)


def _exchange_again_matmul(xs, ws, *, gather_axis, gather_n, gather_dim, ring_axis, ring_n, spec):
    """``sum_i _ring_contract(_gather(xs[i]), ws[i])`` whose backward pass exchanges the blocks again.

    Only the local blocks ``xs`` and ``ws`` are kept for the backward pass (as in the reference's
    ``XWT_fourway`` / ``XTW_fourway``), never the gathered activations or the received kernel chunks.
    For each part, the backward gathers ``x`` over the gather axis and the kernel over the ring axis
    again, forms ``dX`` and ``dW`` of the gathered blocks with one contraction each, and returns
    their ``psum_scatter`` over the same axes: per device the backward receives twice the forward's
    bytes (the two gathers, then the two reductions). The parts are differentiated one after the
    other, so only one part's gathered blocks are alive at a time.
    """

    def fwd_only(xs, ws):
        out = None
        for x, w in zip(xs, ws):
            x_full = _gather(x, gather_axis, gather_n, gather_dim)
            y = _ring_contract(x_full, w, contract_dim=gather_dim, axis_name=ring_axis, n=ring_n, spec=spec)
            out = y if out is None else out + y
        return out

    @jax.custom_vjp
    def f(xs, ws):
        return fwd_only(xs, ws)

    def f_fwd(xs, ws):
        return fwd_only(xs, ws), (xs, ws)

    def f_bwd(res, dy):
        dxs, dws = [], []
        dep = dy
        for x, w in zip(*res):
            x, w = _after(dep, x, w)
            # Exchange again: the row partners' X blocks and the column partners' kernel blocks,
            # now gathered whole (the same bytes as the forward ring), so that each gradient is
            # one contraction in the canonical block order.
            x_full = _gather(x, gather_axis, gather_n, gather_dim)
            w_full = _gather(w, ring_axis, ring_n, 0)
            _, vjp = jax.vjp(lambda a, b: jnp.einsum(spec, a, b), x_full, w_full)
            dx_full, dw_full = vjp(dy)
            dxs.append(_scatter(dx_full, gather_axis, gather_n, gather_dim))
            dws.append(_scatter(dw_full, ring_axis, ring_n, 0))
            dep = dxs[-1]
        return tuple(dxs), tuple(dws)

    f.defvjp(f_fwd, f_bwd)
    return f(tuple(xs), tuple(ws))


def _layer_norm_math(parts, scales, biases, eps, reduce: Callable[[Array], Array], total: int):
    """LayerNorm over the concatenation of the last axes of ``parts`` (two-pass statistics)."""
    s = sum(jnp.sum(p, axis=-1, keepdims=True) for p in parts)
    mean = reduce(s) / total
    centred = [p - mean for p in parts]
    ss = sum(jnp.sum(c * c, axis=-1, keepdims=True) for c in centred)
    var = reduce(ss) / total
    inv = lax.rsqrt(var + eps)
    return [c * inv * g + b for c, g, b in zip(centred, scales, biases)]


@dataclasses.dataclass(frozen=True)
class LocalOps:
    """Dense layers on whole arrays: one device, or GSPMD when ``mesh`` is given.

    With a ``mesh``, activations get ``with_sharding_constraint`` annotations in the Jigsaw layout
    (batch over ``data``, tokens or latitude over ``space``, channels over ``tensor``) and XLA's
    partitioner places the collectives (the GSPMD comparison in ``scripts/bench_jigsaw.py``).
    """

    mesh: Mesh | None = None

    def param_shape(self, path: str, shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(shape)

    def channel_dense(self, pairs: Sequence[tuple[Array, Array]], bias: Array) -> Array:
        out = sum(jnp.einsum("...i,io->...o", x, w) for x, w in pairs)
        return out + bias

    def token_dense(self, x: Array, kernel: Array, bias: Array) -> Array:
        return jnp.einsum("bti,tu->bui", x, kernel) + bias[:, None]

    def layer_norm(self, parts, scales, biases, eps: float):
        total = sum(p.shape[-1] for p in parts)
        return _layer_norm_math(parts, scales, biases, eps, lambda v: v, total)

    def sum_all(self, x: Array) -> Array:
        return x

    def constrain(self, x: Array, spec: P) -> Array:
        if self.mesh is None:
            return x
        return lax.with_sharding_constraint(x, NamedSharding(self.mesh, spec))


@dataclasses.dataclass(frozen=True)
class JigsawOps:
    """The Jigsaw layers; valid only inside ``shard_map`` over a ``make_mesh`` mesh.

    Attributes:
      data, space, tensor: the mesh axis sizes (``JigsawOps.from_mesh(mesh)``).
      rules: the param-path -> PartitionSpec table the parameters are laid out by.
      remat: keep only the local blocks for the backward pass and exchange them again there (as
        the reference's ``XWT_fourway`` / ``XTW_fourway`` do; the default), instead of keeping the
        gathered activations and the received kernel chunks from the forward pass (False: plain
        autodiff of the forward exchanges). 1.5x the exchanged bytes of ``remat=False``, and on
        (1, 2, 2) about half its activation memory per device (``scripts/bench_jigsaw.py``).
        Reverse mode only: ``jax.jvp`` through the layers needs ``remat=False``.
    """

    data: int = 1
    space: int = 1
    tensor: int = 1
    rules: tuple[tuple[str, P], ...] = JIGSAW_RULES
    remat: bool = True

    @classmethod
    def from_mesh(cls, mesh: Mesh, rules: tuple[tuple[str, P], ...] = JIGSAW_RULES, *,
                  remat: bool = True) -> "JigsawOps":
        d, s, t = mesh_sizes(mesh)
        return cls(data=d, space=s, tensor=t, rules=rules, remat=remat)


    @property
    def _mesh_shape(self) -> dict[str, int]:
        return {DATA: self.data, SPACE: self.space, TENSOR: self.tensor}

    def data_parallel(self, params: Any) -> Any:
        """Entry of the local parameter shards into a model instance (call first in the shard_map body).

        The shards are the same on every ``data`` index; marking them data-varying here puts the
        transpose, the data-parallel gradient ``psum`` over ``data``, on the local shards: each
        device reduces its own shard's gradient with the devices holding the same shard, once.
        (Left implicit, JAX would insert the reduction where a shard first meets a data-varying
        value, i.e. after the exchanges, on gathered blocks ``space`` or ``tensor`` times larger.)
        The layers with ``remat=True`` expect their parameters to have passed through here.
        """
        return jax.tree.map(lambda p: _to_varying(p, DATA), params)

    def param_shape(self, path: str, shape: Sequence[int]) -> tuple[int, ...]:
        try:
            return local_shape(shape, spec_for_path(path, self.rules), self._mesh_shape)
        except ValueError as e:
            raise ValueError(f"parameter {path!r} of shape {tuple(shape)}: {e}") from None

    def channel_dense(self, pairs: Sequence[tuple[Array, Array]], bias: Array) -> Array:
        """Channel mixing: ``x (..., in/T) -> (..., out/T)``; kernels ``P(space, tensor)``."""

        if self.remat:
            xs, ws = zip(*pairs)
            out = _exchange_again_matmul(xs, ws, gather_axis=TENSOR, gather_n=self.tensor, gather_dim=xs[0].ndim - 1,
                                         ring_axis=SPACE, ring_n=self.space, spec="...i,io->...o")
            return out + _gather(bias, SPACE, self.space, 0)

        def one(x, w):
            x_full = _gather(x, TENSOR, self.tensor, x.ndim - 1)  # row partners' channel blocks
            return _ring_contract(
                x_full, w, contract_dim=x.ndim - 1, axis_name=SPACE, n=self.space, spec="...i,io->...o"
            )

        out = None
        for x, w in pairs:
            y = one(x, w)
            out = y if out is None else out + y
        return out + _gather(bias, SPACE, self.space, 0)

    def token_dense(self, x: Array, kernel: Array, bias: Array) -> Array:
        """Token mixing: ``x (B, t_in/S, D/T) -> (B, t_out/S, D/T)``; kernel ``P(tensor, space)``."""
        if self.remat:
            y = _exchange_again_matmul((x,), (kernel,), gather_axis=SPACE, gather_n=self.space, gather_dim=1,
                                       ring_axis=TENSOR, ring_n=self.tensor, spec="bti,tu->bui")
        else:
            x_full = _gather(x, SPACE, self.space, 1)  # the column partners' token blocks
            y = _ring_contract(x_full, kernel, contract_dim=1, axis_name=TENSOR, n=self.tensor, spec="bti,tu->bui")
        return y + _gather(bias, TENSOR, self.tensor, 0)[:, None]

    def layer_norm(self, parts, scales, biases, eps: float):
        """LayerNorm over channels split on ``tensor``: statistics are ``psum``-ed over the row."""
        total = sum(p.shape[-1] for p in parts) * self.tensor
        scales = [_gather(g, SPACE, self.space, 0) for g in scales]
        biases = [_gather(b, SPACE, self.space, 0) for b in biases]
        reduce = (lambda v: lax.psum(v, TENSOR)) if self.tensor > 1 else (lambda v: v)
        return _layer_norm_math(parts, scales, biases, eps, reduce, total)

    def sum_all(self, x: Array) -> Array:
        return lax.psum(x, MESH_AXES)

    def constrain(self, x: Array, spec: P) -> Array:
        return x
