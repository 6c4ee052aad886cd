import json
import sys

import numpy as np

import jaxlab.sparse as jsparse
from jaxlab.cli import main


def test_solve_command_writes_a_solution_that_meets_the_tolerance(tmp_path, capsys):
    S = jsparse.poisson2d(6)
    path = tmp_path / "p.mtx"
    jsparse.write_mtx(path, jsparse.from_scipy(S, format="csr"))
    b = np.arange(1.0, S.shape[0] + 1)
    np.savetxt(tmp_path / "b.txt", b)
    out = tmp_path / "x.npy"
    rc = main(["solve", str(path), "--rhs", str(tmp_path / "b.txt"), "--method", "cg", "--preconditioner", "ic0",
               "--rtol", "1e-10", "--output", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "CONVERGED" in text and "iterations" in text
    x = np.load(out)
    assert np.linalg.norm(S @ x - b) / np.linalg.norm(b) < 1e-9


def test_solve_command_bad_rhs(tmp_path, capsys):
    S = jsparse.poisson2d(3)
    path = tmp_path / "p.mtx"
    jsparse.write_mtx(path, jsparse.from_scipy(S, format="csr"))
    np.savetxt(tmp_path / "b.txt", np.ones(5))
    assert main(["solve", str(path), "--rhs", str(tmp_path / "b.txt")]) == 2
    assert "has 5 rows, the matrix has 9" in capsys.readouterr().err


def test_energy_command_passes_the_exit_status_through(tmp_path, capsys):
    rc = main(["energy", "--report-dir", str(tmp_path), "--", sys.executable, "-c", "raise SystemExit(3)"])
    assert rc == 3
    report = json.loads((tmp_path / "energy.json").read_text())
    assert report["wall_s"] > 0
    assert main(["energy"]) == 2
    assert "after --" in capsys.readouterr().err


def test_solve_command_reports_bad_files_and_setups(tmp_path, capsys):
    bad = tmp_path / "bad.mtx"
    bad.write_text("%%MatrixMarket matrix coordinate real general\n2 2 1\n3 1 1.0\n")
    assert main(["solve", str(bad)]) == 2
    zero = tmp_path / "zero.mtx"
    zero.write_text("%%MatrixMarket matrix coordinate real general\n2 2 2\n1 2 1.0\n2 1 1.0\n")
    assert main(["solve", str(zero), "--preconditioner", "jacobi"]) == 2
    err = capsys.readouterr().err
    assert "bad.mtx" in err and "row 0" in err


def test_runs_that_do_not_measure_themselves_get_an_energy_report(tmp_path, capsys):
    cfg = tmp_path / "c.py"
    cfg.write_text(
        "import dataclasses, json, pathlib\n"
        "@dataclasses.dataclass(frozen=True)\nclass C:\n    n: int = 3\n"
        "def get_config(arg=None):\n    return C()\n"
        "def run(config, workdir):\n"
        "    s = {'status': 'completed', 'total': sum(range(config.n))}\n"
        "    (pathlib.Path(workdir) / 'summary.json').write_text(json.dumps(s))\n"
        "    return s\n"
    )
    assert main(["run", str(cfg), "--workdir", str(tmp_path / "w")]) == 0
    summary = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert summary["total"] == 3 and summary["energy"]["wall_s"] >= 0
    assert json.loads((tmp_path / "w" / "energy.json").read_text())["estimated"] in (True, False)
