"""What `jaxlab reproduce` runs and what `jaxlab bench` knows.

Each method adds its headline experiment to ``EXPERIMENTS`` and its benchmark to ``BENCHMARKS``.
An experiment is a config file under ``configs/`` whose module defines ``get_config(arg)`` and
imports the method's ``run(config, workdir) -> summary``. The summary is a dict; ``REPORT.md``
shows the metrics named in ``metrics``, any ``summary["table"]`` (a list of row dicts) and every
PNG the run wrote into its workdir.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A headline experiment of one method.

    Attributes:
      name: short name used by ``--only``.
      config: config file relative to ``configs/``.
      quick_arg: ``get_config`` argument for ``reproduce --quick`` (a few CPU seconds to a minute).
      full_arg: argument for the full run (None: the config's default).
      description: one line for the report.
      metrics: summary keys shown in the report's results table.
      paper: the paper's figures for the same metrics, where known (shown side by side).
    """

    name: str
    config: str
    quick_arg: str | None
    full_arg: str | None
    description: str
    metrics: tuple[str, ...] = ()
    paper: dict[str, float | str] = dataclasses.field(default_factory=dict)


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        name="mlp_digits",
        config="examples/mlp_digits.py",
        quick_arg="quick",
        full_arg=None,
        description="MLP on the UCI optical digits (sklearn): the foundation's smoke experiment",
        metrics=("test_accuracy", "train_loss", "wall_s"),
    ),
    Experiment(
        name="energy_scaling",
        config="energy_scaling/grid.py",
        quick_arg="smoke",
        full_arg=None,
        description="Energy of data-parallel ResNet and AFNO training over (devices, global batch, local batch); "
                    "fit energy = a * device-hours + b (arXiv 2508.07706)",
        metrics=("resnet_slope_j_per_device_hour", "resnet_fit_r2", "afno_slope_j_per_device_hour", "afno_fit_r2",
                 "estimated", "wall_s"),
        paper={"resnet_fit_r2": "energy ~ linear in GPU-hours (no table values)",
               "afno_fit_r2": "energy ~ linear in GPU-hours (no table values)"},
    ),
    Experiment(
        name="weathermixer_jigsaw",
        config="weathermixer/smoke.py",
        quick_arg="smoke",
        full_arg=None,
        description="WeatherMixer trained with Jigsaw domain x tensor parallelism on mesh (1, 2, 2) "
        "(synthetic travelling waves; lat-weighted RMSE vs persistence)",
        metrics=("test_rmse", "persistence_rmse", "train_loss", "wall_s"),
    ),
    Experiment(
        name="recycle",
        config="recycle/elecdemand.py",
        quick_arg="quick",
        full_arg=None,
        description="ReCycle (residual cyclic transformer) vs profile, persistence, vanilla transformer and "
        "DLinear on Victoria's half-hourly electricity demand: MAE/MSE/MAPE, time and energy",
        metrics=("recycle_mae", "guarded_mae", "profile_mae", "residual_ar_mae", "residual_ridge_mae", "vanilla_mae",
                 "dlinear_mae", "time_ratio_vanilla_over_recycle", "energy_ratio_vanilla_over_recycle"),
    ),
    Experiment(
        name="fwdgrad_approximation",
        config="fwdgrad/approximation.py",
        quick_arg="quick",
        full_arg=None,
        description="Forward gradients: cosine and norm ratio to the true gradient vs n and k (mean vs projection)",
        metrics=("projection_cosine_ge_mean", "projection_cosine_ge_mean_every_sample_k_ge_2",
                 "projection_ahead_by_0.05_where_k_over_n_ge_0.25", "min_margin_where_k_over_n_ge",
                 "cos_projection_at_max", "cos_mean_at_max", "wall_s"),
        paper={"projection_cosine_ge_mean": "yes (projection is the best approximation in span(V))"},
    ),
    Experiment(
        name="fwdgrad_functions",
        config="fwdgrad/functions.py",
        quick_arg="quick",
        full_arg=None,
        description="Forward gradients on sphere, Rosenbrock, Styblinski-Tang: backprop vs mean vs projection",
        metrics=("projection_passes", "projection_win_fraction", "sign_test_p", "qualifying_cells",
                 "projection_beats_mean_fraction", "median_gap_projection", "median_gap_mean",
                 "median_gap_backprop", "wall_s"),
    ),
    Experiment(
        name="fwdgrad_mlp",
        config="fwdgrad/mlp.py",
        quick_arg="quick",
        full_arg="cpu",
        description="Forward gradients: FC nets on MNIST-5k and Fashion-MNIST, backprop vs mean vs global and "
                    "per-tensor projection (weight perturbation) and mean vs projection (activity perturbation), SGD "
                    "rate tuned per (dataset, method, k) on a validation split",
        # The per-tensor projection (the reference's forward-mode path, not used for the paper's results) stays in
        # the table, labelled, but not among the headline metrics.
        metrics=("projection_beats_mean_every_k", "projection_significantly_beats_mean_every_k",
                 "projection_noninferior_to_mean_every_k",
                 "activity_projection_beats_activity_mean_every_k", "acc_backprop_mnist5k", "acc_projection_kmax_mnist5k",
                 "acc_mean_kmax_mnist5k", "wall_s"),
        paper={"projection_beats_mean_every_k": "ties once rates are tuned (lrs/fc_nns.csv: lr_projection / lr_mean "
                                                "~ n_act / k)",
               "activity_projection_beats_activity_mean_every_k": "yes (the reference trains with activity "
                                                                  "perturbation by default)"},
    ),    Experiment(
        name="autopq",
        config="autopq/series.py",
        quick_arg="quick",
        full_arg=None,
        description="AutoPQ: cINN quantiles from point forecasts (lambda_q tuned by optuna TPE; advanced mode "
                    "searches the forecaster too) vs Gaussian residual quantiles, split conformal and linear "
                    "quantile regression on elecdemand, taylor, Bikeshare and TMY3 GHI; CRPS, coverage, kWh",
        metrics=("mean_improvement_over_gaussian", "goal_no_worse_than_gaussian_every_series",
                 "mean_improvement_tuned_over_lambda_0.1", "goal_coverage_80_within_0.05",
                 "default_kwh_total", "advanced_kwh_total", "wall_s"),
        paper={"mean_improvement_over_gaussian": "average CRPS -9 to -15% (third-party summary; other baselines)"},
    ),
    Experiment(
        name="petnet",
        config="petnet/reduced.py",
        quick_arg="quick",
        full_arg=None,
        description="PETNet (LIF spiking net, surrogate gradients) vs single-coincidence-window sorters on "
                    "simulated PET hits (reduced CPU preset): strict pair F1 by decay ID, training time, "
                    "throughput (arXiv 2504.06730)",
        metrics=("petnet_f1", "scw_f1", "scw_geometry_f1", "scw_geometry_single_good_f1", "scw_calibrated_f1",
                 "train_wall_s", "train_cpu_s", "petnet_samples_per_s", "scw_jit_samples_per_s"),
        paper={"petnet_f1": "0.952 (clinical set, max)", "scw_f1": "below PETNet (no table value)",
               "petnet_samples_per_s": "up to 36x SCW (SAFIR; no timing code)"},
    ),
    Experiment(
        name="fwdgrad_angles",
        config="fwdgrad/angles.py",
        quick_arg="quick",
        full_arg=None,
        description="Forward gradients with tangents at a fixed pairwise angle (n = 64): cosine of mean and "
                    "projection, and tuned descent on Styblinski-Tang",
        metrics=("projection_cosine_independent_of_angle", "mean_cosine_falls_as_angle_shrinks",
                 "projection_ge_mean_where_angle_le_45", "wall_s"),
    ),
    Experiment(
        name="abtrain",
        config="abtrain/mlp_fashion.py",
        quick_arg="quick",
        full_arg=None,
        description="AB-training (arXiv 2405.01067) vs data parallelism: MLP 784-1024-1024-10 on Fashion-MNIST, 8 "
                    "devices as 2 nodes x 4, the VGG16 schedule scaled to 3000 steps; intra/inter-node bytes of the "
                    "compiled programs, test accuracy over seeds, compression",
        metrics=("inter_ratio", "schedule_full_rank_fraction", "acc_ab_mean", "acc_dp_mean", "acc_gap_pp",
                 "compression_total_mean", "wall_s"),
        paper={"inter_ratio": "~0.35 from the schedule alone (VGG16, 2 nodes); paper: 50-70% less traffic",
               "compression_total_mean": "1/44.14 (timm VGG16 on CIFAR-10, only-b)"},
    ),
    Experiment(
        name="transplant",
        config="transplant/mlp.py",
        quick_arg="quick",
        full_arg=None,
        description="Neuron Transplantation (arXiv 2502.06849): k MLPs (3 x 512, no bias) on Fashion-MNIST fused by "
                    "transplanting their largest neurons, against weight averaging, OT fusion, weight matching and "
                    "distillation; test accuracy before / after fine-tuning (best-validation epoch)",
        metrics=("nt_test_before_k2", "nt_test_at_best_val_k2", "avg_test_at_best_val_k2", "best_member_test_k2",
                 "ensemble_test_k2", "k2_nt_ft_ge_best_member_plus_0.3pp", "k2_nt_ft_ge_avg_ft",
                 "k2_nt_before_gt_avg_before", "k2_nt_epochs_le_ot_every_seed", "wall_s"),
        paper={"k2_nt_ft_ge_best_member_plus_0.3pp": "NT beats single members of equal size after fine-tuning "
                                                      "(no table values)",
               "k2_nt_epochs_le_ot_every_seed": "NT needs less fine-tuning than OT fusion"},
    ),
    Experiment(
        name="tsprune",
        config="tsprune/study.py",
        quick_arg="quick",
        full_arg=None,
        description="Pruning time-series transformers (arXiv 2412.12883): Transformer, Informer, Autoformer, FEDformer "
                    "and Crossformer on elecdemand (3 channels) and NYC weather (21), unstructured masks with and "
                    "without fine-tuning, structured shrinking, FLOPs/latency/energy",
        metrics=("goal_density_0.5", "goal_density_0.1", "max_structured_speedup_batch256", "wall_s"),
        paper={"goal_density_0.5": "most models keep accuracy to ~50% density",
               "goal_density_0.1": "Autoformer/FEDformer competitive at s ~ 0.9",
               "max_structured_speedup_batch256": "up to 7.6x fewer FLOPs, no significant speed-up"},
    ),
)

# name -> script in scripts/ (run with the remaining command-line arguments).
BENCHMARKS: dict[str, str] = {
    "train": "bench_train.py",
    "krylov": "bench_krylov.py",
    "sparse": "bench_spmv.py",
    "energy": "bench_energy.py",
    "jigsaw": "bench_jigsaw.py",
    "fwdgrad": "bench_fwdgrad.py",
    "mfu": "bench_mfu.py",
    "gpu": "gpu_suite.py",
    "petnet": "bench_petnet.py",
    "abtrain": "bench_abtrain.py",
    "transplant": "bench_transplant.py",
    "distributed_cg": "bench_distributed_cg.py",
    "mtx": "bench_mtx.py",
    "ilu": "bench_ilu.py",
    "tsprune": "bench_tsprune.py",
}
