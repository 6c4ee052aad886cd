"""scripts/bench_transplant_vectorize.py --epochs: the grid's nets at their input size, one record per order, without
compiling (``init_stack`` and ``train_stack`` are replaced by fakes that record what they were given)."""

import json
import sys

import pytest

from .load_script import load_script


def _main(monkeypatch, *argv):
    monkeypatch.setattr(sys, "argv", ["bench_transplant_vectorize.py", *argv])
    return load_script("bench_transplant_vectorize").main()


def test_epochs_of_vgg11_run_on_padded_images_and_are_recorded(monkeypatch, tmp_path):
    from jaxlab.methods.transplant import _train
    from jaxlab.nn import VGG

    seen = []

    def fake_init(model, keys, x):
        seen.append(("init", type(model), x.shape, len(keys)))
        return "params"

    def fake_train(model, init, splits, *, epochs, vectorize, progress, **kw):
        seen.append(("train", type(model), splits.x_train.shape, epochs, vectorize, kw["batch_size"]))
        for e in range(epochs):
            progress(e, None)

    monkeypatch.setattr(_train, "init_stack", fake_init)
    monkeypatch.setattr(_train, "train_stack", fake_train)
    out = tmp_path / "v.json"
    assert _main(monkeypatch, "--epochs", "3", "--k", "2", "--batch", "16", "--images", "32", "--model", "vgg11",
                 "--orders", "unroll,map", "--json", str(out)) == 0
    assert seen == [("init", VGG, (1, 32, 32, 1), 2), ("train", VGG, (32, 32, 32, 1), 3, "unroll", 16),
                    ("init", VGG, (1, 32, 32, 1), 2), ("train", VGG, (32, 32, 32, 1), 3, "map", 16)]
    d = json.loads(out.read_text())
    assert d["model"] == "VGG11 at width 1/8, 32x32x1, train_stack epochs (random images)"  # the grid pads to 32
    assert d["k"] == 2 and d["epochs"] == 3 and d["images"] == 32
    assert [r["order"] for r in d["records"]] == ["unroll", "map"]
    for rec in d["records"]:
        assert rec["models"] == 2 and len(rec["epoch_s"]) == 3 and rec["first_epoch_s"] == rec["epoch_s"][0]
        assert min(rec["epoch_s"][1:]) <= rec["median_s"] <= max(rec["epoch_s"][1:])   # of the later epochs
    assert d["records"][0]["ratio_to_unroll"] == 1.0
    assert "cpu_isa" in d["environment"] and "xla_flags" in d["environment"]  # the setting is recorded


def test_model_other_than_smallcnn_needs_epochs(monkeypatch, capsys):
    with pytest.raises(SystemExit):
        _main(monkeypatch, "--model", "resnet18")
    assert "--model vgg11 / resnet18 needs --epochs" in capsys.readouterr().err
