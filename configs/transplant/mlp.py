"""Neuron Transplantation on Fashion-MNIST: MLP 3 x 512 without bias (the reference's `smallnn`), k in {2, 4}, 3 seeds.

Members: SGD lr 0.01, momentum 0.9, batch 256, 20 epochs (the reference trains 60); every fused model fine-tuned
10 epochs at lr 0.01 (the reference: 30). Each seed trains max(ks) = 4 members once; members 0-1 are its k = 2
ensemble and members 0-3 its k = 4 ensemble (12 members in all, one vmapped program). Methods: NT, weight
averaging and OT fusion ("wts", exact), each fine-tuned (18 fine-tunings, one vmapped program); best member
(chosen on validation) and output-averaged ensemble as references. ``full`` adds weight matching and
distillation (T = 2) of the ensemble into the NT model (distillation into member 0 is in
configs/transplant/grid.py); ``variants`` adds the iterative and hierarchical NT variants (at k = 2 both are
plain NT, so they run at k = 4 only). 54,000 training / 6,000 validation images
(carved from the training split) / 10,000 test; ``cpu``: the first 12,000 of the 54,000 training images (same
validation and test sets).
Accuracies are reported before fine-tuning, after the last epoch and at the best-validation epoch (the
reference reports the maximum test accuracy over epochs; here the test set selects nothing), with the first
fine-tuning epoch at which each model's validation accuracy reaches its best member's.

Command:  PYTHONPATH=. jaxlab run configs/transplant/mlp.py:cpu --workdir runs/transplant_mlp_fm_cpu
          jaxlab run configs/transplant/mlp.py --workdir runs/transplant_mlp          (all 54,000 images)
          jaxlab run configs/transplant/mlp.py:full                                   (+ weight matching, distillation)
          jaxlab run configs/transplant/mlp.py:variants       (+ iterative and hierarchical NT, run at k = 4)
          jaxlab run configs/transplant/mlp.py:quick     (MNIST-5k, tiny: `jaxlab reproduce --quick`)
          jaxlab run configs/transplant/mlp.py:smoke     (sklearn digits, seconds: the test suite)
Hardware: CPU (2 cores); members and fine-tuned models of all seeds run vmapped in one program each.
Runtime:  ``cpu``: 41 min on the shared 2-core CPU under load ~15-20 at nice 10 (members 1,600 s, fine-tuning
          764 s; bench/results/transplant/mlp_fashion_mnist_cpu/summary.json). Default (54,000 images): about
          4.5x the training work, not run here (an epoch of the 12 members took ~5 min under that load).
          Quick: about a minute.
Expected: the issue's goals are NT after fine-tuning >= best member + 0.3 pp and >= averaging after fine-tuning;
          NT before fine-tuning > averaging before; NT reaches the best member's validation accuracy in no more
          epochs than OT. Measured (``cpu``, best-validation epoch, mean of 3 seeds): NT - best member = +0.17 pp
          (k = 2) and -0.16 pp (k = 4), so the +0.3 pp goal is missed; NT > averaging after fine-tuning
          (86.18 vs 85.76, 85.92 vs 84.98) and before (81.00 vs 60.93, 58.06 vs 27.35); NT reached the best
          member's validation accuracy after 9, 10, 5 epochs against OT's 9, never, 7 (k = 2); at k = 4 no
          fused model reached it within 10 epochs.
          Default (all 54,000 images; bench/results/transplant/mlp_fashion_mnist_full/, about 12 min of member
          training and 6 min of fine-tuning on the 2 idle cores): NT - best member = +0.41 pp (k = 2, met) and
          +0.03 pp (k = 4, missed); NT > averaging after fine-tuning (89.16 vs 88.74, 88.89 vs 88.32) and before
          (81.60 vs 55.59, 57.79 vs 21.11); NT reached the best member after 1, 7, 4 epochs against OT's 5, 7, 10
          (k = 2) and 3, 10, 9 against 10, never, never (k = 4). ``variants`` (the same members, and the same nt,
          avg and ot figures; bench/results/transplant/mlp_fashion_mnist_variants/) puts iterative and hierarchical
          NT at +0.04 and +0.23 pp over the best member at k = 4, so no variant meets the +0.3 pp goal there.
"""

import dataclasses

from jaxlab.methods.transplant import TransplantConfig, run  # noqa: F401  (run is what `jaxlab run` calls)


_ALL = ("nt", "avg", "ot", "wm", "nt_distill")


def get_config(arg: str | None = None) -> TransplantConfig:
    config = TransplantConfig(experiments=("mlp/fashion_mnist",), ks=(2, 4), seeds=3, member_epochs=20,
                              finetune_epochs=10, mlp_hidden=(512, 512, 512), mlp_bias=False,
                              methods=("nt", "avg", "ot"))
    if arg in (None, "", "default"):
        return config
    if arg == "cpu":   # what the shared 2-core CPU can run in under an hour: 12,000 of the 54,000 training images
        return dataclasses.replace(config, train_size=12000)
    if arg == "full":
        return dataclasses.replace(config, methods=_ALL)
    if arg == "variants":   # the default's members and fine-tuning, with the two other NT orders
        return dataclasses.replace(config, methods=("nt", "nt_iterative", "nt_hierarchical", "avg", "ot"))
    if arg == "quick":
        return dataclasses.replace(config, methods=_ALL, experiments=("mlp/mnist5k",), ks=(2,), seeds=2,
                                   member_epochs=4, finetune_epochs=2, mlp_hidden=(64, 64), batch_size=128,
                                   test_size=500)
    if arg == "smoke":
        return dataclasses.replace(config, methods=_ALL, experiments=("mlp/digits",), ks=(2,), seeds=1,
                                   member_epochs=1, finetune_epochs=1, mlp_hidden=(16, 16), batch_size=64,
                                   test_size=200)
    raise ValueError(f"unknown argument {arg!r}; use 'cpu', 'full', 'variants', 'quick', 'smoke' or nothing")
