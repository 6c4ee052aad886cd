import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.core import (MetricsWriter, environment_info, read_metrics, save_benchmark, time_fn, to_jsonable,
                         tolerances, write_json)


def test_tolerances_order_by_precision():
    assert tolerances(jnp.float64)[1] < tolerances(jnp.float32)[1] < tolerances(jnp.bfloat16)[1]
    assert tolerances("float32") == tolerances(np.float32)
    with pytest.raises(ValueError, match="int32"):
        tolerances(jnp.int32)


def test_time_fn_compiles_apart_and_repeats():
    f = jax.jit(lambda x: (x @ x).sum())
    t = time_fn(f, jnp.ones((64, 64)), warmup=1, repeats=5)
    assert len(t.times_s) == 5
    assert t.compile_s > 0
    assert t.min_s <= t.median_s <= max(t.times_s)
    assert t.iqr_s >= 0
    with pytest.raises(ValueError):
        time_fn(f, jnp.ones((2, 2)), repeats=0)


def test_metrics_writer_round_trip_and_torn_line(tmp_path):
    path = tmp_path / "m.jsonl"
    with MetricsWriter(path) as w:
        w.write(step=1, split="train", loss=jnp.float32(0.5), acc=np.float64(0.25))
        w.write({"step": 2, "split": "eval"}, values=jnp.arange(3))
    with open(path, "a") as f:
        f.write('{"step": 3, "lo')  # a writer killed mid-line
    recs = read_metrics(path)
    assert recs == [{"step": 1, "split": "train", "loss": 0.5, "acc": 0.25},
                    {"step": 2, "split": "eval", "values": [0, 1, 2]}]


def test_metrics_writer_truncate_after(tmp_path):
    path = tmp_path / "m.jsonl"
    w = MetricsWriter(path)
    for s in range(1, 6):
        w.write(step=s, loss=float(s))
    w.truncate_after(3)
    w.write(step=4, loss=40.0)
    w.close()
    assert [(r["step"], r["loss"]) for r in read_metrics(path)] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


def test_to_jsonable_handles_non_finite():
    assert to_jsonable({"a": float("nan"), "b": (1, np.int64(2))}) == {"a": "nan", "b": [1, 2]}


def test_write_json_and_save_benchmark(tmp_path):
    write_json(tmp_path / "x.json", {"a": jnp.ones(2)})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": [1.0, 1.0]}
    p = save_benchmark("demo", [{"t_ms": 1.0}], path=tmp_path / "b.json", note="hi")
    d = json.loads(p.read_text())
    assert d["benchmark"] == "demo" and d["note"] == "hi" and d["records"] == [{"t_ms": 1.0}]
    assert d["environment"]["backend"] == "cpu" and d["environment"]["versions"]["jax"] == jax.__version__
    # the packages that can move a method's numbers are recorded when installed, and so is a modified tree
    from importlib import metadata

    env = d["environment"]
    assert env["optional_versions"].get("pandas") == metadata.version("pandas")
    assert all(v is not None for v in env["optional_versions"].values())
    assert env["git_dirty"] in (True, False, None)
    assert env["cpu_model"] is None or (isinstance(env["cpu_model"], str) and env["cpu_model"])


def test_cpu_model_reads_cpuinfo(tmp_path):
    from jaxlab.core._environment import cpu_model

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654 96-Core\n")
    assert cpu_model(info) == "AMD EPYC 9654 96-Core"
    import platform

    assert cpu_model(tmp_path / "absent") == (platform.processor() or None)


def test_cpu_isa_reads_the_flags_line(tmp_path):
    from jaxlab.core import cpu_isa
    from jaxlab.core._environment import ISA_EXTENSIONS

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse4_2 avx2 avx fma avx512f avx512_bf16 "
                    "avx512bw\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_isa(info) == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_bf16"]  # first CPU's
    info.write_text("processor\t: 0\nFeatures\t: fp asimd sve i8mm\n")  # Arm's name of the line
    assert cpu_isa(info) == ["asimd", "sve", "i8mm"]
    info.write_text("processor\t: 0\nmodel name\t: x\n")
    assert cpu_isa(info) is None and cpu_isa(tmp_path / "absent") is None
    env = environment_info()
    assert env["cpu_isa"] is None or set(env["cpu_isa"]) <= set(ISA_EXTENSIONS)
    assert env["xla_flags"] == (os.environ.get("XLA_FLAGS") or None)  # conftest sets it for 8 host devices
    assert "xla_force_host_platform_device_count" in env["xla_flags"]
    assert env["cpu_affinity"] == (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None)


def test_git_dirty_reads_the_checkout(tmp_path):
    import subprocess

    from jaxlab.core._environment import git_dirty

    assert git_dirty(tmp_path) is None                                    # not a checkout
    git = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    (tmp_path / "f.txt").write_text("a")
    git("add", "f.txt")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x")
    assert git_dirty(tmp_path) is False
    (tmp_path / "new.txt").write_text("untracked files do not count")
    assert git_dirty(tmp_path) is False
    (tmp_path / "f.txt").write_text("b")
    assert git_dirty(tmp_path) is True
