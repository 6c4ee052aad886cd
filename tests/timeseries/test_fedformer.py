"""FEDformer: Fourier blocks against a dense DFT, mode selection, modulus pruning, structured shrinking of modes."""

from functools import partial

import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import prune
from jaxlab import timeseries as ts

from .zoo_helpers import assert_identity_shrink, assert_residual_widths, assert_shrunk_equals_masked, half_keep
from .zoo_helpers import quick_jit, random_variables


def _dft(length):
    """The forward real DFT's first L//2 + 1 rows and the inverse for a half spectrum, as dense matrices."""
    t = np.arange(length)
    f = np.arange(length // 2 + 1)
    forward = np.exp(-2j * np.pi * np.outer(f, t) / length)           # (F, L)
    weight = np.where((f == 0) | ((length % 2 == 0) & (f == length // 2)), 1.0, 2.0)

    def irfft(spec):                                                  # spec (F, ...) -> (L, ...)
        spec = spec.copy()
        spec[0] = spec[0].real
        if length % 2 == 0:
            spec[-1] = spec[-1].real
        basis = np.exp(2j * np.pi * np.outer(t, f) / length) * weight[None]   # (L, F)
        return np.real(np.tensordot(basis, spec, axes=(1, 0))) / length

    return forward, irfft


def fourier_block_reference(q, wr, wi, index):
    q = np.asarray(q, np.float64)
    forward, irfft = _dft(q.shape[1])
    spec = np.tensordot(forward, q, axes=(1, 1))                       # (F, B, H, E)
    w = np.asarray(wr, np.float64) + 1j * np.asarray(wi, np.float64)   # (H, E, O, M)
    out = np.zeros(spec.shape[:3] + (w.shape[2],), complex)
    for m, f in enumerate(index):
        out[f] = np.einsum("bhe,heo->bho", spec[f], w[..., m])
    return np.moveaxis(irfft(out), 0, 1)


def fourier_cross_reference(q, k, wr, wi, index_q, index_kv, scale):
    q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
    fq, irfft = _dft(q.shape[1])
    fk, _ = _dft(k.shape[1])
    sq = np.tensordot(fq, q, axes=(1, 1))[list(index_q)]              # (Mq, B, H, E)
    sk = np.tensordot(fk, k, axes=(1, 1))[list(index_kv)]             # (Mk, B, H, E)
    w = np.asarray(wr, np.float64) + 1j * np.asarray(wi, np.float64)
    b, h = q.shape[0], q.shape[2]
    out = np.zeros((q.shape[1] // 2 + 1, b, h, w.shape[2]), complex)
    for bi in range(b):
        for hi in range(h):
            a = sq[:, bi, hi] @ sk[:, bi, hi].T                        # (Mq, Mk), no conjugate (as FEDformer)
            a = np.tanh(a.real) + 1j * np.tanh(a.imag)
            qkv = a @ sk[:, bi, hi]                                    # (Mq, E)
            for x, f in enumerate(index_q):
                out[f, bi, hi] = scale * (qkv[x] @ w[hi, :, :, x])
    return np.moveaxis(irfft(out), 0, 1)


@pytest.mark.parametrize("length", [16, 15])
def test_fourier_block_matches_a_dense_dft(length, draw):
    q = draw((2, length, 2, 3), jnp.float64)
    index = (0, 2, 5, 7)
    wr, wi = (draw((2, 3, 3, 4), jnp.float64) for _ in range(2))
    got = quick_jit(partial(ts.fourier_block, index=index))(q, wr, wi)
    np.testing.assert_allclose(got, fourier_block_reference(q, wr, wi, index), rtol=1e-9, atol=1e-10)


def test_fourier_cross_attention_matches_a_dense_dft(draw):
    q = draw((2, 14, 2, 3), jnp.float64)
    k = draw((2, 10, 2, 3), jnp.float64)
    wr, wi = (draw((2, 3, 3, 3), jnp.float64) for _ in range(2))
    got = quick_jit(partial(ts.fourier_cross_attention, index_q=(1, 3, 6), index_kv=(0, 2, 4, 5), scale=0.25))(
        q, k, wr, wi)
    np.testing.assert_allclose(got, fourier_cross_reference(q, k, wr, wi, (1, 3, 6), (0, 2, 4, 5), 0.25),
                               rtol=1e-9, atol=1e-10)


def test_mode_selection():
    assert ts.select_modes(96, 32, "low", 0) == tuple(range(32))
    r = ts.select_modes(96, 32, "random", 3)
    assert r == ts.select_modes(96, 32, "random", 3) and r != ts.select_modes(96, 32, "random", 4)
    assert len(r) == 32 and list(r) == sorted(r) and max(r) < 48
    assert ts.select_modes(10, 32, "random", 0) == (0, 1, 2, 3, 4)   # at most L // 2 modes
    with pytest.raises(ValueError, match="mode_select"):
        ts.select_modes(10, 3, "high", 0)


def test_fedformer_shapes_modulus_pruning_and_structured_shrink(draw):
    cfg = ts.FEDformerConfig(input_len=16, horizon=8, label_len=8, channels=2, d_model=8, n_heads=2, d_ff=8,
                             moving_avg=5, modes=4)
    x = draw((2, 16, 2))
    model = cfg.module()
    variables = random_variables(model, x)
    apply = quick_jit(model.apply)
    assert apply(variables, x).shape == (2, 8, 2)
    p = variables["params"]
    assert "key" not in p["encoder_0"]["attention"] and "value" not in p["decoder_0"]["cross_attention"]
    assert p["encoder_0_fourier"]["weights_real"].shape == (2, 4, 4, 4)
    # unstructured: complex weights are kept or removed whole, by modulus
    pair = lambda path: {"weights_real": path[:-1] + ("weights_imag",),   # noqa: E731
                         "weights_imag": path[:-1] + ("weights_real",)}.get(path[-1])
    fourier = {k: v for k, v in p.items() if k.endswith("_fourier")}
    masks = prune.magnitude_masks(fourier, 0.6, scores=prune.complex_modulus_scores(fourier, pair))
    for name, leaf in fourier.items():
        mr, mi = np.asarray(masks[name]["weights_real"]), np.asarray(masks[name]["weights_imag"])
        assert np.sum(mr != mi) <= 1                    # a pair splits only at the exact-count boundary
        mod = np.hypot(np.asarray(leaf["weights_real"]), np.asarray(leaf["weights_imag"]))
        kept_all = np.concatenate([np.hypot(np.asarray(v["weights_real"]), np.asarray(v["weights_imag"]))[
            np.asarray(masks[n]["weights_real"])] for n, v in fourier.items()])
        assert mod[~mr].max() <= kept_all.min() + 1e-7
    assert abs(prune.density(masks) - 0.4) <= 1 / 64
    # plain |w| ranking would split pairs
    plain = prune.magnitude_masks(fourier, 0.6)
    assert sum(int(np.sum(np.asarray(plain[n]["weights_real"]) != np.asarray(plain[n]["weights_imag"])))
               for n in fourier) > 1
    # structured: heads (with their Fourier weights) and modes
    assert_identity_shrink(cfg, variables)
    keep = half_keep(cfg, seed=4)
    assert "encoder_0/modes" in keep and "decoder_0_cross/modes" in keep
    small_cfg, small_vars, _ = assert_shrunk_equals_masked(cfg, variables, x, keep, apply_dense=apply)
    modes = cfg.fourier_modes()
    assert small_cfg.fourier_modes()["encoder_0"] == tuple(modes["encoder_0"][i] for i in keep["encoder_0/modes"])
    assert small_vars["params"]["encoder_1_fourier"]["weights_imag"].shape == (1, 4, 4, 2)
    assert_residual_widths(small_vars, 8)
    # the modes importance is the modulus: sum over the mode of |w|^2
    g = {g.name: g for g in cfg.dependency_groups()}["encoder_0/modes"]
    w = p["encoder_0_fourier"]
    want = (np.asarray(w["weights_real"]) ** 2 + np.asarray(w["weights_imag"]) ** 2).sum(axis=(0, 1, 2)) / 2
    np.testing.assert_allclose(prune.group_importance(variables, g), want, rtol=1e-5)
