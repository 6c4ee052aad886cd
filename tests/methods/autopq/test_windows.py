"""Windows: the reference's splits, exact index relations of target, history and lag, scaled conditions."""

import numpy as np
import pytest

import jaxlab.data as jd
from jaxlab.methods.autopq import SeriesSpec, calendar_steps, make_windows, reference_bounds


def _series(n_days=40):
    t = np.datetime64("2024-01-01T00:00:00", "s") + np.arange(24 * n_days) * np.timedelta64(3600, "s")
    y = np.arange(t.size, dtype=np.float64)
    return jd.time_series(t, np.stack([y, np.sin(y)], 1), columns=("y", "w"), target="y", name="ramp")


def test_reference_split_shares():
    # the reference: test = last 20%, validation = last 30% of the rest
    assert reference_bounds(8760) == {"train": (0, 4905), "val": (4905, 7008), "test": (7008, 8760)}


def test_windows_index_the_series_exactly():
    s = _series()
    spec = SeriesSpec("ramp", horizon=6, exogenous=("w",), limits=(0.0, None), history=48, period=24)
    d = make_windows(s, spec, strides={"test": 5})
    y = s.column("y")
    unscale = lambda v: d.scaler.inverse(v.astype(np.float64))  # noqa: E731
    for name, w in d.splits.items():
        a, b = d.bounds[name]
        o = w.origins
        assert o.min() >= max(a, 48) and o.max() + 6 <= b
        np.testing.assert_allclose(unscale(w.target), y[o[:, None] + np.arange(6)], atol=1e-2)
        np.testing.assert_allclose(unscale(w.history), y[o[:, None] + np.arange(-48, 0)], atol=1e-2)
        np.testing.assert_allclose(unscale(w.lag), y[o[:, None] + np.arange(6) - 7], atol=1e-2)   # lag H + 1
        assert w.future.shape == (o.size, 6, 7) and w.cond.shape == (o.size, 6 * 7 + 6)
    assert np.all(np.diff(d.splits["test"].origins) == 5) and np.all(np.diff(d.splits["train"].origins) == 1)
    tr = d.splits["train"].cond
    varying = tr.std(0) > 0
    np.testing.assert_allclose(tr.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(tr.std(0)[varying], 1, atol=1e-4)
    assert d.future_names[-1] == "w"


def test_calendar_features():
    s = _series(8)
    cal = calendar_steps(s)   # 2024-01-01 is a Monday and New Year's Day (no holidays without a country)
    assert cal.shape == (s.num_steps, 6)
    assert cal[0, 0] == 1 and cal[24 * 5, 0] == 0       # Monday works, Saturday does not
    assert cal[6, 2] == pytest.approx(1.0) and cal[0, 3] == pytest.approx(1.0)   # 06:00: sin = 1; 00:00: cos = 1
    assert cal[0, 4] == pytest.approx(0.0) and cal[0, 5] == pytest.approx(1.0)   # January


def test_windows_refuse_too_short_series():
    spec = SeriesSpec("ramp", horizon=6, exogenous=(), limits=(None, None), history=24 * 30, period=24)
    with pytest.raises(ValueError, match="holds no window"):
        make_windows(_series(), spec)
