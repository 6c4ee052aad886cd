"""magnitude_masks with explicit scores (e.g. the modulus of complex weights stored as two real arrays)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import prune


def test_scores_replace_magnitudes_with_exact_counts(draw):
    params = {"a": draw((10, 10), jnp.float64), "b": draw((5, 4), jnp.float64)}
    scores = jax.tree.map(lambda p: -np.abs(np.asarray(p)), params)      # keep the smallest weights instead
    for scope in ("global", "layer"):
        m = prune.magnitude_masks(params, 0.6, scope=scope, scores=scores)
        plain = prune.magnitude_masks(params, 0.6, scope=scope)
        assert abs(prune.density(m) - 0.4) <= 2 / 120
        w = np.abs(np.concatenate([np.asarray(params[k]).ravel() for k in "ab"]))
        kept = np.concatenate([np.asarray(m[k]).ravel() for k in "ab"])
        if scope == "global":
            assert w[kept].max() <= w[~kept].min()
        assert not np.array_equal(np.asarray(m["a"]), np.asarray(plain["a"]))
    with pytest.raises(ValueError, match="one score per weight"):
        prune.magnitude_masks(params, 0.5, scores={"a": np.ones(3), "b": np.ones((5, 4))})


def test_complex_modulus_scores_keep_pairs_together(draw):
    re, im = draw((2, 50), jnp.float64), draw((2, 50), jnp.float64)
    params = {"w": {"weights_real": re, "weights_imag": im}, "dense": draw((10, 10), jnp.float64)}
    pair = {("w", "weights_real"): ("w", "weights_imag"), ("w", "weights_imag"): ("w", "weights_real")}.get
    scores = prune.complex_modulus_scores(params, pair)
    np.testing.assert_allclose(scores["w"]["weights_imag"], np.hypot(re, im), rtol=1e-6)
    np.testing.assert_allclose(scores["dense"], np.abs(params["dense"]))
    m = prune.magnitude_masks(params, 0.7, scores=scores)
    assert np.sum(np.asarray(m["w"]["weights_real"]) != np.asarray(m["w"]["weights_imag"])) <= 1
    with pytest.raises(KeyError, match="partner"):
        prune.complex_modulus_scores({"weights_real": re},
                                     lambda p: ("weights_imag",) if p == ("weights_real",) else None)
