import json

import pytest

from .load_script import load_script

compare_records = load_script("compare_records")


def _run(path, rows, provenance=None):
    path.mkdir()
    (path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if provenance is not None:
        (path / "config.json").write_text(json.dumps({"config": {"seed": 0}, **provenance}))
    return str(path)


def test_compare_matches_cells_by_key_and_says_which_are_bit_identical(tmp_path, capsys):
    a = _run(tmp_path / "a", [{"key": "m=x", "mse": 0.5, "mae": 1.0}, {"key": "m=y", "mse": 2.0},
                              {"key": "m=z", "mse": 1.0}], {"cpu_isa": ["avx2"]})
    b = _run(tmp_path / "b", [{"key": "m=y", "mse": 2.0}, {"key": "m=x", "mse": 0.5 * (1 + 1e-9), "mae": 1.0},
                              {"key": "m=x", "mse": 0.5 + 1e-12, "mae": 1.0}])  # the later line of a key counts
    out_file = tmp_path / "cmp.json"
    assert compare_records.main([a, b, "--names", "ref,new", "--metrics", "mse,mae", "--json", str(out_file)]) == 0
    out = json.loads(out_file.read_text())
    cells = {c["key"]: c for c in out["cells"]}
    assert set(cells) == {"m=x", "m=y"}                                   # m=z is in one run only
    assert cells["m=x"]["mse"] == {"ref": 0.5, "new": 0.5 + 1e-12}
    assert cells["m=x"]["mse_identical"] == {"new": False}
    assert cells["m=x"]["mse_rel_diff"]["new"] == pytest.approx(2e-12, rel=1e-3)
    assert cells["m=x"]["mae_identical"] == {"new": True} and cells["m=y"]["mse_identical"] == {"new": True}
    assert "mae" not in cells["m=y"]                                       # not recorded in that cell
    assert out["provenance"] == {"ref": {"cpu_isa": ["avx2"]}, "new": None}
    printed = capsys.readouterr().out
    assert "m=y  mse=2.0  new:same" in printed and "m=x  mse=0.5  new:+2.00e-12" in printed
    assert compare_records.main([a, b, "--match", "m=", "--match", "y", "--json", str(out_file)]) == 0
    assert [c["key"] for c in json.loads(out_file.read_text())["cells"]] == ["m=y"]


def test_compare_refuses_a_missing_records_file_and_bad_names(tmp_path):
    a = _run(tmp_path / "a", [{"key": "k", "mse": 1.0}])
    with pytest.raises(SystemExit, match="no records file"):
        compare_records.main([a, str(tmp_path / "absent")])
    with pytest.raises(SystemExit):
        compare_records.main([a, a, "--names", "one"])
    (tmp_path / "nokey.jsonl").write_text('{"mse": 1.0}\n')
    with pytest.raises(SystemExit, match="no 'key' field"):
        compare_records.main([a, str(tmp_path / "nokey.jsonl")])
