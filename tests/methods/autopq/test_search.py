"""The searches: the plateau stop, budgets, the log-normal prior, recovering a synthetic optimal
lambda_q, and the advanced mode's pruning, prior and inner-search skipping."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.methods.autopq import (Budget, LogNormalPrior, PlateauStop, SampleScorer, fit_lognormal,
                                   search_advanced, search_lambda, standard_noise)


def test_plateau_stop_fires_after_five_flat_trials(fixed_meter):
    # trial 1 is skipped (as in the reference), trials 2-4 give fewer than 5 losses, then 5 flat checks
    res = search_lambda(lambda lam: 1.0 + 1e-6 * lam, budget=Budget(trials=50), meter_factory=fixed_meter)
    assert res.stopped_by == "plateau" and len(res.trials) == 9
    noisy = search_lambda(lambda lam: (lam - 1.0) ** 2, budget=Budget(trials=25), meter_factory=fixed_meter,
                          plateau=PlateauStop(std=1e-12))
    assert noisy.stopped_by == "trials" and len(noisy.trials) == 25


def test_plateau_counter_resets_and_ignores_pruned_trials():
    class Study:
        stopped = False

        def stop(self):
            self.stopped = True

    class Trial:
        def __init__(self, value):
            self.value = value

    stop, study = PlateauStop(std=0.01, top=2, patience=2), Study()
    for v in (5.0, 1.0, 1.001, None, 3.0):     # checks: (1, 5) wide, (1, 1.001) flat, pruned, (1, 1.001) flat
        stop(study, Trial(v))
    assert stop.count == 2 and study.stopped and stop.fired


def test_budgets_stop_on_energy_and_time(fixed_meter):
    res = search_lambda(lambda lam: lam, budget=Budget(trials=50, kwh=3.5 / 3.6e6), plateau=False,
                        meter_factory=lambda: fixed_meter(1.0))
    assert res.stopped_by == "kwh" and len(res.trials) == 4 and res.energy_j == pytest.approx(4.0)
    res = search_lambda(lambda lam: lam, budget=Budget(trials=50, time_s=0.0), plateau=False,
                        meter_factory=fixed_meter)
    assert res.stopped_by == "time" and len(res.trials) == 1


def test_lognormal_prior_is_fitted_to_logs_and_bounds_the_search(fixed_meter):
    lams = [0.1, 0.2, 0.4]
    prior = fit_lognormal(lams)
    assert prior.mu == pytest.approx(np.mean(np.log(lams))) and prior.sigma == pytest.approx(np.std(np.log(lams), ddof=1))
    assert prior.ppf(0.5) == pytest.approx(0.2)
    tight = LogNormalPrior(np.log(0.2), 0.1)
    res = search_lambda(lambda lam: lam, budget=Budget(trials=12), prior=tight, plateau=False,
                        meter_factory=fixed_meter)
    got = np.array([r["lambda_q"] for r in res.trials])
    assert np.all((got > 0.2 * np.exp(-0.4)) & (got < 0.2 * np.exp(0.4)))   # u in [1e-4, 1 - 1e-4]: +-3.72 sigma
    uniform = search_lambda(lambda lam: lam, budget=Budget(trials=12), plateau=False, meter_factory=fixed_meter)
    assert np.ptp([r["lambda_q"] for r in uniform.trials]) > 1.0


def test_default_search_recovers_a_synthetic_optimal_lambda(permutation_cinn, fixed_meter, full_optimizations):
    # with a zero-parameter cINN, z = P y_hat and the rule's samples are y_hat (1 + lambda eps): targets
    # drawn as y_hat (1 + 0.4 xi) make lambda_q = 0.4 the CRPS-optimal value
    model, params = permutation_cinn
    key = jax.random.key(11)
    forecast = jax.random.uniform(jax.random.fold_in(key, 0), (500, 4), minval=1.0, maxval=2.0)
    target = forecast * (1 + 0.4 * jax.random.normal(jax.random.fold_in(key, 1), (500, 4)))
    noise = standard_noise(jax.random.fold_in(key, 2), (500, 4), 100)
    scorer = SampleScorer(model, offset=0.0, scale=1.0, chunk=500)
    cond = jnp.zeros((500, 2))
    res = search_lambda(lambda lam: scorer.crps(params, forecast, cond, noise, target, lam), budget=Budget(trials=60),
                        seed=0, meter_factory=fixed_meter)
    assert res.best_params["lambda_q"] == pytest.approx(0.4, rel=0.1)
    assert res.best_value < scorer.crps(params, forecast, cond, noise, target, 0.1)


class _Fitted:
    def __init__(self, name, train_s):
        self.name, self.train_s, self.epochs = name, train_s, 10


def test_advanced_search_prunes_uses_the_prior_and_skips_the_inner_search(fixed_meter):
    def fit(trial, name, hp, report):
        for epoch in range(1, 11):                           # the weak forecaster's curve stays high
            report(epoch, (0.1 if name == "good" else 10.0) + hp["width"] / 1000)
        return _Fitted(name, train_s=0.0)                    # cheaper than any inner search

    def objective_for(f):
        return lambda lam: (lam - 0.5) ** 2 + (0.0 if f.name == "good" else 1.0)

    def suggest(trial, name):
        return {"width": trial.suggest_int("width", 1, 100)}

    res = search_advanced(fit, objective_for, suggest, ("good", "bad"), budget=Budget(trials=16),
                          inner_budget=Budget(trials=8), meter_factory=fixed_meter, skip_after=2,
                          pruner_min_resource=1, startup_trials=4)
    rows = res.search.trials
    assert len(rows) == 16 and res.forecast.name == "good" and res.search.best_params["forecaster"] == "good"
    states = [r["state"] for r in rows]
    bad = [r for r in rows if r["forecaster"] == "bad"]
    assert any(r["state"] == "PRUNED" for r in bad) and "PRUNED" in states
    done = [r for r in rows if r["state"] == "COMPLETE"]
    assert [r["inner_skipped"] for r in done][:2] == [False, False] and any(r["inner_skipped"] for r in done)
    assert all(r["inner_trials"] == 0 for r in done if r["inner_skipped"])
    assert done[0]["prior"] == "uniform" and done[-1]["prior"].startswith("lognormal")
    assert all(r["energy_j"] == 1.0 for r in rows)           # the outer meter, pruned trials included
