"""AutoPQ's point-forecaster zoo: the reference's search spaces, training with reports and early stopping."""

import numpy as np
import optuna
import pytest

import jaxlab.data as jd
from jaxlab import timeseries as ts
from jaxlab.methods.autopq import (ForecasterTraining, SeriesSpec, fit_forecaster, forecaster_config, make_windows,
                                   suggest_hyperparameters)


@pytest.fixture(scope="module")
def data():
    t = np.datetime64("2024-01-01T00:00:00", "s") + np.arange(24 * 50) * np.timedelta64(3600, "s")
    rng = np.random.default_rng(0)
    hour = np.arange(t.size) % 24
    w = rng.normal(size=t.size)
    y = 10 + 3 * np.sin(2 * np.pi * hour / 24) + w + 0.3 * rng.normal(size=t.size)
    s = jd.time_series(t, np.stack([y, w], 1), columns=("y", "w"), target="y", name="toy")
    return make_windows(s, SeriesSpec("toy", 6, ("w",), (0.0, None), 48, 24))


def test_search_spaces_are_the_references(data):
    hp = suggest_hyperparameters(optuna.trial.FixedTrial({
        "mlp_batch_size": 32, "mlp_neurons_1": 40, "mlp_neurons_2": -20, "mlp_neurons_3": 15,
        "mlp_activation": "logistic"}), "mlp", data)
    assert hp == {"hidden": (40, 15), "activation": "logistic", "batch_size": 32}   # width < 10: no layer
    cfg = forecaster_config("mlp", hp, data)
    assert isinstance(cfg, ts.MLPForecasterConfig) and cfg.future_features == 7 and cfg.input_len == 48
    hp = suggest_hyperparameters(optuna.trial.FixedTrial({
        "nhits_batch_size": 64, "nhits_hidden": 8, "nhits_layers": 3, "nhits_dropout": 0.1}), "nhits", data)
    assert forecaster_config("nhits", hp, data).layers == 3
    with pytest.raises(ValueError, match="unknown forecaster"):
        forecaster_config("svr", {}, data)        # the reference's enum maps SVR to the MLP; we refuse it


def test_training_defaults_are_sklearn_mlpregressors():
    """The reference's MLP is sklearn's MLPRegressor with its defaults: up to 200 epochs, patience 10, lr 1e-3
    (a cap of 50 epochs cut the MLP's training short on taylor)."""
    from sklearn.neural_network import MLPRegressor

    from jaxlab.methods.autopq import AutoPQConfig
    from jaxlab.methods.autopq._forecasters import DEFAULTS

    ref = MLPRegressor()
    settings = ForecasterTraining()
    assert settings.max_epochs == ref.max_iter and AutoPQConfig().forecaster_epochs == ref.max_iter
    assert settings.patience == ref.n_iter_no_change and AutoPQConfig().forecaster_patience == ref.n_iter_no_change
    assert settings.learning_rate == ref.learning_rate_init
    assert DEFAULTS["mlp"]["hidden"] == ref.hidden_layer_sizes and DEFAULTS["mlp"]["activation"] == ref.activation


def test_training_reports_every_epoch_and_keeps_the_best(data, getkey):
    seen = []
    fit = fit_forecaster("dlinear", {"kernel": 5, "batch_size": 32}, data, key=getkey(),
                         settings=ForecasterTraining(max_epochs=6, patience=2, learning_rate=3e-3),
                         report=lambda e, loss: seen.append((e, loss)))
    assert [e for e, _ in seen] == list(range(1, fit.epochs + 1))
    assert fit.holdout_loss[fit.best_epoch - 1] == min(fit.holdout_loss)
    assert fit.holdout_loss[-1] < fit.holdout_loss[0]
    va = data.splits["val"]
    naive = fit_forecaster("persistence", None, data, key=getkey())
    err = lambda f: np.mean((f(va.history, va.future) - va.target) ** 2)  # noqa: E731
    assert naive.epochs == 0 and err(fit) < err(naive)


def test_pruning_propagates_out_of_training(data, getkey):
    def report(epoch, loss):
        if epoch == 2:
            raise optuna.TrialPruned()
    with pytest.raises(optuna.TrialPruned):
        fit_forecaster("dlinear", None, data, key=getkey(), settings=ForecasterTraining(max_epochs=5), report=report)
