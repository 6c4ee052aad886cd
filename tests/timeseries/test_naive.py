"""Persistence and the seasonal-mean profile against a loop oracle."""

import numpy as np
import pytest

from jaxlab import timeseries as ts


def test_profile_and_persistence_match_the_loop(getkey, draw):
    x = draw((3, 30, 2))
    model, variables = ts.make_forecaster(ts.ProfileConfig(input_len=30, horizon=4, channels=2, period=6, cycles=3),
                                          key=getkey())
    np.testing.assert_allclose(model.apply(variables, x), ts.profile_reference(x, 4, 6, 3), rtol=1e-6, atol=1e-6)
    model, variables = ts.make_forecaster(ts.PersistenceConfig(input_len=30, horizon=6, channels=2, period=6),
                                          key=getkey())
    np.testing.assert_array_equal(model.apply(variables, x), np.asarray(x)[:, 24:30])
    np.testing.assert_allclose(model.apply(variables, x), ts.profile_reference(x, 6, 6, 1), rtol=1e-6)


def test_naive_forecasters_refuse_impossible_windows():
    with pytest.raises(ValueError, match="needs a history of at least 18"):
        ts.ProfileConfig(input_len=12, horizon=4, period=6, cycles=3).module()
    with pytest.raises(ValueError, match="exceeds the period"):
        ts.PersistenceConfig(input_len=12, horizon=8, period=6).module()
