"""EnergyMeter in jaxlab.train.train_loop: energy_j in every metrics window, totals in the summary."""

import json

import jax
import jax.numpy as jnp
import optax
import pytest

from jaxlab import energy
from jaxlab.core import read_metrics
from jaxlab.train import TrainState, make_train_step, train_loop


class LoggingMeter:
    """An EnergyMeter that keeps every cumulative reading the loop takes."""

    def __init__(self):
        self.inner = energy.EnergyMeter(cpu="estimate")
        self.reads = []

    def start(self):
        self.inner.start()

    def read(self):
        r = self.inner.read()
        self.reads.append(r)
        return r

    def stop(self):
        return self.inner.stop()


def _run(tmp_path, meter, num_steps=4):
    def loss_fn(params, model_state, batch, key):
        loss = jnp.mean((batch["x"] @ params["w"] - batch["y"]) ** 2)
        return loss, ({}, model_state)

    tx = optax.sgd(0.1)
    state = TrainState.create(params={"w": jnp.zeros((3,))}, tx=tx)
    x = jnp.ones((4, 3))
    get_batch = lambda step: {"x": x, "y": jnp.ones((4,))}  # noqa: E731
    return train_loop(state, make_train_step(loss_fn, tx, donate=False), get_batch, num_steps=num_steps,
                      key=jax.random.key(0), workdir=tmp_path, log_every=2, eval_fn=lambda s: {"v": 1.0},
                      eval_every=2, meter=meter, progress=False)


def test_train_loop_records_energy(tmp_path):
    meter = LoggingMeter()
    _, summary = _run(tmp_path, meter)
    recs = read_metrics(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["split"]) for r in recs] == [(2, "train"), (2, "eval"), (4, "train"), (4, "eval")]
    assert all(r["energy_j"] >= 0 and "energy_j_cpu" in r for r in recs)
    assert recs[-1]["wall_s"] >= recs[0]["wall_s"]  # the loop's cumulative wall time is not overwritten
    # Each record holds the difference of two successive readings, so the records add up to the last
    # reading exactly (nothing lost or counted twice), per kind as well.
    assert len(meter.reads) == len(recs)
    for key in ("energy_j", "energy_j_cpu"):
        assert sum(r[key] for r in recs) == pytest.approx(meter.reads[-1][key], rel=1e-12, abs=1e-12)
    e = summary["energy"]
    assert e["estimated"] is True and e["source"] == {"cpu": "cpu_time_tdp"}
    # The total covers the whole loop: the records, then the final checkpoint and nothing else.
    assert e["total_energy_j"] >= meter.reads[-1]["energy_j"]
    assert json.loads((tmp_path / "energy.json").read_text())["total_energy_j"] == pytest.approx(e["total_energy_j"])


def test_totals_add_up_over_an_interrupted_and_resumed_run(tmp_path):
    class Interrupting(LoggingMeter):
        def read(self):
            r = super().read()
            if len(self.reads) == 2:  # after the step-2 eval record: Ctrl-C
                raise KeyboardInterrupt
            return r

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, Interrupting(), num_steps=6)
    first = json.loads((tmp_path / "energy.json").read_text())
    meter = LoggingMeter()
    _, summary = _run(tmp_path, meter, num_steps=6)
    energy_file = json.loads((tmp_path / "energy.json").read_text())
    parts = energy_file["process_reports"]
    assert len(parts) == 2 and summary["processes"] == 2
    assert parts[0]["total_energy_j"] == pytest.approx(first["total_energy_j"])
    assert summary["energy"]["total_energy_j"] == pytest.approx(parts[0]["total_energy_j"] + parts[1]["total_energy_j"])
    assert summary["energy"]["wall_s"] == pytest.approx(parts[0]["wall_s"] + parts[1]["wall_s"])
