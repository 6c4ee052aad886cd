"""WeatherMixer pieces: patching, losses, LayerNorm-over-parts head, rollout, the exchange-again backward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.core import tolerances
from jaxlab.methods import weathermixer as wm

from ...timeseries.zoo_helpers import quick_jit


def _run(f, *args):
    """jit with the quick compile options (tests compile many small programs)."""
    return quick_jit(f)(*args)


MODEL = wm.WeatherMixer(grid=(8, 12), channels=8, patch=3, hidden=16, token_hidden=16, channel_hidden=16,
                        num_blocks=1)


def test_patchify_layout_and_roundtrip():
    x = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
    t = wm.patchify(x, 2)
    assert t.shape == (2, 4 * 3, 3 * 2)
    # token (lat 1, strip 2) holds lon 4..5; features ordered (channel, position in the strip)
    np.testing.assert_array_equal(t[0, 1 * 3 + 2], x[0, 1, 4:6, :].T.reshape(-1))
    np.testing.assert_array_equal(wm.unpatchify(t, 4, 6, 2), x)


def test_latitude_weighted_losses(draw):
    w = wm.latitude_weights(wm.grid_latitudes(8))
    assert w.dtype == np.float32 and abs(float(w.mean()) - 1.0) < 1e-6
    p = draw((2, 8, 12, 3))
    t = draw((2, 8, 12, 3))
    atol, rtol = tolerances(jnp.float32)
    np.testing.assert_allclose(float(_run(wm.weighted_mse, p, t, jnp.asarray(w))),
                               wm.weighted_mse_reference(p, t, w), rtol=rtol)
    # uniform error: weighting changes nothing
    r = _run(wm.weighted_rmse, t + 0.5, t, jnp.asarray(w))
    np.testing.assert_allclose(r, np.full(3, 0.5), rtol=rtol)


@pytest.fixture(scope="module")
def params():
    return wm.init_params(MODEL, key=jax.random.key(7))


def test_model_shapes_heads_and_rollout(params, draw):
    x = draw((1, 8, 12, 8))
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(params))  # also with x64 enabled
    apply = wm.make_apply(MODEL)
    add = MODEL.clone(linear_residual=False)
    # the `add` head has no residual layers; with zero recovery weights it returns the state
    p_add = {k: v for k, v in params.items() if k not in ("residual", "residual_norm", "pred_norm")}
    p_add["recovery"] = jax.tree.map(jnp.zeros_like, p_add["recovery"])

    def run(p, p_add, x):
        y1 = apply(p, x)
        return wm.rollout(apply, p, x, 2), y1, apply(p, y1), wm.make_apply(add)(p_add, x)

    ys, y1, y2, same = _run(run, params, p_add, x)
    assert y1.shape == x.shape and y1.dtype == jnp.float32
    atol, rtol = tolerances(jnp.float32)
    np.testing.assert_allclose(ys[0], y1, atol=atol, rtol=rtol)
    np.testing.assert_allclose(ys[1], y2, atol=atol, rtol=rtol)
    np.testing.assert_allclose(same, x)


def test_unknown_strategy():
    with pytest.raises(ValueError, match="strategy must be one of"):
        wm.make_apply(MODEL, None, strategy="fsdp")
