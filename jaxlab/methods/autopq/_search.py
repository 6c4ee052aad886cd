"""AutoPQ's hyperparameter search with optuna: the ``lambda_q`` search (default mode) and the nested
forecaster + ``lambda_q`` search (advanced mode), with budgets and per-trial energy.

Default mode (the reference's ``hyperopt_search``): TPE over ``lambda_q`` with the prior ``U(0.01, 3)``,
100 trials, and the reference's plateau stop (:class:`PlateauStop`): stop once the standard deviation of
the best 5 losses has stayed at or below 5e-4 for 5 trials.

Advanced mode (the reference's Propulate GA, here an optuna TPE study): each outer trial picks a point
forecaster and its hyperparameters, trains it (reporting the hold-out loss per epoch to a
``SuccessiveHalvingPruner``, which stops weak trials early), and then runs a nested ``lambda_q`` search
whose prior is a log-normal fitted to the ``lambda_q`` of the best completed outer trials (the
reference's "PK-informed" prior: ``mu``, ``sigma`` of ``log lambda_q``); until enough trials have
completed the prior is ``U(0.01, 3)``. TPE has no log-normal prior, so the inner search draws the prior
quantile ``u ~ U(0, 1)`` and maps it through the log-normal's inverse CDF: a uniform prior on ``u`` is
the log-normal prior on ``lambda_q``.

The reference's "Algorithm 3" skips the inner search when training is cheaper than the search; its
condition (``len(times) <= 5 and train_time < mean(times[-5:-1])``) is inverted (with fewer than 2
identification times the mean is NaN and it never skips; after 5 it never skips either). Here the inner
search is skipped once at least ``skip_after`` searches have run and the trial's training time is
below the mean of the last ``skip_after`` search times; the outer trial then draws ``lambda_q`` from
the prior itself (as the reference's GA does).

Every search stops on a trial, time or kWh budget (:class:`Budget`); each trial runs under its own
energy meter (``jaxlab.energy.EnergyMeter`` by default) and records ``energy_j`` and ``wall_s``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, NamedTuple

import numpy as np

from jaxlab.core import Meter

J_PER_KWH = 3.6e6
LAMBDA_RANGE = (0.01, 3.0)


def _optuna():
    try:
        import optuna
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("AutoPQ's search needs optuna: pip install optuna==5.0.0 "
                          "(or pip install -e '.[autopq]')") from e
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@dataclasses.dataclass(frozen=True)
class Budget:
    """When a search stops: after ``trials`` trials, ``time_s`` seconds or ``kwh`` kWh (None: no limit)."""

    trials: int = 100
    time_s: float | None = None
    kwh: float | None = None


class PlateauStop:
    """The reference's plateau stop as an optuna callback.

    After each completed trial (the first one excepted, as in the reference), the best ``top`` losses so
    far are taken; if there are ``top`` of them and their standard deviation is ``<= std``, a counter
    goes up, otherwise it resets to 0. The study stops when the counter reaches ``patience``.
    """

    def __init__(self, std: float = 5e-4, top: int = 5, patience: int = 5):
        self.std, self.top, self.patience = float(std), int(top), int(patience)
        self.losses: list[float] = []
        self.count = 0
        self.fired = False

    def __call__(self, study, trial) -> None:
        if trial.value is None:   # pruned or failed trials carry no loss
            return
        self.losses.append(float(trial.value))
        if len(self.losses) == 1:
            return
        best = sorted(self.losses)[: self.top]
        if len(best) == self.top and float(np.std(best)) <= self.std:
            self.count += 1
        else:
            self.count = 0
        if self.count >= self.patience:
            self.fired = True
            study.stop()


class BudgetStop:
    """Stops a study after a trial once the trials' recorded energy reaches ``kwh``, the wall time since the
    callback was made reaches ``time_s`` or the study holds ``trials`` trials (pruned ones included)."""

    def __init__(self, budget: Budget):
        self.budget = budget
        self.t0 = time.perf_counter()
        self.energy_j = 0.0
        self.reason: str | None = None

    def __call__(self, study, trial) -> None:
        self.energy_j += float(trial.user_attrs.get("energy_j", 0.0))
        b = self.budget
        if b.kwh is not None and self.energy_j >= b.kwh * J_PER_KWH:
            self.reason = "kwh"
        elif b.time_s is not None and time.perf_counter() - self.t0 >= b.time_s:
            self.reason = "time"
        elif len(study.trials) >= b.trials:
            self.reason = "trials"
        if self.reason:
            study.stop()


class LogNormalPrior(NamedTuple):
    """``log lambda_q ~ N(mu, sigma^2)``."""

    mu: float
    sigma: float

    def ppf(self, u: float) -> float:
        from scipy.stats import norm

        return float(math.exp(self.mu + self.sigma * norm.ppf(u)))


def fit_lognormal(lambdas, *, min_sigma: float = 0.05) -> LogNormalPrior:
    """Log-normal prior from ``lambda_q`` values: mean and (sample) standard deviation of their logs.

    ``sigma`` is floored at ``min_sigma`` so that a prior fitted to near-equal values still explores.
    """
    logs = np.log(np.asarray(lambdas, np.float64))
    if logs.size < 2:
        raise ValueError(f"a log-normal prior needs at least 2 values, got {logs.size}")
    return LogNormalPrior(float(logs.mean()), max(float(logs.std(ddof=1)), min_sigma))


class SearchResult(NamedTuple):
    """What a search found and what it cost.

    Attributes:
      best_params: the best trial's parameters (``lambda_q`` plus the advanced mode's choices).
      best_value: its validation loss.
      trials: one dict per trial (``number``, ``state``, ``value``, ``lambda_q``, ``energy_j``, ``wall_s``, ...).
      stopped_by: ``"plateau"``, ``"trials"``, ``"time"`` or ``"kwh"``.
      wall_s, energy_j: the whole search.
      estimated: whether the meter estimated rather than measured.
    """

    best_params: dict
    best_value: float
    trials: list
    stopped_by: str
    wall_s: float
    energy_j: float
    estimated: bool

    @property
    def kwh(self) -> float:
        return self.energy_j / J_PER_KWH


def _energy(reading: dict[str, Any]) -> float:
    if "total_energy_j" in reading:
        return float(reading["total_energy_j"])
    e = reading.get("energy_j", 0.0)
    return float(sum(e.values())) if isinstance(e, dict) else float(e)


def _default_meter() -> Meter:
    from jaxlab.energy import EnergyMeter

    return EnergyMeter()


def _metered(meter: Meter, fn: Callable[[], float]) -> tuple[float, float, float, bool]:
    t0 = time.perf_counter()
    meter.start()
    try:
        value = float(fn())   # a Python float: the device work is done
    finally:
        reading = meter.stop()
    return value, _energy(reading), time.perf_counter() - t0, bool(reading.get("estimated", False))


def _trial_rows(study) -> list[dict]:
    rows = []
    for t in study.trials:
        rows.append({"number": t.number, "state": t.state.name, "value": t.value, **t.params, **t.user_attrs})
    return rows


def _suggest_lambda(trial, prior: LogNormalPrior | None, name: str = "lambda_q") -> float:
    if prior is None:
        lam = trial.suggest_float(name, *LAMBDA_RANGE)
    else:
        lam = prior.ppf(trial.suggest_float(f"{name}_prior_quantile", 1e-4, 1 - 1e-4))
    trial.set_user_attr("lambda_q", lam)
    return lam


def search_lambda(objective: Callable[[float], float], *, budget: Budget = Budget(),
                  prior: LogNormalPrior | None = None, plateau: PlateauStop | None | bool = True,
                  seed: int = 0, meter_factory: Callable[[], Meter] = _default_meter,
                  startup_trials: int = 10) -> SearchResult:
    """Tunes ``lambda_q`` by TPE: AutoPQ's default mode (and the advanced mode's inner search).

    Args:
      objective: ``lambda_q -> validation loss`` (CRPS).
      budget: trial, time and kWh limits.
      prior: None for ``U(0.01, 3)``, else a log-normal prior.
      plateau: the plateau stop (True: the reference's ``PlateauStop()``; False/None: off).
      seed: TPE seed.
      meter_factory: makes the energy meter each trial runs under.
      startup_trials: random trials before TPE models the losses (optuna's ``n_startup_trials``).

    Returns:
      A :class:`SearchResult`; ``best_params["lambda_q"]`` is the tuned value.
    """
    optuna = _optuna()
    meter = meter_factory()
    estimated = []

    def trial_fn(trial):
        lam = _suggest_lambda(trial, prior)
        value, energy, wall, est = _metered(meter, lambda: objective(lam))
        trial.set_user_attr("energy_j", energy)
        trial.set_user_attr("wall_s", wall)
        estimated.append(est)
        return value

    stop = PlateauStop() if plateau is True else (plateau or None)
    budget_stop = BudgetStop(budget)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=startup_trials))
    callbacks = [budget_stop] + ([stop] if stop is not None else [])
    t0 = time.perf_counter()
    study.optimize(trial_fn, n_trials=budget.trials, callbacks=callbacks)   # time and kWh: BudgetStop
    wall = time.perf_counter() - t0
    rows = _trial_rows(study)
    reason = "plateau" if (stop is not None and stop.fired) else (budget_stop.reason or "trials")
    best = study.best_trial
    return SearchResult({"lambda_q": best.user_attrs["lambda_q"]}, float(best.value), rows, reason, wall,
                        float(sum(r.get("energy_j", 0.0) for r in rows)), any(estimated))


class AdvancedResult(NamedTuple):
    """The advanced search: the :class:`SearchResult` of the outer study and the best trial's forecaster."""

    search: SearchResult
    forecast: Any


def search_advanced(fit: Callable[[Any, str, dict, Callable[[int, float], None]], Any],
                    objective_for: Callable[[Any], Callable[[float], float]],
                    suggest: Callable[[Any, str], dict], forecasters: tuple[str, ...], *,
                    budget: Budget = Budget(trials=30), inner_budget: Budget = Budget(),
                    seed: int = 0, meter_factory: Callable[[], Meter] = _default_meter,
                    prior_top: int = 5, min_prior_trials: int = 3, skip_after: int = 5,
                    pruner_min_resource: int = 5, pruner_reduction_factor: int = 3,
                    startup_trials: int = 10) -> AdvancedResult:
    """AutoPQ's advanced mode: forecaster choice and hyperparameters, with a nested ``lambda_q`` search.

    Args:
      fit: ``(trial, name, hyperparameters, report) -> forecaster``; must call ``report(epoch, loss)``
        after each training epoch (the pruner reads it) and expose ``train_s``.
      objective_for: ``forecaster -> (lambda_q -> validation CRPS)``.
      suggest: ``(trial, name) -> hyperparameters`` (the search space of ``name``).
      forecasters: the candidates.
      budget: outer trials, time and kWh (pruned trials count).
      inner_budget: the nested ``lambda_q`` search's budget (it also stops on the plateau).
      seed: seeds the outer TPE (the inner searches use ``seed + trial number``).
      meter_factory: energy meters (one for the outer trials, one per inner search).
      prior_top: the log-normal prior is fitted to the ``lambda_q`` of this many best completed trials,
      min_prior_trials: once at least this many have completed (before: ``U(0.01, 3)``).
      skip_after: searches run before the inner search may be skipped (see the module docstring).
      pruner_min_resource, pruner_reduction_factor: the ``SuccessiveHalvingPruner``'s rungs (epochs).
      startup_trials: random outer trials before TPE.

    Returns:
      :class:`AdvancedResult`; the best trial's params hold ``forecaster``, its hyperparameters and
      ``lambda_q``.
    """
    optuna = _optuna()
    meter = meter_factory()
    identification_s: list[float] = []
    best: dict[str, Any] = {"value": np.inf, "forecast": None}
    estimated: list[bool] = []

    def prior_now(study) -> LogNormalPrior | None:
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(done) < min_prior_trials:
            return None
        top = sorted(done, key=lambda t: t.value)[:prior_top]
        return fit_lognormal([t.user_attrs["lambda_q"] for t in top])

    def trial_fn(trial):
        name = trial.suggest_categorical("forecaster", forecasters)
        hp = suggest(trial, name)

        def report(epoch: int, loss: float) -> None:
            trial.report(loss, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        t0 = time.perf_counter()
        meter.start()
        try:
            forecast = fit(trial, name, hp, report)
            objective = objective_for(forecast)
            prior = prior_now(trial.study)
            train_s = float(forecast.train_s)
            skip = (len(identification_s) >= skip_after
                    and train_s < float(np.mean(identification_s[-skip_after:])))
            if skip:
                lam = _suggest_lambda(trial, prior)
                value, inner_trials = float(objective(lam)), 0
            else:
                inner = search_lambda(objective, budget=inner_budget, prior=prior, seed=seed + trial.number,
                                      meter_factory=meter_factory)
                identification_s.append(inner.wall_s)
                lam, value, inner_trials = inner.best_params["lambda_q"], inner.best_value, len(inner.trials)
                trial.set_user_attr("lambda_q", lam)
                trial.set_user_attr("inner_stopped_by", inner.stopped_by)
            trial.set_user_attr("train_s", train_s)
            trial.set_user_attr("inner_trials", inner_trials)
            trial.set_user_attr("inner_skipped", bool(skip))
            trial.set_user_attr("prior", "uniform" if prior is None else f"lognormal({prior.mu:.3f}, {prior.sigma:.3f})")
            trial.set_user_attr("epochs", int(getattr(forecast, "epochs", 0)))
        finally:
            reading = meter.stop()
            trial.set_user_attr("energy_j", _energy(reading))
            trial.set_user_attr("wall_s", time.perf_counter() - t0)
            estimated.append(bool(reading.get("estimated", False)))
        if value < best["value"]:
            best.update(value=value, forecast=forecast)
        return value

    budget_stop = BudgetStop(budget)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=pruner_min_resource,
                                                      reduction_factor=pruner_reduction_factor))
    t0 = time.perf_counter()
    study.optimize(trial_fn, n_trials=budget.trials, callbacks=[budget_stop])
    wall = time.perf_counter() - t0
    rows = _trial_rows(study)
    if best["forecast"] is None:
        raise RuntimeError("the advanced search completed no trial; raise its budget")
    b = study.best_trial
    params = {**b.params, "lambda_q": b.user_attrs["lambda_q"]}
    result = SearchResult(params, float(b.value), rows, budget_stop.reason or "trials", wall,
                          float(sum(r.get("energy_j", 0.0) for r in rows)), any(estimated))
    return AdvancedResult(result, best["forecast"])
