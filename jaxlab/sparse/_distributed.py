"""A row-partitioned sparse matrix over one mesh axis, with its halo exchanged by ``shard_map`` collectives.

``shard_rows(A, mesh, axis)`` splits the rows of ``A`` into equal blocks, one per device along
``axis`` (block ``p`` holds rows and vector entries ``p*m .. (p+1)*m - 1``). At setup it finds the
halo, the entries of ``x`` that each block's rows read from other blocks, and picks how to fetch it:

* ``"ppermute"`` when the matrix is banded relative to the blocks (every block reads only the last
  ``w`` entries of the block before it and the first ``w`` of the block after, ``w <= m``): two
  ``lax.ppermute`` of ``w`` entries per product, so each device receives ``2 w`` entries;
* ``"gather"`` otherwise: each block packs the entries that any other block reads (at most ``s``,
  the largest such set) and one ``lax.all_gather`` gives every device all packs, ``(P - 1) s``
  entries received per device;
* ``"none"`` for a block-diagonal matrix (nothing to fetch).

Each block's rows are stored as column-major ELL (values and column indices, padded to the longest row) whose
columns index the block's extended vector ``[left halo | own entries | right halo]`` (ppermute) or
``[own entries | every block's pack]`` (gather). ``A @ x`` is one ``shard_map``; ``krylov.solve``
takes the matrix as it takes any jaxlab matrix, and its dot products over vectors laid out by
:meth:`ShardedRows.vector_sharding` become all-reduces (``psum``) of one scalar each.

Gradients through a solve with a sharded matrix are not provided (there is no transpose product).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._base import AbstractSparseMatrix, Transposed
from ._ell import ell_matvec

HALO_METHODS = ("auto", "ppermute", "gather")


def _shard_map(f, mesh, in_specs, out_specs):
    if hasattr(jax, "shard_map"):
        return jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    from jax.experimental.shard_map import shard_map  # JAX before 0.7

    return shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)


@dataclasses.dataclass(frozen=True)
class HaloPlan:
    """What each product exchanges (static, computed at setup).

    Attributes:
      kind: ``"ppermute"``, ``"gather"`` or ``"none"``.
      width: ppermute: entries fetched from each neighbour (``w``); gather: entries in each pack (``s``).
      num_shards: blocks (devices along the axis), ``P``.
      block: rows per block, ``m``.
    """

    kind: str
    width: int
    num_shards: int
    block: int

    def received_entries(self) -> int:
        """Entries of ``x`` each device receives per product: ``2 w`` (ppermute), ``(P - 1) s`` (gather), 0."""
        if self.kind == "ppermute":
            return 2 * self.width
        if self.kind == "gather":
            return (self.num_shards - 1) * self.width
        return 0


@jax.tree_util.register_pytree_node_class
class ShardedRows:
    """A square sparse matrix whose row blocks live on the devices of one mesh axis (see the module doc).

    Build it with :func:`shard_rows`. ``A @ x`` takes a vector of shape ``(n,)`` (any layout; laid
    out by :meth:`vector_sharding` it needs no resharding) and returns one laid out that way.

    Attributes:
      values, columns: ``(P, k, m)`` column-major ELL blocks (columns index each block's extended vector).
      send: ``(P, s)`` positions, inside each block, of the entries it packs for the others (gather only).
      shape, dtype, mesh, axis, plan: the matrix's size and type, where it lives, its :class:`HaloPlan`.
    """

    def __init__(self, values, columns, send, *, shape, mesh, axis, plan):
        self.values, self.columns, self.send = values, columns, send
        self.shape, self.mesh, self.axis, self.plan = tuple(shape), mesh, axis, plan

    def tree_flatten(self):
        return (self.values, self.columns, self.send), (self.shape, self.mesh, self.axis, self.plan)

    @classmethod
    def tree_unflatten(cls, aux, children):
        shape, mesh, axis, plan = aux
        return cls(*children, shape=shape, mesh=mesh, axis=axis, plan=plan)

    @property
    def dtype(self):
        return self.values.dtype

    def vector_sharding(self) -> NamedSharding:
        """The layout of vectors that matches the rows: split over ``axis``, replicated over other axes."""
        return NamedSharding(self.mesh, P(self.axis))

    def shard_vector(self, x) -> jax.Array:
        """``x`` (shape ``(n,)``) laid out by :meth:`vector_sharding`."""
        return jax.device_put(jnp.asarray(x, self.dtype), self.vector_sharding())

    def __call__(self, x):
        """``A @ x``: krylov takes the matrix as a linear operator ``x -> A x`` (matrix-free; no named preconditioner)."""
        return self @ x

    def __matmul__(self, x):
        x = jnp.asarray(x)
        if x.shape != (self.shape[1],):
            raise ValueError(f"a ShardedRows matrix multiplies vectors of shape ({self.shape[1]},), got {x.shape}")
        return _sharded_matvec(self.values, self.columns, self.send, x, plan=self.plan, axis=self.axis,
                               mesh=self.mesh)

    def todense(self) -> np.ndarray:
        """The matrix as a dense NumPy array (for tests and small cases)."""
        out = np.zeros(self.shape, np.asarray(self.values).dtype)
        vals, cols, send = (np.asarray(a) for a in (self.values, self.columns, self.send))
        plan = self.plan
        m = plan.block
        for p in range(plan.num_shards):
            glob = _ext_to_global(plan, p, send)
            for i in range(m):
                for v, c in zip(vals[p, :, i], cols[p, :, i]):
                    if v != 0:
                        out[p * m + i, glob[c]] += v
        return out


@functools.partial(jax.jit, static_argnames=("plan", "axis", "mesh"))
def _sharded_matvec(values, columns, send, x, *, plan: HaloPlan, axis: str, mesh: Mesh):
    """``A @ x`` as one ``shard_map``, jitted: called eagerly, a ``shard_map`` runs its body op by op (84 XLA
    compilations for one product of a block-diagonal matrix); jitted it is one program, compiled once per layout
    and shape. Inside a caller's jit it is inlined."""
    spec = P(axis)
    block = P(axis, None, None)

    def local(values, columns, send, xl):
        if plan.kind == "ppermute":
            w, n_sh = plan.width, plan.num_shards
            left = lax.ppermute(xl[-w:], axis, perm=[(i, i + 1) for i in range(n_sh - 1)])
            right = lax.ppermute(xl[:w], axis, perm=[(i + 1, i) for i in range(n_sh - 1)])
            ext = jnp.concatenate([left, xl, right])
        elif plan.kind == "gather":
            packs = lax.all_gather(xl[send[0]], axis, tiled=True)
            ext = jnp.concatenate([xl, packs])
        else:
            ext = xl
        # Column-major ELL through the format's own XLA product (padding: value 0 at column 0).
        return ell_matvec(values[0], columns[0], ext, values.shape[1])

    f = _shard_map(local, mesh, in_specs=(block, block, P(axis, None), spec), out_specs=spec)
    return f(values, columns, send, x)


def _ext_to_global(plan: HaloPlan, p: int, send: np.ndarray) -> np.ndarray:
    """Global column of each position of block ``p``'s extended vector."""
    m, w = plan.block, plan.width
    own = np.arange(p * m, (p + 1) * m)
    if plan.kind == "ppermute":
        return np.concatenate([np.arange(p * m - w, p * m), own, np.arange((p + 1) * m, (p + 1) * m + w)])
    if plan.kind == "gather":
        packs = [q * m + send[q] for q in range(plan.num_shards)]
        return np.concatenate([own, *packs])
    return own


def shard_rows(A: Any, mesh: Mesh, axis: str, *, halo: str = "auto", dtype: Any = None) -> ShardedRows:
    """Splits the rows of the square matrix ``A`` over the devices of ``mesh`` along ``axis``.

    Args:
      A: a SciPy sparse matrix, a jaxlab sparse matrix (or its ``.T``) or a dense array.
      mesh: the device mesh; the matrix is replicated over its other axes.
      axis: the mesh axis the rows are split over; ``n`` must divide by its size.
      halo: ``"auto"`` (ppermute when the matrix is banded relative to the blocks, else gather),
        ``"ppermute"`` (raises if the matrix is not banded that way) or ``"gather"``.
      dtype: the values' dtype (default: ``A``'s).

    Returns:
      A :class:`ShardedRows` matrix.

    Raises:
      ValueError: for a non-square matrix, ``n`` not divisible by the axis size, an unknown axis or
        halo method, or ``halo="ppermute"`` for a matrix that reads beyond its neighbour blocks.

    Examples:
      >>> import jax, numpy as np, jaxlab.sparse as jsparse
      >>> mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("rows",))
      >>> A = jsparse.shard_rows(jsparse.poisson2d(4), mesh, "rows")
      >>> A.plan.kind, float((A @ np.ones(16))[5])
      ('none', 0.0)
    """
    if halo not in HALO_METHODS:
        raise ValueError(f"halo must be one of {HALO_METHODS}, got {halo!r}")
    if axis not in mesh.axis_names:
        raise ValueError(f"axis {axis!r} is not an axis of the mesh {dict(mesh.shape)}; choose one of "
                         f"{list(mesh.axis_names)}")
    if isinstance(A, (AbstractSparseMatrix, Transposed)):
        A = A.to_scipy()
    S = sp.csr_matrix(A)
    n, n2 = tuple(S.shape)  # type: ignore[misc]  (SciPy's stubs leave the shape optional)
    if n != n2:
        raise ValueError(f"shard_rows needs a square matrix, got shape {S.shape}")
    n_sh = int(mesh.shape[axis])
    if n % n_sh:
        raise ValueError(f"the matrix has {n} rows, which do not split into {n_sh} equal blocks (mesh axis "
                         f"{axis!r}); use a size divisible by {n_sh} or another mesh")
    dtype = np.dtype(dtype) if dtype is not None else S.dtype
    S.sort_indices()
    m = n // n_sh
    rows_of = [S[p * m:(p + 1) * m] for p in range(n_sh)]
    # Halo: how far each block reads beyond itself.
    width = 0
    remote: list[np.ndarray] = []
    for p, B in enumerate(rows_of):
        cols = np.unique(B.indices)
        outside = cols[(cols < p * m) | (cols >= (p + 1) * m)]
        remote.append(outside)
        if outside.size:
            width = max(width, int(p * m - outside.min()) if outside.min() < p * m else 0,
                        int(outside.max() - ((p + 1) * m - 1)) if outside.max() >= (p + 1) * m else 0)
    banded = width <= m
    if halo == "ppermute" and not banded:
        raise ValueError(f"halo='ppermute' needs each block to read at most {m} entries beyond its edges, but one "
                         f"reads {width}; use halo='gather' (or 'auto')")
    if all(r.size == 0 for r in remote):
        kind = "none"
    elif halo == "gather" or (halo == "auto" and not banded):
        kind = "gather"
    else:
        kind = "ppermute"
    # Gather: block q packs the entries of its own that any other block reads.
    send_sets = [np.zeros(0, np.int64) for _ in range(n_sh)]
    if kind == "gather":
        for q in range(n_sh):
            need = np.unique(np.concatenate([r[(r >= q * m) & (r < (q + 1) * m)] for p, r in enumerate(remote)
                                             if p != q] or [np.zeros(0, np.int64)]))
            send_sets[q] = need - q * m
        width = max(1, max(s.size for s in send_sets))
    elif kind == "none":
        width = 0
    send = np.zeros((n_sh, max(1, width if kind == "gather" else 1)), np.int32)
    if kind == "gather":
        for q, s in enumerate(send_sets):
            send[q, :s.size] = s
    plan = HaloPlan(kind=kind, width=int(width), num_shards=n_sh, block=m)
    k = max(1, int(np.diff(S.indptr).max()) if n else 1)
    values = np.zeros((n_sh, k, m), dtype)
    columns = np.zeros((n_sh, k, m), np.int32)
    for p, B in enumerate(rows_of):
        glob = _ext_to_global(plan, p, send)
        pos = np.full(n, -1, np.int64)  # global column -> its first position in the extended vector
        ok = (glob >= 0) & (glob < n)
        first = np.unique(glob[ok], return_index=True)
        pos[first[0]] = np.flatnonzero(ok)[first[1]]
        lengths = np.diff(B.indptr)
        slot = np.arange(B.nnz) - np.repeat(B.indptr[:-1], lengths)
        row = np.repeat(np.arange(m), lengths)
        assert np.all(pos[B.indices] >= 0)
        values[p, slot, row] = B.data
        columns[p, slot, row] = pos[B.indices]
    block = NamedSharding(mesh, P(axis, None, None))
    return ShardedRows(jax.device_put(values, block), jax.device_put(columns, block),
                       jax.device_put(send, NamedSharding(mesh, P(axis, None))), shape=(n, n), mesh=mesh,
                       axis=axis, plan=plan)
