"""The forward-gradient benchmark's FLOP count and its tiny run (scripts/bench_fwdgrad.py)."""

import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_fwdgrad", ROOT / "scripts" / "bench_fwdgrad.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dot_flops_match_xla_without_loops_and_count_loop_bodies_per_trip(bench):
    w, x = jnp.ones((48, 40)), jnp.ones((24, 48))
    f = jax.jit(lambda w, x: jnp.tanh(x @ w) @ w.T)
    compiled = f.lower(w, x).compile()
    flops, exact = bench.dot_flops(compiled.as_text())
    assert exact and flops == 2 * (24 * 40 * 48) * 2

    def scanned(w, x):  # 7 dependent matmuls in a loop; XLA's cost analysis counts the body once
        return jax.lax.scan(lambda h, _: (jnp.tanh(h @ w[:, :48]), None), x, None, length=7)[0]

    compiled = jax.jit(scanned).lower(jnp.ones((48, 48)), x).compile()
    flops, exact = bench.dot_flops(compiled.as_text())
    assert exact and flops == 7 * 2 * 24 * 48 * 48


@pytest.mark.slow  # 12-16 s: the method's tests were over 2 minutes on the slower host of session 11; the FLOP
# counting is checked by the test below and the script's tiny run end to end by tests/scripts/test_gpu_suite.py
def test_tiny_run_measures_memory_flops_and_time(bench):
    payload = bench.run(tiny=True, ks=(4,), tangent_batch_sizes=(1, 4), aggregations=("mean",), repeats=1,
                        verbose=False)
    recs = {r["tangent_batch_size"]: r for r in payload["records"] if r["method"] == "fwdgrad"}
    base = next(r for r in payload["records"] if r["method"] == "backprop")
    # Streaming one tangent at a time recomputes the primal k times, four at a time once.
    for b, r in recs.items():
        assert r["xla_dot_flops"] == pytest.approx(r["model_dot_flops"], rel=0.02)
        assert r["time_ratio_vs_backprop"] > 0 and r["flop_floor"] == 3.0
    assert base["xla_dot_flops"] == pytest.approx(base["model_dot_flops"], rel=0.02)
    assert recs[1]["xla_dot_flops"] > recs[4]["xla_dot_flops"]
    assert recs[1]["temp_bytes"] < recs[4]["temp_bytes"]
    assert payload["environment"]["backend"] == jax.default_backend()


@pytest.mark.slow  # 20 s of compilation; the tiny run above covers the measurements
def test_a_killed_memory_run_resumes_from_its_checkpoint(bench, tmp_path, monkeypatch):
    path = tmp_path / "fwdgrad.json"
    kw = dict(tiny=True, ks=(2,), tangent_batch_sizes=(1,), aggregations=("mean",), time_steps=False, verbose=False,
              checkpoint=path)
    first = bench.run(**kw)
    partial = json.loads(path.read_text())
    assert partial["status"] == "partial" and len(partial["records"]) == 2
    partial["records"] = partial["records"][:1]  # killed after the first record
    path.write_text(json.dumps(partial))
    real, calls = bench._compiled_record, []
    monkeypatch.setattr(bench, "_compiled_record", lambda c: calls.append(1) or real(c))
    again = bench.run(**kw)
    assert len(calls) == 1 and partial["records"][0].items() <= again["records"][0].items()
    assert [r["temp_bytes"] for r in again["records"]] == [r["temp_bytes"] for r in first["records"]]


@pytest.mark.gpu
def test_tiny_run_reads_the_gpus_peak_bytes_in_use(bench):
    if jax.default_backend() != "gpu":
        pytest.skip("no GPU is the default backend")
    payload = bench.run(tiny=True, ks=(4,), tangent_batch_sizes=("held", 1), aggregations=("mean",), repeats=1,
                        verbose=False)
    recs = {r["tangent_batch_size"]: r for r in payload["records"] if r["method"] == "fwdgrad"}
    assert all(r["runtime_peak_bytes"] > r["runtime_floor_bytes"] > 0 for r in payload["records"])
    assert recs[1]["runtime_peak_bytes"] < recs[None]["runtime_peak_bytes"]
