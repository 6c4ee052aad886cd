"""ISLP's Bikeshare and pvlib's TMY3 loaders: shapes, filled gaps, units, and the install hints."""

import numpy as np
import pytest

import jaxlab.data as jd

HAS_ISLP = jd.package_dir("ISLP") is not None
HAS_PVLIB = jd.package_dir("pvlib") is not None


@pytest.mark.skipif(not HAS_ISLP, reason="needs `pip install --no-deps islp==0.6.0`")
def test_bikeshare_fills_the_115_missing_hours_linearly():
    s = jd.load_bikeshare()
    assert s.num_steps == 8760 and s.steps_per_cycle == 24 and s.target == "bikers"
    assert str(s.timestamps[0]) == "2011-01-01T00:00:00" and str(s.timestamps[-1]) == "2011-12-31T23:00:00"
    # 2011-01-02 05:00 is missing in ISLP: the mean of 04:00 (3 bikes) and 06:00 (2 bikes)
    i = 24 + 5
    assert s.column("bikers")[i] == pytest.approx(0.5 * (s.column("bikers")[i - 1] + s.column("bikers")[i + 1]))
    assert set(np.unique(s.column("weathersit")[s.column("weathersit") == np.round(s.column("weathersit"))])) <= {
        1.0, 2.0, 3.0, 4.0}
    assert s.column("bikers").min() >= 0


@pytest.mark.skipif(not HAS_PVLIB, reason="needs `pip install --no-deps pvlib==0.16.1`")
def test_tmy3_ghi_is_one_typical_year():
    s = jd.load_tmy3_ghi()
    assert s.num_steps == 8760 and s.columns == ("GHI", "ETR", "TotCld", "DryBulb")
    ghi, etr = s.column("GHI"), s.column("ETR")
    assert ghi.min() == 0 and (ghi <= etr + 1e-9).mean() > 0.99       # clear-sky physics, almost always
    assert ghi[:7].max() == 0 and ghi[12] > 0                          # night then day on 1 January
    with pytest.raises(ValueError, match="leap year"):
        jd.load_tmy3_ghi(2000)


def test_missing_packages_name_their_install_command(monkeypatch):
    import jaxlab.data._locate as locate

    monkeypatch.delenv("JAXLAB_DATA", raising=False)
    monkeypatch.setattr(locate, "package_dir", lambda name: None)   # as if neither package were installed
    with pytest.raises(jd.DataNotFoundError, match=r"pip install --no-deps islp==0\.6\.0"):
        jd.load_bikeshare()
    with pytest.raises(jd.DataNotFoundError, match=r"pip install --no-deps pvlib==0\.16\.1"):
        jd.load_tmy3_ghi()
