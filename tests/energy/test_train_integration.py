"""EnergyMeter in jaxlab.train.train_loop: energy_j in every metrics window, totals in the summary."""

import jax
import jax.numpy as jnp
import optax

from jaxlab import energy
from jaxlab.core import read_metrics
from jaxlab.train import TrainState, make_train_step, train_loop


def test_train_loop_records_energy(tmp_path):
    def loss_fn(params, model_state, batch, key):
        loss = jnp.mean((batch["x"] @ params["w"] - batch["y"]) ** 2)
        return loss, ({}, model_state)

    tx = optax.sgd(0.1)
    state = TrainState.create(params={"w": jnp.zeros((3,))}, tx=tx)
    x = jnp.ones((4, 3))
    get_batch = lambda step: {"x": x, "y": jnp.ones((4,))}  # noqa: E731
    meter = energy.EnergyMeter(cpu="estimate")
    _, summary = train_loop(state, make_train_step(loss_fn, tx, donate=False), get_batch, num_steps=4,
                            key=jax.random.key(0), workdir=tmp_path, log_every=2, meter=meter,
                            progress=False)
    recs = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "train"]
    assert len(recs) == 2
    assert all(r["energy_j"] >= 0 and "energy_j_cpu" in r for r in recs)
    assert recs[1]["wall_s"] >= recs[0]["wall_s"]  # the loop's cumulative wall time is not overwritten
    e = summary["energy"]
    assert e["estimated"] is True and e["source"] == {"cpu": "cpu_time_tdp"}
    assert abs(sum(r["energy_j"] for r in recs) - e["total_energy_j"]) <= 1e-6 + 0.5 * e["total_energy_j"]
