"""Run records across restarts, divergence, completed reruns, and checkpoints that are checked before use."""

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.core import MetricsWriter, read_metrics
from jaxlab.train import CheckpointError, DivergedError, TrainState, state_digests, train_loop

ROOT = Path(__file__).resolve().parents[2]


def _state(n=3):
    w = jax.random.normal(jax.random.key(n), (n,), jnp.float32)  # incompressible: the data files hold it as is
    return TrainState(step=jnp.zeros((), jnp.int32), params={"w": w}, opt_state=(), model_state={})


def _step_fn(nan_from=None):
    @jax.jit
    def step(state, batch, key):
        loss, g = jax.value_and_grad(lambda w: jnp.sum((w - batch) ** 2))(state.params["w"])
        if nan_from is not None:
            bad = state.step + 1 >= nan_from
            loss, g = jnp.where(bad, jnp.nan, loss), jnp.where(bad, jnp.nan, g)
        return TrainState(step=state.step + 1, params={"w": state.params["w"] - 0.1 * g}, opt_state=(),
                          model_state={}), {"loss": loss}

    return step


def _batch(i):
    return jnp.float32(i % 4)


def _loop(wd, num_steps=8, eval_fn=None, step_fn=None, state=None, **kw):
    kw.setdefault("log_every", 2)
    kw.setdefault("checkpoint_every", 4)
    return train_loop(_state() if state is None else state, step_fn or _step_fn(), _batch, num_steps=num_steps,
                      key=jax.random.key(0), workdir=wd, eval_fn=eval_fn, meter=None, progress=False, **kw)


def _digest(wd):
    return {str(p.relative_to(wd)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(wd.rglob("*"))
            if p.is_file()}


def test_restart_without_a_checkpoint_drops_the_old_records(tmp_path):
    # A process killed before its first checkpoint left records at steps 2 and 4 (and a torn line).
    with MetricsWriter(tmp_path / "metrics.jsonl") as w:
        w.write(step=2, split="train", loss=9.0)
        w.write(step=4, split="train", loss=9.0)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "spl')
    _loop(tmp_path)
    recs = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in recs] == [2, 4, 6, 8] and all(r["loss"] != 9.0 for r in recs)


def test_ctrl_c_during_an_eval_keeps_that_eval(tmp_path):
    def eval_fn(state):
        if int(state.step) == 4 and not (tmp_path / "done").exists():
            (tmp_path / "done").write_text("")
            raise KeyboardInterrupt
        return {"v": float(state.step)}

    with pytest.raises(KeyboardInterrupt):
        _loop(tmp_path, eval_fn=eval_fn, eval_every=2, checkpoint_every=0)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["checkpoint_step"] == 4
    _loop(tmp_path, eval_fn=eval_fn, eval_every=2, checkpoint_every=0)
    evals = [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "eval"]
    assert evals == [2, 4, 6, 8]  # the eval at 4 was redone on resume, once


def test_a_completed_run_is_returned_unchanged(tmp_path):
    state, first = _loop(tmp_path, eval_fn=lambda s: {"v": 1.0})
    before = _digest(tmp_path)
    again, second = _loop(tmp_path, eval_fn=lambda s: {"v": 1.0})
    assert second == first and _digest(tmp_path) == before
    np.testing.assert_array_equal(again.params["w"], state.params["w"])


def test_divergence_stops_the_run_and_keeps_the_last_finite_checkpoint(tmp_path):
    with pytest.raises(DivergedError, match="diverged at step 6: loss is nan") as e:
        _loop(tmp_path, num_steps=12, step_fn=_step_fn(nan_from=6))
    assert e.value.step == 6 and e.value.checkpoint_step == 4
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_at_step"] == 6 and "learning rate" in summary["error"]
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [4]
    restored, _ = _loop(tmp_path, num_steps=4)  # the kept checkpoint is finite
    assert np.all(np.isfinite(restored.params["w"]))


def test_a_non_finite_state_is_never_checkpointed(tmp_path):
    @jax.jit
    def step(state, batch, key):  # a finite loss, but the update at step 3 makes the parameters inf
        w = jnp.where(state.step + 1 == 3, jnp.inf, state.params["w"] + 1)
        return state._replace(step=state.step + 1, params={"w": w}), {"loss": jnp.float32(1.0)}

    with pytest.raises(DivergedError, match="step 4: the parameters"):
        _loop(tmp_path, step_fn=step)
    assert not (tmp_path / "checkpoints" / "4").exists()


def _flip_bytes(folder: Path, n=64):
    """Flips ``n`` bytes in the middle of the checkpoint's largest data file (not its metadata)."""
    f = max((p for p in folder.rglob("*") if p.is_file() and p.parent.name == "d"), key=lambda p: p.stat().st_size)
    b = bytearray(f.read_bytes())
    for i in range(n):
        b[len(b) // 2 + i] ^= 0xFF
    f.write_bytes(bytes(b))


def test_a_corrupt_checkpoint_is_refused_and_the_previous_good_one_offered(tmp_path):
    _loop(tmp_path, num_steps=8, state=_state(4096))
    (tmp_path / "summary.json").unlink()  # as if killed before the end
    _flip_bytes(tmp_path / "checkpoints" / "8")
    with pytest.raises(CheckpointError) as e:
        _loop(tmp_path, num_steps=8, state=_state(4096))
    msg = str(e.value)
    assert f"{tmp_path / 'checkpoints' / '8'}' is corrupt" in msg and "params/w" in msg
    assert "step 4" in msg and str(tmp_path / "checkpoints" / "4") in msg
    shutil.rmtree(tmp_path / "checkpoints" / "8")
    _, summary = _loop(tmp_path, num_steps=8, state=_state(4096))
    assert summary["resumed_from"] == 4 and summary["status"] == "completed"


def test_a_different_model_is_refused_from_the_metadata(tmp_path):
    _loop(tmp_path, num_steps=4)
    (tmp_path / "summary.json").unlink()
    with pytest.raises(CheckpointError, match=r"different model: params/w is \(3,\) float32 there and \(5,\)"):
        _loop(tmp_path, num_steps=8, state=_state(5))


def test_a_checkpoint_beyond_num_steps_is_refused(tmp_path):
    _loop(tmp_path, num_steps=8)
    with pytest.raises(CheckpointError, match="beyond num_steps=4"):
        _loop(tmp_path, num_steps=4)


def test_workdir_that_is_a_file_and_bad_periods(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        _loop(tmp_path / "f")
    for kw, needle in (({"log_every": 0}, "log_every"), ({"checkpoint_every": -1}, "checkpoint_every"),
                       ({"eval_every": 1.5}, "eval_every")):
        with pytest.raises(ValueError, match=needle):
            _loop(tmp_path / "x", **kw)


@pytest.mark.parametrize("method", ["blake2b", "sum64"])
def test_state_digests_see_any_changed_element(method):
    tree = {"f32": jnp.arange(1000, dtype=jnp.float32), "bf16": jnp.ones(7, jnp.bfloat16),
            "i64": jnp.arange(5, dtype=jnp.int64), "b": jnp.array([True, False]), "key": jax.random.key(0),
            "f64": jnp.linspace(0.0, 1.0, 9)}
    digests, finite = state_digests(tree, method=method)
    assert finite and set(digests) == set(tree) and {d["method"] for d in digests.values()} == {method}
    assert state_digests(tree, method=method)[0] == digests  # deterministic
    for name in ("f32", "bf16", "i64", "f64"):
        x = tree[name]
        changed = dict(tree, **{name: x.at[len(x) // 2].set(x[len(x) // 2] + 1)})
        assert state_digests(changed, method=method)[0][name]["digest"] != digests[name]["digest"]
    swapped = dict(tree, f32=tree["f32"][::-1])  # same values, other places
    assert state_digests(swapped, method=method)[0]["f32"]["digest"] != digests["f32"]["digest"]
    assert not state_digests(dict(tree, f64=tree["f64"].at[0].set(jnp.nan)), method=method)[1]
    assert not state_digests(dict(tree, bf16=tree["bf16"].at[0].set(jnp.inf)), method=method)[1]


def test_a_checkpoint_is_verified_with_the_method_it_was_saved_with(tmp_path, monkeypatch):
    import jaxlab.train._checkpoint as ck

    monkeypatch.setattr(ck, "HOST_DIGEST_MAX_BYTES", 0)  # as for a large state: checksummed on the device
    _loop(tmp_path, num_steps=4, state=_state(4096))
    monkeypatch.setattr(ck, "HOST_DIGEST_MAX_BYTES", 2**30)  # now small enough for the host
    _, summary = _loop(tmp_path, num_steps=8, state=_state(4096))  # checkpoint 4 still verifies
    assert summary["resumed_from"] == 4
    (tmp_path / "summary.json").unlink()
    shutil.rmtree(tmp_path / "checkpoints" / "8")
    _flip_bytes(tmp_path / "checkpoints" / "4")
    with pytest.raises(CheckpointError, match="is corrupt: params/w"):
        _loop(tmp_path, num_steps=8, state=_state(4096))


def test_checkpoint_errors_leave_no_orbax_noise_at_exit(tmp_path):
    """A refused checkpoint closes its manager: no 'Event loop is closed' pages when the process ends."""
    script = textwrap.dedent(f"""
        import shutil, sys
        sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        from test_resume import _loop, _state, _flip_bytes
        from jaxlab.train import CheckpointError
        wd = Path({str(tmp_path)!r})
        _loop(wd, num_steps=4)
        (wd / "summary.json").unlink()
        for state in (_state(5), _state(3)):
            if state.params["w"].shape == (3,):
                for f in (wd / "checkpoints" / "4").rglob("*"):
                    if f.is_file() and f.stat().st_size > 100:
                        f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
            try:
                _loop(wd, num_steps=8, state=state)
            except CheckpointError as e:
                print("refused:", str(e)[:60], file=sys.stderr)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                       env={"PATH": "/usr/bin:/bin", "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("refused:") == 2, r.stderr[-3000:]
    assert "Event loop is closed" not in r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]
