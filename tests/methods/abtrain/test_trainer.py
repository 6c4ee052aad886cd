"""ABTrainer on 8 fake CPU devices as 2 nodes x 4: data parallelism, the loop oracle, the compiled programs' groups and
bytes, optimiser states on a rank change, no recompilation inside a phase, and resume.

One tiny MLP trainer is shared (module fixture) so that every program compiles once.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.core import read_metrics, tolerances
from jaxlab.methods.abtrain import (
    ABSettings,
    ABTrainer,
    LearningRate,
    Schedule,
    make_model,
)
from jaxlab.methods.abtrain._reference import train_reference
from jaxlab.methods.abtrain._spmd import flat_len, make_to_groups
from jaxlab.parallel import collective_stats
from jaxlab.train import TrainState, make_train_step

from ...compile_helpers import compiled_programs

SCHEDULE = Schedule(14, 4, 6, 1)  # decompose 4, sync 6, truncate 7, sync 12, truncate 13, final sync 14


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 8, 8, 1)).astype(np.float32)
    y = x.reshape(512, -1)[:, :10].argmax(1).astype(np.int32)

    def get_batch(t):
        i = (t * 64) % 512
        return x[i:i + 64], y[i:i + 64]

    return x, y, get_batch


def _tx():
    # linear in the gradients: the oracle comparison stays at float32 rounding (Adam's normalisation would
    # amplify the rounding of near-zero moments)
    return optax.chain(optax.trace(decay=0.9), optax.add_decayed_weights(1e-4))


def _model():
    return make_model("mlp", hidden=(32, 24), input_shape=(8, 8, 1))


def _only(programs, prefix):
    """The one program whose key is ``prefix`` plus its batch shape (``prefix@64x8x8x1.float32``)."""
    found = [p for k, p in programs.items() if k.startswith(prefix + "@")]
    assert len(found) == 1, (prefix, list(programs))
    return found[0]


@pytest.fixture(scope="module")
def run():
    x, y, get_batch = _data()
    lr = LearningRate(3e-2, SCHEDULE.total_steps, rebound_steps=2, schedule=SCHEDULE)
    trainer = ABTrainer(_model(), _tx(), lr, ABSettings(SCHEDULE, tau=0.3), key=jax.random.key(0))
    with compiled_programs(record=lambda name: trainer.t) as compiles:  # the step of every compile
        summary = trainer.fit(get_batch, key=jax.random.key(1), eval_data=(x, y), eval_batch=256, progress=False,
                              log_every=2)
    final = {k: np.asarray(v) for k, v in trainer.full.params.items()}
    return {"trainer": trainer, "summary": summary, "compiles": compiles, "final": final, "lr": lr,
            "get_batch": get_batch}


def test_construction_compiles_two_programs():
    """Building a trainer compiles the model's init and the optimiser states' init, one program each (eagerly,
    every initialiser, layer of the dummy forward pass and leaf's zeros compiled its own: 31 programs)."""
    lr = LearningRate(3e-2, SCHEDULE.total_steps, rebound_steps=2, schedule=SCHEDULE)
    key = jax.random.key(0)
    with compiled_programs() as compiled:
        trainer = ABTrainer(_model(), _tx(), lr, ABSettings(SCHEDULE, tau=0.3), key=key)
    assert compiled == ["jit(init)", "jit(init)"], compiled
    assert trainer.programs == {}  # the trainer's own programs compile when their key first appears


def test_matches_the_loop_oracle(run):
    trainer, s = run["trainer"], run["summary"]
    params, model_state = trainer.model.init(jax.random.key(0))
    ref, ranks = train_reference(trainer.model, trainer.layout, params, model_state, _tx(), run["lr"], SCHEDULE,
                                 run["get_batch"], jax.random.key(1), num_groups=2, sync_mode="with-stale", tau=0.3,
                                 clip_norm=1.0, label_smoothing=0.1, svd_dtype=np.float32)
    assert [h["ranks"] for h in s["rank_history"]] == ranks
    assert ranks[0] == {"dense_0/kernel": 32, "dense_1/kernel": 24} and ranks[1]["dense_1/kernel"] < 24
    for k, v in ref.items():
        np.testing.assert_allclose(run["final"][k], np.asarray(v), atol=2e-5, rtol=1e-4, err_msg=k)
    assert 0.0 <= s["eval"]["test_accuracy"] <= 1.0 and np.isfinite(s["eval"]["test_loss"])


def test_ab_phases_reduce_in_groups_of_four_inside_a_node(run):
    progs = run["trainer"].programs
    sides = [k for k in progs if k.startswith("side_step:")]
    assert {k.split(":")[1] for k in sides} == {"a", "b"}
    for k in sides:
        stats = collective_stats(progs[k].compiled.as_text(), 4)
        assert stats and {c.group_size for c in stats} == {4}, k
        assert progs[k].inter_bytes == 0.0 and progs[k].intra_bytes > 0, k
    full_step = _only(progs, "full_step")
    full = collective_stats(full_step.compiled.as_text(), 8)
    groups = {g for c in full for g in c.groups}
    assert {(0, 1, 2, 3), (4, 5, 6, 7)} <= groups  # reduce-scatter / all-gather inside each node
    assert {(0, 4), (1, 5), (2, 6), (3, 7)} <= groups  # the slices all-reduced across the nodes
    assert full_step.inter_bytes > 0


def test_bytes_match_the_traffic_model(run):
    trainer = run["trainer"]
    params = trainer._init_host.params
    r = run["summary"]["ranks"]
    rank_key = ",".join(str(r[p]) for p in trainer.layout.paths)
    shared = sum(int(np.prod(params[k].shape)) for k in trainer.layout.full_rank)
    m0, n0, m1, n1 = 64, 32, 24, 32  # views of dense_0 (64 -> 32) and dense_1 (32 -> 24)
    trainable = {"a": shared + m0 * r["dense_0/kernel"] + n1 * r["dense_1/kernel"],
                 "b": shared + n0 * r["dense_0/kernel"] + m1 * r["dense_1/kernel"]}
    for side, values in trainable.items():
        prog = _only(trainer.programs, f"side_step:{side}:{rank_key}")
        # reduce-scatter + all-gather = a ring all-reduce of the trainable leaves (padded to multiples of 4),
        # 2 R 3/4 per device on 4 devices, plus the few scalars of the clip norm and the metrics
        expect = 4 * 2 * (4 * values) * 3 / 4
        assert expect <= prog.intra_bytes <= expect * 1.03 + 200, (side, prog.intra_bytes, expect)
    full = _only(trainer.programs, "full_step")
    total = 4 * sum(int(np.prod(v.shape)) for v in params.values())
    # hierarchical: every device all-reduces 1/4 of the gradient across the 2 nodes: 8 x R/4 inter-node bytes
    assert 2 * total <= full.inter_bytes <= 2 * total * 1.03 + 200


def test_no_recompilation_inside_a_phase(run):
    s = run["summary"]
    starts = {0, SCHEDULE.total_steps} | {t for t, _ in SCHEDULE.event_steps()}
    assert run["compiles"], "the listener saw no compilation"
    assert set(run["compiles"]) <= starts, sorted(set(run["compiles"]) - starts)
    # once per rank set: side steps and syncs, one program per (kind, ranks)
    rank_sets = {tuple(h["ranks"].values()) for h in s["rank_history"]}
    keys = run["trainer"].programs
    assert sum(k.startswith("side_step:a:") for k in keys) == len(rank_sets)
    assert sum(k.startswith("sync:") for k in keys) == len(rank_sets)


def test_optimiser_states_follow_a_rank_change(run):
    trainer, get_batch = run["trainer"], run["get_batch"]
    t = 7  # truncation after the first sync
    trainer.fit(get_batch, key=jax.random.key(1), progress=False, stop_at=t)
    assert trainer.phase == "full" and trainer.schedule.events(t) == ("truncate",)
    old, full, parked_dev = dict(trainer.ranks), trainer.full, trainer.parked
    parked = jax.device_get(parked_dev)
    usv, _ = trainer._svd("probe")
    trainer.apply_events(t)
    new = trainer.ranks
    assert new != old
    for side, groups in trainer.plan.sides:
        state = jax.device_get(trainer.sides[side])
        for p in trainer.layout.paths:
            m, n = (64, 32) if p.startswith("dense_0") else (32, 24)
            for f, shape_new, shape_old, axis in (("a", (m, new[p]), (m, old[p]), 1),
                                                  ("b", (new[p], n), (old[p], n), 0)):
                key = f"{p}.{f}"
                assert state.params[key].shape == (len(groups), *shape_new)
                trace = state.opt[key][0].trace  # optax.trace's momentum, flat and padded to a multiple of 4
                assert trace.shape == (len(groups), flat_len(shape_new, 4))
                for i, g in enumerate(groups):
                    got = trace[i, :int(np.prod(shape_new))].reshape(shape_new)
                    before = parked[key][0].trace[g, :int(np.prod(shape_old))].reshape(shape_old)
                    keep = [slice(None)] * 2
                    keep[axis] = slice(0, new[p])
                    np.testing.assert_array_equal(got, before[tuple(keep)])  # sliced by index, per group
                assert np.any(trace) == (f == side), key  # a side's moments of the other factor stay zero
    # reset instead: fresh (zero) states of the new shape
    groups, _, _ = jax.jit(make_to_groups(trainer.plan, trainer.mesh, new, _tx(), reset=True, old_ranks=old))(
        full, usv, parked_dev)
    for k, v in groups.opt.items():
        if k.endswith((".a", ".b")):
            assert v[0].trace.shape == state.opt[k][0].trace.shape[1:] or v[0].trace.shape[0] == 2
            assert not np.any(np.asarray(v[0].trace))


def test_resume_rebuilds_the_template_from_saved_ranks(run, tmp_path):
    trainer, get_batch = run["trainer"], run["get_batch"]
    s1 = trainer.fit(get_batch, key=jax.random.key(1), workdir=tmp_path, progress=False, stop_at=9,
                     checkpoint_every=8, log_every=2, meter=None)
    assert s1["status"] == "stopped" and trainer.phase == "ab" and trainer.ranks != trainer.full_ranks()
    s2 = trainer.fit(get_batch, key=jax.random.key(1), workdir=tmp_path, progress=False, checkpoint_every=8,
                     log_every=2, meter=None)
    assert s2["status"] == "completed" and s2["resumed_from"] == 9
    for k, v in trainer.full.params.items():
        np.testing.assert_array_equal(np.asarray(v), run["final"][k], err_msg=k)
    assert s2["traffic"]["total"] == run["summary"]["traffic"]["total"]
    recs = read_metrics(tmp_path / "metrics.jsonl")
    keys = [(r["step"], r["split"]) for r in recs]
    assert len(keys) == len(set(keys)), "duplicated records after resume"
    assert [r["step"] for r in recs if r["split"] == "train"] == [2, 4, 6, 8, 9, 10, 12, 14]


def test_evaluate_compiles_a_program_per_batch_size(run):
    """Another eval batch size gets its own program (the cache was once keyed by "eval" alone, and a second
    batch size called the first one's program), and every batch size gives the plain-jnp figures."""
    trainer = run["trainer"]
    x, y, _ = _data()
    assert trainer.phase == "full"
    params, model_state = jax.device_get((trainer.full.params, trainer.full.model_state))
    logits, _ = trainer.model.apply(params, model_state, jnp.asarray(x), layout=trainer.layout, train=False)
    ref_acc = float(np.mean(np.argmax(np.asarray(logits), -1) == y))
    ref_loss = float(optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(y)).mean())
    atol, rtol = tolerances(jnp.float32)
    for b in (256, 128):  # 256: the fit's eval program; 128: a new one
        r = trainer.evaluate(x, y, batch_size=b)
        assert r["eval_size"] == 512
        assert abs(r["test_accuracy"] - ref_acc) <= 1 / 512, (b, r, ref_acc)
        np.testing.assert_allclose(r["test_loss"], ref_loss, atol=atol, rtol=rtol, err_msg=str(b))
    assert {k for k in trainer.programs if k.startswith("eval@")} == {"eval@256x8x8x1.float32",
                                                                     "eval@128x8x8x1.float32"}


def test_a_step_at_another_batch_size_compiles_its_own_program(run):
    """The step program is keyed by the batch shape too: a 128-batch of two copies of a 64-batch gives the
    64-batch's update (the mean gradient is the same) from its own program."""
    trainer = run["trainer"]
    xb, yb = run["get_batch"](0)
    from jaxlab.methods.abtrain._spmd import batch_sharding, replicated
    bs, rep = batch_sharding(trainer.mesh, per_group=False), replicated(trainer.mesh)
    k, lr = jax.device_put(jax.random.key(3), rep), jax.device_put(np.float32(1e-2), rep)
    out = {}
    for x, y in ((xb, yb), (np.concatenate([xb, xb]), np.concatenate([yb, yb]))):
        state = jax.device_put(trainer._init_host, trainer._full_shardings)
        xs, ys = jax.device_put(x, bs), jax.device_put(y, bs)
        prog = trainer._full_step_program(state, xs, ys, k, lr)
        out[len(x)] = (prog, jax.device_get(prog.compiled(state, xs, ys, k, lr)[0].params))
    assert out[64][0] is not out[128][0] and out[128][0].key == "full_step@128x8x8x1.float32"
    atol, rtol = tolerances(jnp.float32)
    for name, v in out[64][1].items():
        assert not np.array_equal(v, trainer._init_host.params[name]), name  # the step moved it
        np.testing.assert_allclose(out[128][1][name], v, atol=atol, rtol=rtol, err_msg=name)


def test_a_key_that_misses_what_differs_raises(run):
    trainer = run["trainer"]
    rep = jax.sharding.NamedSharding(trainer.mesh, jax.sharding.PartitionSpec())
    try:
        trainer._program("probe:add_one", lambda a: a + 1, (jax.device_put(np.zeros(4, np.float32), rep),),
                         mesh=trainer.mesh)
        with pytest.raises(ValueError, match="probe:add_one"):
            trainer._program("probe:add_one", lambda a: a + 1, (jax.device_put(np.zeros(8, np.float32), rep),),
                             mesh=trainer.mesh)
    finally:
        trainer.programs.pop("probe:add_one", None)


def test_warmup_covering_the_run_is_data_parallelism_bit_for_bit():
    """W >= T: the trainer's 50 steps equal a bare loop of the data-parallel step, bit for bit, and that step
    equals replicated data parallelism (jaxlab.train.make_train_step under jit, optax AdamW) to float32 rounding."""
    _, _, get_batch = _data()
    schedule = Schedule(50, 50, 6, 1)
    lr = LearningRate(1e-3, 50, warmup_steps=5, rebound_steps=3, schedule=schedule)
    tx = optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(1e-4))
    trainer = ABTrainer(_model(), tx, lr, ABSettings(schedule), key=jax.random.key(0))
    s = trainer.fit(get_batch, key=jax.random.key(1), progress=False, log_every=10)
    assert s["rank_history"] == [] and set(s["traffic"]["phases"]) == {"warmup"}
    assert len(trainer.programs) == 1  # the data-parallel step, nothing else

    # the same step in a bare loop
    state = jax.device_put(trainer._init_host, trainer._full_shardings)
    step = _only(trainer.programs, "full_step").compiled
    from jaxlab.methods.abtrain._spmd import batch_sharding, replicated
    bs, rep = batch_sharding(trainer.mesh, per_group=False), replicated(trainer.mesh)
    for t in range(50):
        xb, yb = get_batch(t)
        state, _ = step(state, jax.device_put(xb, bs), jax.device_put(yb, bs),
                        jax.device_put(jax.random.fold_in(jax.random.key(1), t), rep),
                        jax.device_put(np.float32(lr.base(t)), rep))
    for k, v in trainer.full.params.items():
        np.testing.assert_array_equal(np.asarray(v), np.asarray(state.params[k]), err_msg=k)

    # replicated data parallelism: one jit, the batch split over the 8 devices, XLA all-reduces the gradients
    model = trainer.model
    params, model_state = model.init(jax.random.key(0))

    def loss_fn(p, ms, batch, key):
        from jaxlab.methods.abtrain._models import classification_loss
        logits, _ = model.apply(p, ms, batch[0], layout=trainer.layout, train=True, key=key)
        loss, metrics = classification_loss(logits, batch[1], label_smoothing=0.1)
        return loss, (metrics, ms)

    ref_tx = optax.chain(optax.clip_by_global_norm(1.0),
                         optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3, weight_decay=1e-4))
    ref_step = make_train_step(loss_fn, ref_tx, jit=False)
    ref = jax.device_put(TrainState.create(params=params, tx=ref_tx, model_state=model_state), rep)
    ref_jit = jax.jit(ref_step, in_shardings=(rep, bs, rep), out_shardings=(rep, rep))
    for t in range(50):
        hp = ref.opt_state[1].hyperparams
        hp["learning_rate"] = jnp.asarray(lr.base(t), jnp.float32)
        xb, yb = get_batch(t)
        ref, _ = ref_jit(ref, (jax.device_put(xb, bs), jax.device_put(yb, bs)), jax.random.fold_in(jax.random.key(1), t))
    for k, v in trainer.full.params.items():
        np.testing.assert_allclose(np.asarray(v), np.asarray(ref.params[k]), atol=3e-5, rtol=1e-4, err_msg=k)


@pytest.mark.slow
@pytest.mark.parametrize("sync_mode, on_rank_change", [("full", "slice"), ("only-learned", "reset"),
                                                        ("only-b", "slice")])
def test_other_sync_modes_match_the_loop_oracle(sync_mode, on_rank_change):
    """The fixture covers with-stale with sliced moments; the other sync modes (and reset) against the same oracle."""
    _, _, get_batch = _data()
    lr = LearningRate(3e-2, SCHEDULE.total_steps, rebound_steps=2, schedule=SCHEDULE)
    settings = ABSettings(SCHEDULE, tau=0.3, sync_mode=sync_mode, on_rank_change=on_rank_change)
    trainer = ABTrainer(_model(), _tx(), lr, settings, key=jax.random.key(0))
    s = trainer.fit(get_batch, key=jax.random.key(1), progress=False, log_every=7)
    assert [side for side, _ in trainer.plan.sides] == (["b"] if sync_mode == "only-b" else ["a", "b"])
    params, model_state = trainer.model.init(jax.random.key(0))
    ref, ranks = train_reference(trainer.model, trainer.layout, params, model_state, _tx(), lr, SCHEDULE, get_batch,
                                 jax.random.key(1), num_groups=2, sync_mode=sync_mode, tau=0.3, clip_norm=1.0,
                                 label_smoothing=0.1, on_rank_change=on_rank_change, svd_dtype=np.float32)
    assert [h["ranks"] for h in s["rank_history"]] == ranks
    for k, v in ref.items():
        np.testing.assert_allclose(np.asarray(trainer.full.params[k]), np.asarray(v), atol=2e-5, rtol=1e-4, err_msg=k)
