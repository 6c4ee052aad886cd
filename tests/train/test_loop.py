import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.data import Batcher, make_classification
from jaxlab.methods.classify import cross_entropy_loss_fn
from jaxlab.nn import MLP
from jaxlab.train import CheckpointError, TrainState, make_train_step, prepare_workdir, train_loop, WorkdirError
from jaxlab.core import read_metrics


@pytest.fixture(scope="module")
def setup():
    ds = make_classification(jax.random.key(0), num_train=128, num_test=64, shape=(4, 4, 1), num_classes=3)
    model = MLP(features=(16, 3))
    tx = optax.adam(1e-2)
    params = model.init(jax.random.key(1), ds.x_train[:1])["params"]
    step = make_train_step(cross_entropy_loss_fn(model), tx)
    batcher = Batcher((ds.x_train, ds.y_train), 32, key=jax.random.key(2))

    def fresh_state():
        return TrainState.create(params=jax.tree.map(jnp.copy, params), tx=tx)

    return fresh_state, step, batcher


def _flat(state):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(state.params)])


class Interrupt:
    """get_batch wrapper raising KeyboardInterrupt (a Ctrl-C) when asked for step `at`."""

    def __init__(self, batcher, at):
        self.batcher, self.at = batcher, at

    def __call__(self, step):
        if step == self.at:
            raise KeyboardInterrupt
        return self.batcher(step)


def test_interrupted_and_resumed_run_equals_uninterrupted(setup, tmp_path):
    fresh_state, step, batcher = setup
    key = jax.random.key(3)
    ref, _ = train_loop(fresh_state(), step, batcher, num_steps=12, key=key, progress=False)

    wd = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_loop(fresh_state(), step, Interrupt(batcher, 7), num_steps=12, key=key, workdir=wd,
                   checkpoint_every=5, log_every=2, progress=False)
    summary = json.loads((wd / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["step"] == 7
    assert sorted(int(p.name) for p in (wd / "checkpoints").iterdir() if p.name.isdigit()) == [5, 7]

    out, summary = train_loop(fresh_state(), step, batcher, num_steps=12, key=key, workdir=wd,
                              checkpoint_every=5, log_every=2, progress=False)
    assert summary["resumed_from"] == 7 and summary["status"] == "completed"
    np.testing.assert_array_equal(_flat(out), _flat(ref))
    train = [r for r in read_metrics(wd / "metrics.jsonl") if r["split"] == "train"]
    # Windows end at every log_every, at each checkpoint (5) and at the Ctrl-C (7): each step is in one window.
    assert [(r["step"], r["window_steps"]) for r in train] == [(2, 2), (4, 2), (5, 1), (6, 1), (7, 1), (8, 1),
                                                                (10, 2), (12, 2)]


def test_resume_keeps_the_last_k_checkpoints(setup, tmp_path):
    fresh_state, step, batcher = setup
    train_loop(fresh_state(), step, batcher, num_steps=10, key=jax.random.key(0), workdir=tmp_path,
               checkpoint_every=2, keep_checkpoints=2, progress=False)
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [8, 10]


def test_eval_and_metrics_log(setup, tmp_path):
    fresh_state, step, batcher = setup
    calls = []

    def eval_fn(state):
        calls.append(int(state.step))
        return {"score": jnp.float32(1.5)}

    _, summary = train_loop(fresh_state(), step, batcher, num_steps=6, key=jax.random.key(0), workdir=tmp_path,
                            eval_fn=eval_fn, eval_every=2, log_every=3, progress=False)
    assert calls == [2, 4, 6]
    recs = read_metrics(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["split"]) for r in recs] == [(2, "eval"), (3, "train"), (4, "eval"), (6, "train"),
                                                       (6, "eval")]
    assert set(recs[1]) >= {"loss", "accuracy", "wall_s"}
    assert summary["eval"] == {"score": 1.5}
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "completed"


class FakeMeter:
    def __init__(self):
        self.t = 0.0

    def start(self):
        self.t = 0.0

    def read(self):
        self.t += 2.0
        return {"energy_j": self.t}

    def stop(self):
        return {"energy_j": self.t, "source": "fake"}


def test_meter_windows_are_deltas(setup, tmp_path):
    fresh_state, step, batcher = setup
    _, summary = train_loop(fresh_state(), step, batcher, num_steps=4, key=jax.random.key(0), workdir=tmp_path,
                            log_every=2, meter=FakeMeter(), progress=False)
    recs = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["energy_j"] for r in recs] == [2.0, 2.0]
    assert summary["energy"] == {"energy_j": 4.0, "source": "fake"}


def test_corrupt_checkpoint_is_an_error_naming_it(setup, tmp_path):
    fresh_state, step, batcher = setup
    train_loop(fresh_state(), step, batcher, num_steps=4, key=jax.random.key(0), workdir=tmp_path,
               checkpoint_every=4, progress=False)
    ckpt = tmp_path / "checkpoints" / "4"
    files = sorted((p for p in ckpt.rglob("*") if p.is_file() and p.stat().st_size > 0), key=lambda p: -p.stat().st_size)
    for f in files:  # truncate the checkpoint's data files
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    with pytest.raises(CheckpointError) as e:
        train_loop(fresh_state(), step, batcher, num_steps=8, key=jax.random.key(0), workdir=tmp_path,
                   progress=False)
    assert str(ckpt) in str(e.value) and "--fresh" in str(e.value)


def test_a_truncated_data_file_is_one_readable_error(setup, tmp_path):
    fresh_state, step, batcher = setup
    train_loop(fresh_state(), step, batcher, num_steps=4, key=jax.random.key(0), workdir=tmp_path,
               checkpoint_every=4, progress=False)
    ckpt = tmp_path / "checkpoints" / "4"
    big = max((p for p in ckpt.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    big.write_bytes(big.read_bytes()[: big.stat().st_size // 2])  # the largest data file cut in half
    with pytest.raises(CheckpointError) as e:
        train_loop(fresh_state(), step, batcher, num_steps=8, key=jax.random.key(0), workdir=tmp_path,
                   progress=False)
    msg = str(e.value)
    assert str(ckpt) in msg and "--fresh" in msg and "\n" not in msg
    assert "TensorStore details" not in msg and "bound method" not in msg


def test_the_read_error_keeps_orbax_reason_without_the_tensorstore_spec_dump():
    """The text TensorStore gave for mlp_digits' checkpoint with its largest file cut in half (jax 0.10.2)."""
    from jaxlab.train._checkpoint import _reason

    e = Exception("Encountered error while reading array index: (slice(0, 64, 1), slice(0, 128, 1)). See full "
                  "TensorStore details: <bound method pybind11_detail_function_record_v1_system_libstdcpp_gxx_abi"
                  "_1xxx_use_cxx11_abi_1.spec of TensorStore({ 'base': { 'driver': 'zarr', 'dtype': 'float32'")
    assert _reason(e) == "Encountered error while reading array index: (slice(0, 64, 1), slice(0, 128, 1))."
    assert _reason(Exception("x" * 1000)) == "x" * 300


def test_missing_checkpoint_contents_is_an_error(setup, tmp_path):
    fresh_state, step, batcher = setup
    train_loop(fresh_state(), step, batcher, num_steps=2, key=jax.random.key(0), workdir=tmp_path, progress=False)
    ckpt = tmp_path / "checkpoints" / "2"
    for p in list(ckpt.iterdir()):
        if p.is_dir():
            shutil.rmtree(p)
    with pytest.raises(CheckpointError, match="cannot be read"):
        train_loop(fresh_state(), step, batcher, num_steps=4, key=jax.random.key(0), workdir=tmp_path,
                   progress=False)


def test_train_step_compiles_once(setup):
    fresh_state, _, batcher = setup
    model = MLP(features=(16, 3))
    step = make_train_step(cross_entropy_loss_fn(model), optax.adam(1e-2))
    state = fresh_state()
    state, _ = step(state, batcher(0), jax.random.key(0))
    before = step._cache_size()
    for s in range(1, 4):
        state, _ = step(state, batcher(s), jax.random.key(s))
    assert step._cache_size() == before == 1


def test_workdir_refuses_other_experiment_and_unwritable(tmp_path):
    prepare_workdir(tmp_path / "a", {"lr": 0.1})
    prepare_workdir(tmp_path / "a", {"lr": 0.1})  # same experiment: fine (resume)
    # A run that recorded nothing (it failed at once) is no experiment: the corrected command takes over.
    assert json.loads((prepare_workdir(tmp_path / "a", {"lr": 0.3}) / "config.json").read_text())["config"] == {
        "lr": 0.3}
    prepare_workdir(tmp_path / "a", {"lr": 0.1})
    (tmp_path / "a" / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(WorkdirError, match="different experiment.*lr"):
        prepare_workdir(tmp_path / "a", {"lr": 0.2})
    moved = prepare_workdir(tmp_path / "a", {"lr": 0.2}, fresh=True)
    assert json.loads((moved / "config.json").read_text())["config"] == {"lr": 0.2}
    assert any(p.name.startswith("a.old-") for p in tmp_path.iterdir())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WorkdirError, match="cannot create workdir"):
        prepare_workdir(blocker / "sub", {"lr": 0.1})
    bad = tmp_path / "b"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(WorkdirError, match="unreadable"):
        prepare_workdir(bad, {"lr": 0.1})


def test_resume_warns_when_the_numerics_provenance_changed(tmp_path):
    import warnings

    from jaxlab.core import numerics_provenance
    from jaxlab.train import ResumeProvenanceWarning, warn_on_changed_setting

    from jaxlab.core._environment import NUMERICS_FIELDS

    assert tuple(numerics_provenance()) == NUMERICS_FIELDS  # the fields a resume compares are the ones written
    start = {"git_sha": "abc", **numerics_provenance()}
    prepare_workdir(tmp_path / "a", {"lr": 0.1}, extra=start)
    (tmp_path / "a" / "metrics.jsonl").write_text('{"step": 1}\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same setting resumes silently
        assert warn_on_changed_setting(tmp_path / "a", start) == []
        assert warn_on_changed_setting(tmp_path / "a", {**start, "host": "elsewhere"}) == []  # not a numerics field
    other = {**start, "cpu_isa": ["sse4_2"], "xla_flags": "--xla_cpu_max_isa=SSE4_2"}  # cpu_affinity unchanged
    prepare_workdir(tmp_path / "a", {"lr": 0.1}, extra=other)  # the resume keeps the provenance of the start
    assert json.loads((tmp_path / "a" / "config.json").read_text())["cpu_isa"] == start["cpu_isa"]
    with pytest.warns(ResumeProvenanceWarning, match=r"started with cpu_isa=.*, xla_flags=.* and resumes with "
                      r"cpu_isa=\['sse4_2'\], xla_flags='--xla_cpu_max_isa=SSE4_2'.*--fresh"):
        assert warn_on_changed_setting(tmp_path / "a", other) == ["cpu_isa", "xla_flags"]
    # a run started before the fields existed is compared on the fields it has
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text(json.dumps({"config": {"lr": 0.1}, "git_sha": "abc"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_on_changed_setting(tmp_path / "old", other) == []
        assert warn_on_changed_setting(tmp_path / "absent", other) == []
    with pytest.warns(ResumeProvenanceWarning, match="git_sha='abc' and resumes with git_sha='def'"):
        warn_on_changed_setting(tmp_path / "old", {**other, "git_sha": "def"})


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_workdir_without_write_permission(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        with pytest.raises(WorkdirError, match="not writable"):
            prepare_workdir(d, {"a": 1})
    finally:
        d.chmod(0o755)
