"""The sparse matrix-vector product as one JAX primitive, with its own JVP, transpose and vmap rules.

This module knows the formats only through the hooks they define (``_matvec_xla``, ``_coo_index``, ...)
and the ``data``/``index_arrays``/``meta`` attributes, so it imports none of them: ``_base`` (the formats'
``A @ x``) and ``_spmv`` (the public ``spmv``) both import it, and nothing imports back.

``bind_matvec(A, x)`` binds ``sparse_matvec`` on ``(A.data, *A.index_arrays, x)``. The primitive is bilinear
in ``(data, x)``; its rules say so directly instead of letting autodiff run through gathers and
scatters:

* JVP: ``d(A x) = A(dA) x + A dx`` (two more products of the same primitive).
* transpose in ``x``: the transposed product ``A^T ct`` (the same primitive with ``transpose``
  flipped), in ``data``: the sampled product ``ct[row] * x[col]`` at the stored positions.
* vmap over ``x``: the batch is folded into the right-hand-side columns (one multi-RHS product).
  vmap over the values of matrices sharing one pattern: a batched-data product. vmap over the index
  arrays (different patterns) is refused with an error.

Lowering: on CPU the XLA formulation of each format (see the format modules). On GPU, ``impl="auto"``
uses a format's Pallas kernel only where it measured faster than the XLA formulation on an H200
(``GPU_AUTO_PALLAS``: SELL-P), and CSR goes to cuSPARSE through ``jax.experimental.sparse`` (6x
our XLA form on a power-law matrix); for ELL and Hybrid XLA's gather already runs at the copy bandwidth on
stencils, and the CSR/COO kernels were 1.5-12x slower than XLA (``bench/results/sparse-gpu-*.json``).
``impl="pallas"`` forces the kernel, ``impl="xla"`` forces XLA, ``impl="pallas_interpret"`` runs the
Pallas kernel in interpret mode (tests on CPU).
"""

from __future__ import annotations

import functools
from functools import partial

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir


# The primitive-author API (jax.interpreters.{ad,batching,mlir}, jax.core.ShapedArray) is public on
# JAX 0.10; fall back to the private module should a later version move the name.
try:
    from jax.core import ShapedArray as _ShapedArray
except ImportError:  # pragma: no cover - depends on the JAX version
    from jax._src.core import ShapedArray as _ShapedArray
from jax.core import Tracer

_IMPLS = ("auto", "xla", "pallas", "pallas_interpret")

sparse_matvec_p = Primitive("sparse_matvec")


def _split(args):
    return args[0], tuple(args[1:-1]), args[-1]


def _out_rows(meta, transpose):
    return meta.shape[1] if transpose else meta.shape[0]


def _abstract_eval(data, *rest, fmt, meta, transpose, nbatch, impl, device_kind):
    del fmt, impl, device_kind
    x = rest[-1]
    lead = x.shape[:nbatch]
    return _ShapedArray(lead + (_out_rows(meta, transpose), x.shape[-1]), x.dtype)


sparse_matvec_p.def_abstract_eval(_abstract_eval)


@functools.lru_cache(maxsize=256)
def _eager_fn(params):
    return jax.jit(partial(sparse_matvec_p.bind, **dict(params)))


# Eager calls (outside jit) run the same lowering through a cached jitted bind.
sparse_matvec_p.def_impl(lambda *args, **params: _eager_fn(tuple(sorted(params.items())))(*args))


def _xla(f, meta, data, idx, x):
    # One right-hand side runs on 1-D arrays: XLA's gathers of scalars are much faster than its
    # gathers of (1,)-rows (4x on CPU for poisson2d_1000).
    if x.shape[1] == 1:
        return f(meta, data, idx, x[:, 0])[:, None]
    return f(meta, data, idx, x)


def _single(data, idx, x, *, fmt, meta, transpose, impl, platform, device_kind=None):
    if transpose:
        return _xla(fmt._rmatvec_xla, meta, data, idx, x)
    if impl == "auto" and platform == "gpu":
        y = fmt._matvec_gpu_library(meta, data, idx, x)
        if y is not None:
            return y
    use_pallas = impl in ("pallas", "pallas_interpret") or (impl == "auto" and platform == "gpu"
                                                            and fmt.GPU_AUTO_PALLAS)
    if use_pallas:
        y = fmt._matvec_pallas(meta, data, idx, x, interpret=(impl == "pallas_interpret"),
                               device_kind=device_kind)
        if y is not None:
            return y
    return _xla(fmt._matvec_xla, meta, data, idx, x)


def _impl(*args, fmt, meta, transpose, nbatch, impl, platform, device_kind):
    data, idx, x = _split(args)
    if impl == "pallas" and platform != "gpu":
        raise ValueError(
            "spmv(impl='pallas') needs a GPU backend; on CPU use impl='xla' (the default path) or "
            "impl='pallas_interpret' to check the kernel in interpret mode."
        )
    if nbatch:
        # Batched values: the XLA form under vmap, unless a kernel is asked for by name (a vmapped
        # pallas_call adds a grid axis; that is only checked in interpret mode so far).
        f = partial(_single, fmt=fmt, meta=meta, transpose=transpose, platform=platform,
                    impl="xla" if impl == "auto" else impl, device_kind=device_kind)
        return jax.vmap(lambda d, v: f(d, idx, v))(data, x)
    return _single(data, idx, x, fmt=fmt, meta=meta, transpose=transpose, impl=impl,
                   platform=platform, device_kind=device_kind)


def _array_device_kind(a) -> str | None:
    """The device kind of a concrete array (None when traced): the key of the kernels' block-size tables."""
    if isinstance(a, Tracer) or not isinstance(a, jax.Array):
        return None
    return next(iter(a.devices())).device_kind


def _backend_device_kind(ctx) -> str | None:
    """For a traced matrix: the kind of the lowering backend's devices if they are all of one kind, else None.

    (Inside jit the arrays are traced and lowering happens before devices are assigned, so when the
    backend mixes device kinds the kernels fall back to their tables' ``"default"`` entry.)
    """
    backend = ctx.module_context.backend
    if backend is None:
        return None
    kinds = {d.device_kind for d in backend.devices()}
    return kinds.pop() if len(kinds) == 1 else None


def _lowering(platform):
    def rule(ctx, *args, device_kind, **params):
        kind = device_kind if device_kind is not None else _backend_device_kind(ctx)
        f = partial(_impl, platform=platform, device_kind=kind)
        return mlir.lower_fun(f, multiple_results=False)(ctx, *args, **params)

    return rule


mlir.register_lowering(sparse_matvec_p, _lowering("cpu"))
for _platform in ("cuda", "rocm"):
    mlir.register_lowering(sparse_matvec_p, _lowering("gpu"), platform=_platform)


def _sampled(ct, data, idx, x, *, fmt, meta, transpose, nbatch):
    """Cotangent of the stored values: ``sum_k ct[row, k] * x[col, k]`` at each stored position."""
    f = lambda c, v: fmt._sampled(meta, data.shape[nbatch:], idx, c, v, transpose)
    if nbatch:
        return jax.vmap(f)(ct, x)
    return f(ct, x)


def _jvp(primals, tangents, *, fmt, meta, transpose, nbatch, impl, device_kind):
    params = dict(fmt=fmt, meta=meta, transpose=transpose, nbatch=nbatch, impl=impl, device_kind=device_kind)
    data, idx, x = _split(primals)
    ddata, dx = tangents[0], tangents[-1]
    y = sparse_matvec_p.bind(*primals, **params)
    dy = None
    if type(ddata) is not ad.Zero:
        dy = sparse_matvec_p.bind(ddata, *idx, x, **params)
    if type(dx) is not ad.Zero:
        t = sparse_matvec_p.bind(data, *idx, dx, **params)
        dy = t if dy is None else dy + t
    if dy is None:
        dy = jnp.zeros_like(y)
    return y, dy


def _transpose(ct, *args, fmt, meta, transpose, nbatch, impl, device_kind):
    data, idx, x = _split(args)
    nones = [None] * len(args)
    if type(ct) is ad.Zero:
        return nones
    if any(ad.is_undefined_primal(i) for i in idx):
        raise ValueError("sparse_matvec is not linear in the index arrays of the matrix")
    out = list(nones)
    if ad.is_undefined_primal(data) and ad.is_undefined_primal(x):
        raise ValueError("sparse_matvec is bilinear, not linear, in (data, x) together")
    if ad.is_undefined_primal(data):
        out[0] = _sampled(ct, data.aval, idx, x, fmt=fmt, meta=meta, transpose=transpose,
                          nbatch=nbatch)
    if ad.is_undefined_primal(x):
        out[-1] = sparse_matvec_p.bind(data, *idx, ct, fmt=fmt, meta=meta,
                                       transpose=not transpose, nbatch=nbatch, impl=impl,
                                       device_kind=device_kind)
    return out


ad.primitive_jvps[sparse_matvec_p] = _jvp
ad.primitive_transposes[sparse_matvec_p] = _transpose


def _batch(args, dims, *, fmt, meta, transpose, nbatch, impl, device_kind):
    data, idx, x = _split(args)
    ddim, idims, xdim = dims[0], dims[1:-1], dims[-1]
    if any(d is not None for d in idims):
        raise ValueError(
            "vmap over sparse matrices with different sparsity patterns is not supported: batch "
            "over the values only (e.g. jax.vmap(lambda d: A.with_data(d) @ x)(values))."
        )
    params = dict(fmt=fmt, meta=meta, transpose=transpose, impl=impl, device_kind=device_kind)
    if ddim is None:
        # Fold the batch into the right-hand-side columns: one multi-RHS product.
        x = jnp.moveaxis(x, xdim, -1)  # (..., n, k, B)
        b = x.shape[-1]
        x = x.reshape(x.shape[:-2] + (x.shape[-2] * b,))
        y = sparse_matvec_p.bind(data, *idx, x, nbatch=nbatch, **params)
        return y.reshape(y.shape[:-1] + (-1, b)), y.ndim
    data = jnp.moveaxis(data, ddim, 0)
    b = data.shape[0]
    if xdim is None:
        x = jnp.broadcast_to(x, (b,) + x.shape)
    else:
        x = jnp.moveaxis(x, xdim, 0)
    if nbatch:
        # Already batched over values: merge the two value batches into one.
        data = data.reshape((-1,) + data.shape[2:])
        x = x.reshape((-1,) + x.shape[2:])
        y = sparse_matvec_p.bind(data, *idx, x, nbatch=1, **params)
        return y.reshape((b, -1) + y.shape[1:]), 0
    y = sparse_matvec_p.bind(data, *idx, x, nbatch=1, **params)
    return y, 0


batching.primitive_batchers[sparse_matvec_p] = _batch


def _unshard(a):
    """Replicates an operand that carries an explicit sharding (``AxisType.Explicit`` meshes).

    The product itself is not distributed: its gathers need the whole of ``x``, and under explicit
    sharding JAX refuses a gather whose output sharding is ambiguous.
    """
    sharding = getattr(jax.typeof(a), "sharding", None)
    if isinstance(sharding, jax.sharding.NamedSharding) and any(s is not None for s in sharding.spec):
        replicated = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
        return jax.sharding.reshard(a, replicated)
    return a


def bind_matvec(A, x, *, transpose: bool = False, impl: str = "auto"):
    """``A @ x`` (or ``A^T x``) for a format instance ``A``, after checking ``x``'s shape and dtype."""
    if impl not in _IMPLS:
        raise ValueError(f"unknown impl {impl!r}; choose one of {_IMPLS}")
    x = jnp.asarray(x)
    m, n = A.shape
    if transpose:
        m, n = n, m
    if x.ndim not in (1, 2) or x.shape[0] != n:
        what = "A.T" if transpose else "A"
        raise ValueError(
            f"spmv: {what} has shape {(m, n)} but x has shape {x.shape}; x must have shape ({n},) "
            f"or ({n}, k)."
        )
    if x.dtype != A.dtype:
        raise TypeError(
            f"spmv: x has dtype {x.dtype} but the matrix has dtype {A.dtype}; cast one of them "
            f"(x.astype({A.dtype}) or A.astype({x.dtype})) so no precision is lost silently."
        )
    x2 = _unshard(x[:, None] if x.ndim == 1 else x)
    leaves = [_unshard(a) for a in (A.data, *A.index_arrays)]
    y = sparse_matvec_p.bind(*leaves, x2, fmt=type(A), meta=A.meta,
                             transpose=bool(transpose), nbatch=0, impl=impl,
                             device_kind=_array_device_kind(A.data))
    return y[:, 0] if x.ndim == 1 else y
