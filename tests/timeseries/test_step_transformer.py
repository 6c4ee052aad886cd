"""The per-step vanilla transformer and its post-norm trunk, moved from methods/recycle into the layer."""

import jax
import numpy as np

from jaxlab import timeseries as ts

from .zoo_helpers import quick_jit, random_variables


def _positions_reference(n, d):
    """Vaswani et al. (2017) position table, entry by entry."""
    return np.array([[np.sin(p / 10000 ** (i / d)) if i % 2 == 0 else np.cos(p / 10000 ** ((i - 1) / d))
                      for i in range(d)] for p in range(n)])


def test_vanilla_transformer_shapes_names_and_positions():
    from jaxlab.methods import recycle

    assert recycle.VanillaTransformer is ts.VanillaTransformer and recycle.EncoderDecoder is ts.EncoderDecoder
    np.testing.assert_allclose(recycle.sinusoidal_positions(9, 6), _positions_reference(9, 6), atol=1e-12)
    m = ts.VanillaTransformer(d_model=8, d_ff=8)
    hist, hf, ff = np.ones((2, 12)), np.zeros((2, 12, 3)), np.zeros((2, 5, 3))   # NumPy: no eager compiles
    params = random_variables(m, hist, hf, ff)           # init's tree, traced but not run
    # the parameter names are those the recycle module had (checkpoints keep loading)
    assert set(params["params"]) == {"value_proj", "query_proj", "EncoderDecoder_0", "head"}
    assert {"enc_proj", "dec_proj", "enc_norm", "dec_norm", "EncoderLayer_0", "DecoderLayer_0"} <= set(
        params["params"]["EncoderDecoder_0"])
    hists = np.stack([hist, hist, hist])
    hists[1, :, 0] = hists[2, :, 5] = 3.0
    y = np.asarray(quick_jit(jax.vmap(lambda h: m.apply(params, h, hf, ff)))(hists))
    assert y.shape == (3, 2, 5) and np.all(np.isfinite(y))
    # positions make the order of history steps matter (ReCycle's cycle tokens have none)
    assert not np.allclose(y[1], y[2])
