"""Why did the narrow ResNet18 members of grid_resnet18_mnist5k_cpu learn so little in 2 epochs?

One member (seed 1000, as member 0 of the grid), the grid's settings (configs/transplant/grid.py:resnet18_mnist5k_cpu:
MNIST-5k padded to 32x32 and normalised, SGD lr 0.01 momentum 0.9, batch 128, no weight decay, BN momentum 0.9),
trained epoch by epoch with the project's train_stack. After every epoch, validation accuracy in
  eval:   eval mode (running BatchNorm statistics), what the grid reports;
  train:  train mode (each batch of 200 validation images normalised by its own statistics);
  recal:  eval mode after recalibrate_bn on 20 training batches (the grid's recalibration);
and the mean training loss. Each run is LR:INIT, INIT "zero" (the grid's ResNet: the last BatchNorm scale of every
block starts at 0) or "ones" (zero_init_residual=False, torchvision's default).

Usage: PYTHONPATH=. nice -n 10 python bench/results/transplant/resnet18_mnist5k_diagnosis/diagnose.py EPOCHS LR:INIT...
"""

import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs.transplant.grid import get_config
from jaxlab.methods.transplant._experiment import load_splits, make_model
from jaxlab.methods.transplant._train import (accuracies, apply_model, init_stack, make_logits_fn, recalibrate_bn,
                                              train_stack)

epochs = int(sys.argv[1])
runs = [(float(a.split(":")[0]), a.split(":")[1] == "zero") for a in sys.argv[2:]] or [(0.01, True)]
cfg = get_config("resnet18_mnist5k_cpu")
splits = load_splits("mnist5k", validation_fraction=cfg.validation_fraction, pad_to=32)


def measures(model, stacked):
    logits_fn = make_logits_fn(model, vectorize="map")
    train_logits = jax.jit(lambda v, x: apply_model(model, v, x, train=True)[0])
    v0 = jax.tree.map(lambda a: a[0], stacked)
    ev = float(accuracies(logits_fn(stacked, splits.x_val), splits.y_val)[0])
    tr = float(np.mean([np.mean(np.argmax(np.asarray(train_logits(v0, splits.x_val[i:i + 200])), -1)
                                 == splits.y_val[i:i + 200]) for i in range(0, len(splits.x_val), 200)]))
    rec = recalibrate_bn(model, stacked, splits.x_train, num_batches=cfg.bn_batches, batch_size=cfg.batch_size)
    rc = float(accuracies(logits_fn(rec, splits.x_val), splits.y_val)[0])
    stats = jax.tree.leaves(v0["batch_stats"])
    rstats = jax.tree.leaves(jax.tree.map(lambda a: a[0], rec["batch_stats"]))
    gap = float(max(np.max(np.abs(np.asarray(a) - np.asarray(b)) / (np.abs(np.asarray(b)) + 1e-3))
                    for a, b in zip(stats, rstats)))
    return {"val_eval": ev, "val_train_mode": tr, "val_recalibrated": rc, "max_rel_stat_gap": gap}


out = {"argv": sys.argv, "load_average": os.getloadavg(), "jax": jax.__version__, "python": platform.python_version(),
       "config": {k: getattr(cfg, k) for k in ("lr", "momentum", "batch_size", "weight_decay", "resnet_filters",
                                              "bn_batches")},
       "train_size": len(splits.x_train), "runs": []}
for lr, zero in runs:
    model = make_model("resnet18", cfg, splits.num_classes).clone(zero_init_residual=zero)
    stacked = init_stack(model, jnp.stack([jax.random.key(1000)]), jnp.asarray(splits.x_train[:1]))
    run = {"lr": lr, "zero_init_residual": zero, "epochs": [{"epoch": 0, **measures(model, stacked)}]}
    t0 = time.perf_counter()
    for e in range(epochs):
        # one epoch at a time (train_stack's epoch e draws its batch order from (seed, e); continuing from the
        # previous state restarts the optimizer's momentum at each call, a small difference from the grid)
        stacked, curves = train_stack(model, stacked, splits, epochs=1, lr=lr, momentum=cfg.momentum,
                                      batch_size=cfg.batch_size, seeds=[1000 + 7919 * e], vectorize="map")
        run["epochs"].append({"epoch": e + 1, "train_loss": float(curves.loss[0, 0]), **measures(model, stacked)})
        print(lr, zero, run["epochs"][-1], f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    run["seconds"] = time.perf_counter() - t0
    out["runs"].append(run)
out["load_average_end"] = os.getloadavg()
print(json.dumps(out, indent=1))
