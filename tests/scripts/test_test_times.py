"""scripts/test_times.py: per-method sums from a JUnit report, against totals counted by hand."""

import json

import pytest

from .load_script import load_script

XML = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="8" time="9.75">
  <testcase classname="tests.sparse.test_spmv" name="a" time="1.5"/>
  <testcase classname="tests.krylov.test_solvers.TestCG" name="b" time="2.25"><failure message="x"/></testcase>
  <testcase classname="tests.methods.petnet.test_sim" name="c" time="4.0"/>
  <testcase classname="tests.methods.petnet.test_scw" name="d" time="0.5"><skipped message="y"/></testcase>
  <testcase classname="tests.timeseries.test_dlinear" name="e" time="3.0"/>
  <testcase classname="tests.test_doctests" name="f" time="0.25"/>
  <testcase classname="tests.fwdgrad.test_fwdgrad" name="g" time="2.0"/>
  <testcase classname="tests.methods.fwdgrad.test_mlp" name="h" time="1.0"/>
</testsuite></testsuites>
"""


@pytest.fixture(scope="module")
def tt():
    return load_script("test_times")


def test_groups_and_methods_sum_by_hand(tt, tmp_path):
    path = tmp_path / "r.xml"
    path.write_text(XML)
    s = tt.summarise([path])
    assert s["groups"]["methods/petnet"] == {"tests": 2, "seconds": 4.5, "failed": 0, "skipped": 1}
    assert s["groups"]["krylov"]["failed"] == 1
    assert s["groups"]["(top)"]["seconds"] == 0.25
    assert s["methods"]["sparse+krylov"]["seconds"] == 3.75  # sparse 1.5 + krylov 2.25
    assert s["methods"]["tsprune"] == {"dirs": ["methods/tsprune", "timeseries", "prune"], "tests": 1, "seconds": 3.0}
    assert s["methods"]["petnet"]["seconds"] == 4.5
    assert s["methods"]["fwdgrad"]["seconds"] == 3.0  # the layer's tests (tests/fwdgrad) count with the method
    assert s["total_seconds"] == 14.5
    assert s["suite_wall_s"] == 9.75  # pytest's session time, not the sum


def test_a_report_without_a_session_time_has_none(tt, tmp_path):
    path = tmp_path / "r.xml"
    path.write_text(XML.replace(' time="9.75"', ""))
    assert tt.summarise([path])["suite_wall_s"] is None


def test_main_flags_the_methods_over_the_limit_and_writes_json(tt, tmp_path, capsys):
    path = tmp_path / "r.xml"
    path.write_text(XML)
    out = tmp_path / "t.json"
    assert tt.main([str(path), "--json", str(out), "--limit-s", "4", "--commit", "abc123"]) == 0
    payload = json.loads(out.read_text())
    assert payload["tests_commit"] == "abc123"
    assert payload["over_limit"] == {"petnet": 4.5}
    assert "device_kind" in payload["environment"]
    assert "over the limit" in capsys.readouterr().out


def test_a_report_without_testcases_is_refused(tt, tmp_path):
    path = tmp_path / "empty.xml"
    path.write_text("<testsuites/>")
    with pytest.raises(ValueError, match="junitxml"):
        tt.summarise([path])
