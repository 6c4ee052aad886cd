"""Recent historic profiles: a hand-computed example with a holiday, the loop oracle, the variants."""

import numpy as np
import pytest

from jaxlab.core import tolerances
from jaxlab.timeseries import profile_run_up, profile_windows, rhp_tables, rhp_tables_reference

# 12 days from Monday 2024-01-01 (a holiday, type 2); Wednesday 10 Jan made a holiday too.
#        t: 0  1  2  3  4  5  6  7  8  9  10 11
TYPES = np.array([2, 0, 0, 0, 0, 1, 2, 0, 0, 2, 0, 0])
X = np.stack([np.arange(12.0), 10 * np.arange(12.0)], axis=1)  # day t = [t, 10 t], D = 2


def test_rhp_tables_hand_computed_with_holiday():
    tab = rhp_tables(X, TYPES, n=3)
    assert tab.shape == (12, 3, 2)
    # as of day 0 only the holiday (type 2) has been seen
    assert np.isnan(tab[0, 0]).all() and np.isnan(tab[0, 1]).all()
    np.testing.assert_allclose(tab[0, 2], [0, 0])
    # as of day 6: working days 2, 3, 4 (last three of 1..4), Saturday 5, Sunday/holiday 0 and 6
    np.testing.assert_allclose(tab[6, 0], [3, 30])
    np.testing.assert_allclose(tab[6, 1], [5, 50])
    np.testing.assert_allclose(tab[6, 2], [3, 30])
    # as of day 9 (the Wednesday holiday): working days 4, 7, 8; holidays/Sundays 0, 6, 9
    np.testing.assert_allclose(tab[9, 0], [19 / 3, 190 / 3])
    np.testing.assert_allclose(tab[9, 2], [5, 50])


def test_rhp_tables_match_loop_oracle_with_missing_days():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    x[[3, 17, 18]] = np.nan  # days with missing values never enter a mean
    x[25, 2] = np.nan
    types = rng.integers(0, 3, 60)
    atol, rtol = tolerances(np.float64)
    for n in (1, 3, 4):
        np.testing.assert_allclose(rhp_tables(x, types, n), rhp_tables_reference(x, types, n), atol=atol, rtol=rtol)


def test_profile_variants_hand_computed():
    o = np.array([10])
    hist, fc = profile_windows(X, TYPES, o, history=3, horizon=2, variant="last_rhp")
    np.testing.assert_allclose(hist[0, :, 0], [19 / 3, 19 / 3, 5])  # days 7, 8 (work), 9 (holiday)
    np.testing.assert_allclose(fc[0, :, 0], [19 / 3, 19 / 3])
    hist, fc = profile_windows(X, TYPES, o, history=3, horizon=2, variant="loose_rhp")
    np.testing.assert_allclose(hist[0, :, 0], [14 / 3, 19 / 3, 5])  # day 7 uses the table of day 7
    np.testing.assert_allclose(fc[0, :, 0], [19 / 3, 19 / 3])
    hist, fc = profile_windows(X, TYPES, o, history=3, horizon=2, variant="persistence")
    np.testing.assert_allclose(hist[0, :, 1], [60, 70, 80])
    np.testing.assert_allclose(fc[0, :, 1], [90, 90])
    hist, fc = profile_windows(X, TYPES, np.array([11]), history=1, horizon=1, variant="tenday")
    np.testing.assert_allclose(hist[0, 0], [4.5, 45])  # mean of days 0..9
    np.testing.assert_allclose(fc[0, 0], [5.5, 55])  # mean of days 1..10


def test_profile_errors():
    with pytest.raises(ValueError, match="unknown profile variant"):
        profile_windows(X, TYPES, np.array([10]), history=3, horizon=2, variant="median")
    with pytest.raises(ValueError, match="choose origins >= history"):
        profile_windows(X, TYPES, np.array([10]), history=3, horizon=2, variant="tenday")
    with pytest.raises(ValueError, match="day_type must have shape"):
        rhp_tables(X, TYPES[:5])
    assert profile_run_up("last_rhp", 3) == 21 and profile_run_up("tenday") == 10
