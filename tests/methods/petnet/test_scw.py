"""SCW sorters on hand-made hit lists, and the jitted sorters against their loop references."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.methods.petnet import (Hits, calibrate_delays, calibrated_time, compact_hits, compatible_pairs,
                                   detector_delays, encode_hits, get_preset, hits_from_data, hits_from_dense,
                                   max_valid_hits, scw, scw_calibrated, scw_geometry, scw_geometry_reference,
                                   scw_reference)


def _hits(times, crystals=None, valid=None, length=None):
    """Hit lists (built on the host); ``length`` pads each list with invalid slots at the first hit's time
    (so an ignored mask would link them) and crystal, giving every hand-made case one shape."""
    t = np.asarray(times, np.int32)
    c = np.zeros_like(t) if crystals is None else np.asarray(crystals, np.int32)
    v = np.ones(t.shape, bool) if valid is None else np.asarray(valid, bool)
    if length is not None:
        pad = ((0, 0), (0, length - t.shape[-1]))
        t, c = np.pad(t, pad, mode="edge"), np.pad(c, pad, mode="edge")
        t[:, t.shape[-1] - pad[1][1]:] = t[:, :1]
        v = np.pad(v, pad)
    return Hits(*(jnp.asarray(a) for a in (t, c, v, -np.ones_like(t), np.zeros(t.shape, bool))))


CASES = [
    # (times, valid, window, accepted)
    ([0, 5], None, 8, [1, 1]),
    ([0, 8], None, 8, [1, 1]),  # a gap of exactly the window links
    ([0, 9], None, 8, [0, 0]),  # one more step: two singles
    ([0, 5, 10], None, 8, [0, 0, 0]),  # a chain of three is a multiple: dropped
    ([10, 0, 5], None, 8, [0, 0, 0]),  # order of the list does not matter
    ([30, 0, 100, 4, 200], None, 8, [0, 1, 0, 1, 0]),
    ([0, 0], None, 8, [1, 1]),  # equal times
    ([0, 5, 7], [1, 1, 0], 8, [1, 1, 0]),  # invalid slots are ignored
    ([0, 5, 10], None, 4, [0, 0, 0]),
    ([0, 5, 11], None, 5, [1, 1, 0]),  # the window option changes the chains
    ([0, 3, 30, 33, 36], None, 8, [1, 1, 0, 0, 0]),
]
M_CASES = 6  # every case padded to this length (one compiled shape)


@pytest.mark.parametrize("times,valid,window,want", CASES)
def test_scw_hand_made(times, valid, window, want):
    h = _hits([times], valid=None if valid is None else [valid], length=M_CASES)
    want = np.pad(np.asarray(want, bool), (0, M_CASES - len(want)))  # padded slots: never accepted
    np.testing.assert_array_equal(np.asarray(scw(h, window))[0], want)
    np.testing.assert_array_equal(scw_reference(h, window)[0], want)


@pytest.fixture(scope="module")
def sample(reduced4000):
    p, d = reduced4000
    d = d.take(slice(1000, 1400))  # 400 samples of the shared set
    h = hits_from_data(d)
    return p, d, h, compact_hits(h, max_valid_hits(h))


def test_jit_scw_equals_loop_on_random_samples(sample):
    p, d, h, hc = sample
    for w in (8, 3):
        want = scw_reference(hc, w)
        np.testing.assert_array_equal(np.asarray(scw(hc, w)), want)
        np.testing.assert_array_equal(np.asarray(scw(h, w)), scw_reference(h, w))  # padded lists too
        assert want.sum() > 0
    # random hit lists with many ties and a random valid mask
    rng = np.random.default_rng(9)
    t = rng.integers(0, 60, (64, 24))
    v = rng.random((64, 24)) < 0.7
    hr = _hits(t, valid=v)
    np.testing.assert_array_equal(np.asarray(scw(hr, 8)), scw_reference(hr, 8))


def test_compact_and_dense_roundtrip(sample):
    p, d, h, hc = sample
    assert int(hc.valid.sum()) == int(h.valid.sum())
    dense = encode_hits(hc, p.num_steps, p.num_crystals)
    hd = hits_from_dense(dense, hc.time.shape[-1])
    # one hit per nonzero entry: equal to the list wherever no two hits share a (time, crystal)
    single = np.asarray(dense).max((1, 2)) <= 1
    np.testing.assert_array_equal(np.asarray(scw(hd, 8)).sum(1)[single], np.asarray(scw(hc, 8)).sum(1)[single])


def test_geometry_check_hand_made():
    p = get_preset("reduced")
    compat = compatible_pairs(p)
    assert compat[0, 0] and compat[10, 50] and compat[10, 49] and compat[10, 51] and not compat[10, 52]
    assert not compat[10, 20]
    np.testing.assert_array_equal(compat, compat.T)
    h = _hits([[0, 3, 50, 53]], crystals=[[10, 50, 10, 20]], length=4)
    np.testing.assert_array_equal(np.asarray(scw_geometry(h, jnp.asarray(compat), 8, "kill"))[0], [1, 1, 0, 0])
    # a triple with one good pair: killed by "kill", its good pair kept by "single_good"
    h3 = _hits([[0, 3, 6]], crystals=[[10, 20, 50]], length=4)
    np.testing.assert_array_equal(np.asarray(scw_geometry(h3, jnp.asarray(compat), 8, "kill"))[0], [0, 0, 0, 0])
    np.testing.assert_array_equal(np.asarray(scw_geometry(h3, jnp.asarray(compat), 8, "single_good"))[0],
                                  [1, 0, 1, 0])
    # two good pairs in one chain: ambiguous, dropped
    h4 = _hits([[0, 3, 6, 9]], crystals=[[10, 50, 11, 49]])
    assert not np.asarray(scw_geometry(h4, jnp.asarray(compat), 8, "single_good")).any()
    with pytest.raises(ValueError, match="multiples"):
        scw_geometry(h4, jnp.asarray(compat), 8, "take_all")


def test_geometry_sorters_equal_loop_on_random_samples(sample):
    p, d, h, hc = sample
    compat = compatible_pairs(p)
    for policy in ("kill", "single_good"):
        got = np.asarray(scw_geometry(hc, jnp.asarray(compat), 8, policy))
        np.testing.assert_array_equal(got, scw_geometry_reference(hc, compat, 8, policy))
        assert got.sum() > 0


def test_delay_calibration(sample):
    p, d, h, hc = sample
    lt = np.broadcast_to(np.asarray(d.decay_time)[..., None], d.hit_time.shape).reshape(h.time.shape)
    est = calibrate_delays(h, lt, p.num_crystals)
    true = np.asarray(detector_delays(p))
    seen = np.isin(np.arange(p.num_crystals), np.asarray(h.crystal)[np.asarray(h.true)])
    np.testing.assert_array_equal(est[seen], true[seen])  # noise-free data: exact
    ct = np.asarray(calibrated_time(hc, est))
    keep = np.asarray(scw_calibrated(hc, jnp.asarray(est), 0))
    want = scw_reference(hc._replace(time=jnp.asarray(ct)), 0)
    np.testing.assert_array_equal(keep, want)
    # with window 0 an accepted pair shares its calibrated time
    b, m = np.nonzero(keep)
    for bi in np.unique(b):
        ts = ct[bi][keep[bi]]
        assert all(np.sum(ts == x) % 2 == 0 for x in ts)
