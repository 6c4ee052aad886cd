import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxlab.cli import main

from .quick_env import quick_compile_env

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "examples" / "mlp_digits.py")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["XLA_FLAGS"] = ""
    return quick_compile_env(env)


def _jaxlab(*args, **kw):
    return subprocess.run([sys.executable, "-m", "jaxlab.cli", *args], capture_output=True, text=True,
                          env=_env(), cwd=kw.pop("cwd", ROOT), **kw)


def test_version_and_list(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "configs/examples/mlp_digits.py  [reproduce: mlp_digits]" in out


def test_bad_inputs_exit_2_with_a_message(tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.py")]) == 2
    assert main(["run", CONFIG, "--set", "num_stepz=3", "--workdir", str(tmp_path / "w")]) == 2
    assert main(["run", CONFIG, "--set", "num_steps=many", "--workdir", str(tmp_path / "w")]) == 2
    assert main(["reproduce", "--only", "nothing_called_this", "--workdir", str(tmp_path / "r")]) == 2
    assert main(["bench", "no_such_bench"]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "Valid keys:" in err and "is not an integer" in err
    assert "unknown experiment" in err and "unknown benchmark" in err


def test_mlp_digits_reaches_95_percent(tmp_path, capsys):
    # Its speed is not asserted here (a timed test fails on a loaded machine); `summary.json` records wall_s.
    r = _jaxlab("run", CONFIG, "--workdir", str(tmp_path / "run"), timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test_accuracy"] >= 0.95
    assert "test_accuracy:" in r.stdout
    for name in ("config.json", "metrics.jsonl", "curves.png"):
        assert (tmp_path / "run" / name).is_file()
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["config"]["num_steps"] == 1000 and cfg["jax_version"]
    # what can change the numbers of a resumed part is recorded (and compared on resume, tests/train/test_loop.py)
    assert cfg["backend"] == "cpu" and cfg["jaxlib_version"] and "cpu_isa" in cfg
    assert cfg["xla_flags"] == (_env()["XLA_FLAGS"] or None)  # the flags the run compiled with
    # The same workdir for a different experiment is refused (in-process: no second jax start-up).
    assert main(["run", CONFIG, "--set", "learning_rate=0.5", "--workdir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "different experiment" in err and "learning_rate" in err


def test_reproduce_quick_only_writes_report(tmp_path, capsys):
    r = _jaxlab("reproduce", "--quick", "--only", "mlp_digits", "--workdir", str(tmp_path), timeout=300)
    assert r.returncode == 0, r.stderr
    report = (tmp_path / "REPORT.md").read_text()
    assert "| mlp_digits | completed |" in report and "![curves](mlp_digits/curves.png)" in report
    from jaxlab.core import environment_info

    env = environment_info()
    isa = ", ".join(env["cpu_isa"]) if env["cpu_isa"] else "unknown"
    assert f"Setting: CPU {env['cpu_model']} ({env['cpu_affinity']} cores usable; instruction sets {isa})" in report
    assert f"XLA_FLAGS {_env()['XLA_FLAGS']}" in report  # the flags the report's process ran with
    before = (tmp_path / "mlp_digits" / "metrics.jsonl").read_bytes()
    assert main(["reproduce", "--quick", "--only", "mlp_digits", "--workdir", str(tmp_path)]) == 0
    assert "already completed" in capsys.readouterr().err
    assert (tmp_path / "mlp_digits" / "metrics.jsonl").read_bytes() == before
