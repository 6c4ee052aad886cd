"""The PET simulator: counts follow its parameters (3 sigma), the pairing rules, and the presets."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.methods import petnet
from jaxlab.methods.petnet import (compact_hits, detector_delays, geometry_window, get_preset, hits_from_data,
                                   max_valid_hits, scw, simulate)

N = 4000


@pytest.fixture(scope="module")
def reduced(reduced4000):
    p, d = reduced4000
    assert d.num_samples == N
    return p, d


def _within_3_sigma(value, mean, sd):
    assert abs(value - mean) <= 3 * sd, (value, mean, sd)


def test_counts_follow_parameters(reduced):
    p, d = reduced
    valid, det = np.asarray(d.valid), np.asarray(d.detected)
    lam = p.activity
    # events per sample: max(1, Poisson(lam)); E = lam + e^-lam, var ~ lam
    _within_3_sigma(valid.sum(1).mean(), lam + math.exp(-lam), math.sqrt(lam / N))
    assert valid.sum(1).min() >= 1
    assert not np.asarray(d.scattered).any()  # scatter is off by default
    # detection: Bernoulli(p) per photon of a valid event
    n_ph = 2 * valid.sum()
    q = p.detection_efficiency
    _within_3_sigma(det.sum() / n_ph, q, math.sqrt(q * (1 - q) / n_ph))
    # true pairs per sample: Poisson thinning with q^2
    _within_3_sigma(np.asarray(d.true_pair).sum(1).mean(), p.pairs_per_sample, math.sqrt(p.pairs_per_sample / N))
    # decay times uniform integers in [max delay, T)
    delays = np.asarray(detector_delays(p))
    t = np.asarray(d.decay_time)[valid]
    lo, hi = delays.max(), p.num_steps
    assert t.min() >= lo and t.max() < hi
    _within_3_sigma(t.mean(), (lo + hi - 1) / 2, math.sqrt(((hi - lo) ** 2 - 1) / 12 / t.size))
    # crystal 1 uniform over the ring
    x1 = np.asarray(d.crystal)[..., 0][valid] % p.crystals_per_ring
    _within_3_sigma(x1.mean(), (p.crystals_per_ring - 1) / 2, math.sqrt((p.crystals_per_ring**2 - 1) / 12 / x1.size))


def test_delays_binomial_per_detector():
    p = get_preset("clinical")
    d = np.asarray(detector_delays(p))
    n, prob = p.delay_max, p.delay_mean / p.delay_max
    assert d.shape == (p.num_crystals,) and d.min() >= 0 and d.max() <= n
    _within_3_sigma(d.mean(), n * prob, math.sqrt(n * prob * (1 - prob) / d.size))
    _within_3_sigma(d.var(ddof=1), n * prob * (1 - prob), n * prob * (1 - prob) * math.sqrt(2 / (d.size - 1)))
    np.testing.assert_array_equal(d, np.asarray(detector_delays(p)))  # fixed per detector
    assert not np.array_equal(d, np.asarray(detector_delays(get_preset("clinical", delay_seed=1))))


def test_hit_times_and_partner_positions(reduced):
    p, d = reduced
    valid = np.asarray(d.valid)
    delays = np.asarray(detector_delays(p))
    c = np.asarray(d.crystal)
    np.testing.assert_array_equal(np.asarray(d.hit_time), np.asarray(d.decay_time)[..., None] - delays[c])
    nc = p.crystals_per_ring
    u = np.mod(c[..., 1] - (nc - c[..., 0]) + nc // 2, nc) - nc // 2  # offset from the mirror position
    u = u[valid]
    assert set(np.unique(u)) == {-2, -1, 0, 1}  # (Nc - x1 + [-2, +1]) mod Nc
    counts = np.bincount(u + 2)
    for k in counts:  # uniform over the four offsets
        _within_3_sigma(k / u.size, 0.25, math.sqrt(0.25 * 0.75 / u.size))


def test_options_antipodal_scatter_jitter():
    """One preset with every option on (one compilation): each option changes what it should."""
    p = get_preset("reduced", antipodal=True, scatter_prob=0.3, time_jitter=3.0)
    d = jax.device_get(simulate(jax.random.key(1), p, 1000))
    c, valid, sc = np.asarray(d.crystal), np.asarray(d.valid), np.asarray(d.scattered)
    nc = p.crystals_per_ring
    clean = valid & ~sc.any(-1)
    u = (np.mod(c[..., 1] - c[..., 0] - nc // 2 + nc // 2, nc) - nc // 2)[clean]
    assert set(np.unique(u)) == {-2, -1, 0, 1}  # partner around x1 + Nc/2
    frac = sc[valid].mean()
    _within_3_sigma(frac, 0.3, math.sqrt(0.21 / sc[valid].size))
    assert not (np.asarray(d.true_pair) & sc.any(-1)).any()  # a scattered decay is not a true coincidence
    delays = np.asarray(detector_delays(p))
    resid = (np.asarray(d.hit_time) - (np.asarray(d.decay_time)[..., None] - delays[c]))[valid]
    assert 2.5 < resid.std() < 3.5


def test_geometry_window_wrap_bug_and_fix():
    p = get_preset("safir")
    ids, mask = geometry_window(p)
    x = np.arange(p.num_crystals) % p.crystals_per_ring
    bug = np.isin(x, [179, 0, 1, 2])
    assert (mask.sum(1)[bug] == 0).all() and (mask.sum(1)[~bug] > 0).all()
    ids_f, mask_f = geometry_window(get_preset("safir", fix_geometry_wrap=True))
    assert (mask_f.sum(1) > 0).all()
    # crystal x = 5 on ring 0: positions 173..177 on rings 14, 15 (the reference's k_furthest_neighbours)
    got = set(ids_f[5][mask_f[5]].tolist())
    assert got == {r * 180 + xx for r in (14, 15) for xx in range(173, 178)}
    # the fixed window of x = 1 wraps: 177..180 -> 177, 178, 179, 0, 1
    got = set(ids_f[1][mask_f[1]] % 180)
    assert got == {177, 178, 179, 0, 1}


def test_encodings(reduced):
    p, d = reduced
    part = d.take(slice(0, 16))
    x = np.asarray(petnet.encode_inputs(part, p, geometry=True))
    y = np.asarray(petnet.encode_labels(part, p))
    assert x.shape == (16, p.num_steps, 2 * p.num_crystals) and y.shape == (16, p.num_steps, p.num_crystals)
    det = np.asarray(part.detected)
    np.testing.assert_allclose(x[..., : p.num_crystals].sum((1, 2)), det.sum((1, 2)))
    np.testing.assert_allclose(y.sum((1, 2)), 2 * np.asarray(part.true_pair).sum(1))
    g = x[..., p.num_crystals:]
    np.testing.assert_allclose(g * 10, np.round(g * 10), atol=1e-5)  # sums of 0.1 events
    np.testing.assert_allclose(g.sum(), 0.1 * geometry_window(p)[1].sum(1)[np.asarray(part.crystal)[det]].sum(),
                               rtol=1e-5)


def test_clinical_pairs_per_sample_and_scw_recovery():
    """0.39 +- 0.02 pairs per sample; SCW keeps 0.90 +- 0.03 of the true hits (reference log: 0.919).

    Simulated as event lists, the full 40k clinical samples cost about a second. The expected rate from
    the parameters is 20 * 0.141^2 = 0.3976; with 40k samples the simulated mean has sigma
    sqrt(0.3976 / 40000) = 0.0032, so the band 0.39 +- 0.02 is 3.9 sigma from the expected value on its
    near side. SCW's recovery is a fraction of about 32k true hits (sigma ~ 0.002, so the +-0.03 band is
    wide), computed exactly by decay ID.
    """
    p = get_preset("clinical")
    assert abs(p.pairs_per_sample - 0.39) <= 0.02
    d = simulate(jax.random.key(0), p)
    pairs = float(jnp.sum(d.true_pair)) / d.num_samples
    assert abs(pairs - 0.39) <= 0.02, pairs
    h = hits_from_data(d)
    h = compact_hits(h, max_valid_hits(h))
    keep = scw(h, 8)
    recovered = float(jnp.sum(keep & h.true)) / float(jnp.sum(h.true))
    assert abs(recovered - 0.90) <= 0.03, recovered


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="unknown PET preset 'clinic'"):
        get_preset("clinic")
    with pytest.raises(ValueError, match="num_samples"):
        simulate(jax.random.key(0), "reduced", 0)
