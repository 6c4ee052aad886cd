"""Jigsaw layers inside shard_map equal the dense layers (forward and gradients)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxlab import parallel as jp
from jaxlab.core import tolerances

from ..timeseries.zoo_helpers import quick_jit

X_SPEC = P("data", "space", "tensor")


def _reference(x, wc, bc, wt, bt, g, b):
    local = jp.LocalOps()
    y = local.channel_dense([(x, wc), (jnp.cos(x), 2 * wc)], bc)
    z = local.token_dense(y, wt, bt)
    (n,) = local.layer_norm([z], [g], [b], 1e-5)
    return jnp.sum(jnp.sin(n))


def test_layer_norm_reference_matches_flax(draw):
    x, g, b = draw((2, 5, 12)), draw((12,)), draw((12,))

    @quick_jit  # one program for the three LayerNorms (eagerly: one compilation per operation)
    def norms(x, g, b):
        (ours,) = jp.LocalOps().layer_norm([x], [g], [b], 1e-5)
        theirs = nn.LayerNorm(epsilon=1e-5).apply({"params": {"scale": g, "bias": b}}, x)
        a, c = jp.LocalOps().layer_norm([x[..., :5], x[..., 5:]], [g[:5], g[5:]], [b[:5], b[5:]], 1e-5)
        return ours, theirs, a, c

    ours, theirs, a, c = norms(x, g, b)
    atol, rtol = tolerances(jnp.float32)
    np.testing.assert_allclose(ours, theirs, atol=atol, rtol=rtol)
    # a LayerNorm over two parts is the LayerNorm of their concatenation
    np.testing.assert_allclose(np.concatenate([a, c], -1), theirs, atol=atol, rtol=rtol)


@pytest.mark.parametrize("sizes", [(2, 2, 2)], ids=lambda s: "x".join(map(str, s)))
def test_jigsaw_layers_match_dense(sizes):
    mesh = jp.make_mesh(*sizes)
    d, s, t = sizes
    b_, tok, din, dout, th = 2 * d, 16, 8, 16, 8
    # NumPy inputs: nothing compiled to draw them or to slice them onto the mesh
    rng = np.random.default_rng(0)
    shapes = [(b_, tok, din), (din, dout), (dout,), (tok, th), (th,), (dout,), (dout,)]
    args = tuple(rng.normal(size=shape).astype(np.float32) for shape in shapes)
    specs = (X_SPEC, jp.CHANNEL_KERNEL, jp.CHANNEL_VECTOR, jp.TOKEN_KERNEL, jp.TOKEN_VECTOR,
             jp.CHANNEL_VECTOR, jp.CHANNEL_VECTOR)

    def sharded(remat):
        ops = jp.JigsawOps.from_mesh(mesh, remat=remat)

        def local(x, wc, bc, wt, bt, g, b):
            wc, bc, wt, bt, g, b = ops.data_parallel((wc, bc, wt, bt, g, b))
            y = ops.channel_dense([(x, wc), (jnp.cos(x), 2 * wc)], bc)  # two parts, as the head's
            z = ops.token_dense(y, wt, bt)
            (n,) = ops.layer_norm([z], [g], [b], 1e-5)
            return ops.sum_all(jnp.sum(jnp.sin(n)))

        return jp.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P())

    # both backward passes: exchange again (the default) and autodiff of the forward exchanges
    def both(*a):
        return [jax.value_and_grad(sharded(r), argnums=tuple(range(7)))(*a) for r in (True, False)]

    placed = [jax.device_put(a, jax.sharding.NamedSharding(mesh, sp)) for a, sp in zip(args, specs)]
    results = jax.device_get(quick_jit(both)(*placed))
    want_v, want_g = jax.device_get(quick_jit(jax.value_and_grad(_reference, argnums=tuple(range(7))))(*args))
    _, rtol = tolerances(jnp.float32)
    # gradients that vanish analytically (the token bias before a LayerNorm) are compared on the
    # scale of the largest gradient
    scale = max(float(np.max(np.abs(w))) for w in want_g)
    for v, grads in results:
        np.testing.assert_allclose(v, want_v, rtol=rtol)
        for got, want in zip(grads, want_g):
            np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)
