"""How the members of a stack are run: vmap, lax.map or an unrolled loop (``jaxlab.methods.transplant`` ``vectorize``).

Times one jitted gradient of a cross-entropy loss for k SmallCNN members (Fashion-MNIST-sized 28x28x1 images, each
member on its own batch) with each of the three orders, and one member alone, in one process; median of
``--repeats`` calls after a first call (compile and one run, reported as ``first_call_s``). On XLA:CPU a vmapped convolution
becomes a grouped convolution and a mapped one runs inside a while loop; the unrolled loop keeps k plain ones.

With ``--epochs E`` it times instead the training program itself: ``train_stack`` (the jitted epoch, ``lax.scan``
over batches, evaluation after each epoch) for E epochs on ``--images`` random training images, per epoch, for each
order: ``epoch_s`` (the first also holds the compilations, the optimiser states and the evaluation before training),
``first_epoch_s`` and ``median_s`` (of the later epochs). The gradient alone overstates the gap between orders.

``--model`` (with ``--epochs``) picks the net as the transplant grid builds it (``make_model`` with the default
widths: SmallCNN (32, 64) + 128, VGG11 at 1/8 width, the narrow ResNet18 with 8 filters), on 28x28x1 images or,
for VGG11 and ResNet18, 32x32x1 (the grid pads to 32).

Command:  python scripts/bench_transplant_vectorize.py --json bench/results/transplant-vectorize-cpu-s15.json
          python scripts/bench_transplant_vectorize.py --epochs 3 --k 4 --batch 128 --orders unroll,map,vmap --json FILE
          python scripts/bench_transplant_vectorize.py --epochs 3 --k 4 --batch 128 --model vgg11 --orders unroll,map
Writes bench/results/transplant-vectorize-<backend>.json by default (records with ``median_s``, ``times_s``,
``first_call_s`` and ``ratio_to_unroll``), with ``--epochs`` transplant-vectorize-epochs-<backend>.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--k", type=int, default=4, help="members in the stack")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--orders", default="single,unroll,vmap,map")
    ap.add_argument("--epochs", type=int, default=0, help="time train_stack for this many epochs (0: the gradient)")
    ap.add_argument("--images", type=int, default=1024, help="training images per epoch (with --epochs)")
    ap.add_argument("--model", default="smallcnn", choices=("smallcnn", "vgg11", "resnet18"),
                    help="the net, as the transplant grid builds it (with --epochs; the gradient mode: smallcnn)")
    ap.add_argument("--json", help="output file (default bench/results/transplant-vectorize-<backend>.json)")
    args = ap.parse_args()
    if args.model != "smallcnn" and args.epochs <= 0:
        ap.error("--model vgg11 / resnet18 needs --epochs (the gradient mode times SmallCNN only)")

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from jaxlab.methods.transplant import _train
    from jaxlab.nn import SmallCNN

    if args.epochs > 0:
        from jaxlab.methods.transplant import TransplantConfig, make_model, padded_size

        return _epochs(args, make_model(args.model, TransplantConfig(), 10), padded_size(args.model) or 28)
    model = SmallCNN(num_classes=10)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(args.k, args.batch, 28, 28, 1)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, (args.k, args.batch)), jnp.int32)
    params = jax.vmap(lambda key: model.init(key, x[0, :1]))(jax.random.split(jax.random.key(0), args.k))

    def grad(p, xb, yb):
        return jax.grad(lambda q: optax.softmax_cross_entropy_with_integer_labels(model.apply(q, xb), yb).mean())(p)

    records = []
    for order in args.orders.split(","):
        if order == "single":
            fn, call = jax.jit(grad), (jax.tree.map(lambda a: a[0], params), x[0], y[0])
        else:
            fn, call = jax.jit(_train._over_models(grad, order)), (params, x, y)
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*call))
        first = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*call))
            times.append(time.perf_counter() - t0)
        rec = {"order": order, "models": 1 if order == "single" else args.k, "median_s": float(np.median(times)),
               "times_s": times, "first_call_s": first}
        records.append(rec)
        print(f"{order:>7}: {rec['median_s'] * 1e3:9.1f} ms (first call {first:.2f} s)", flush=True)
    return _save("transplant-vectorize", records, args,
                 model="SmallCNN (32, 64) + 128, 28x28x1, gradient of cross-entropy")


def _save(name: str, records: list, args, **meta) -> int:
    """Adds ``ratio_to_unroll`` to every record and writes the file."""
    from jaxlab.core import save_benchmark

    base = next((r["median_s"] for r in records if r["order"] == "unroll"), None)
    for r in records:
        r["ratio_to_unroll"] = r["median_s"] / base if base else None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    path = save_benchmark(name, records, args.json, load_average=load, k=args.k, batch=args.batch, **meta)
    print(f"wrote {path}")
    return 0


def _epochs(args, model, size: int) -> int:
    import jax
    import numpy as np

    from jaxlab.methods.transplant import _train

    rng = np.random.default_rng(0)

    def images(n):
        return rng.normal(size=(n, size, size, 1)).astype(np.float32), rng.integers(0, 10, n).astype(np.int32)

    splits = _train.Splits(*images(args.images), *images(256), *images(256), num_classes=10)
    keys = jax.random.split(jax.random.key(0), args.k)
    records = []
    for order in args.orders.split(","):
        init = _train.init_stack(model, keys, splits.x_train[:1])
        stamps = [time.perf_counter()]
        _train.train_stack(model, init, splits, epochs=args.epochs, lr=0.01, batch_size=args.batch,
                           seeds=list(range(args.k)), vectorize=order,
                           progress=lambda e, c: stamps.append(time.perf_counter()))
        epoch_s = [float(t) for t in np.diff(stamps)]
        rec = {"order": order, "models": args.k, "epoch_s": epoch_s, "first_epoch_s": epoch_s[0],
               "median_s": float(np.median(epoch_s[1:] if len(epoch_s) > 1 else epoch_s))}
        records.append(rec)
        print(f"{order:>7}: first epoch {epoch_s[0]:.1f} s, later median {rec['median_s']:.1f} s", flush=True)
    names = {"smallcnn": "SmallCNN (32, 64) + 128", "vgg11": "VGG11 at width 1/8", "resnet18": "ResNet18, 8 filters"}
    return _save("transplant-vectorize-epochs", records, args, epochs=args.epochs, images=args.images,
                 model=f"{names[args.model]}, {size}x{size}x1, train_stack epochs (random images)")


if __name__ == "__main__":
    sys.exit(main())
