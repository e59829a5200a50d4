"""Slow: the mediation p-values and the indirect effect's bootstrap CI on null cohorts (README, Calibration).

Five scenarios for the indirect effect, each on ``COHORTS`` seeded cohorts of ``simulate_trial`` (50 per arm,
``BOOTSTRAP`` resamples, covariate age), through ``ctra.mediation.mediation_table``, the function the mediation
stage calls, in both orderings (the outcome as mediator, and the reverse: the score as mediator) and both
variants (``change_score``, ``baseline_adjusted``):

* ``a0_b0.5``: the arm does not move the outcome, whose change goes with the score change (b = 0.5);
* ``a0.8_b0``: the arm moves the outcome, whose change does not go with the score change;
* ``a0_b0``: neither (the complete null, where both the joint-significance test and the CI are conservative);
* ``rtm``: as ``a0.8_b0``, but the score change depends on the baseline outcome (``baseline_slope`` 0.3):
  regression to the mean biases the change-score b, the baseline-adjusted variant is the remedy;
* ``shared``: as ``a0.8_b0``, but score and outcome share a draw-level state (``shared_sd`` 0.5, the same visit):
  a within-person association with no effect of either on the other (a time-varying confounder).

The direct effect is 0 throughout. Which paths are 0 follows from the simulation's truth (``null_paths``). Rates
are rejections at 5 % with exact (Clopper-Pearson) 95 % CIs. The outcome, within/between and dose rows of
contrasts.tsv are checked likewise (``run_models``), on the trivial null and with the arm moving both the outcome
and the score while the within-person slope is 0. ``python tests/test_mediation_calibration.py`` prints the
tables.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta

from ctra.config import DesignSettings, MediationSettings, OutcomeSettings
from ctra.mediation import PATHS, VARIANTS, mediation_table
from ctra.models.outcomes import fit_outcomes
from ctra.simulate_outcomes import simulate_trial

COHORTS = 300
BOOTSTRAP = 500
WORKERS = min(2, os.cpu_count() or 1)  # cohorts in parallel (each cohort seeded: the same rows in any order)
SCENARIOS = {
    "a0_b0.5": {"a": 0.0, "b": 0.5},
    "a0.8_b0": {"a": 0.8, "b": 0.0},
    "a0_b0": {"a": 0.0, "b": 0.0},
    "rtm": {"a": 0.8, "b": 0.0, "baseline_slope": 0.3},
    "shared": {"a": 0.8, "b": 0.0, "shared_sd": 0.5},
}
ORDERINGS = {"wellbeing": "forward", "ctra": "reverse"}  # mediator -> ordering
LEVELS = {"arm": ["control", "kind"], "time": ["pre", "post"]}
SETTINGS = MediationSettings(source="sim", covariates=("age",), outcomes=("wellbeing",), bootstrap=BOOTSTRAP, seed=11)


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    low = beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
    high = beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    return float(low), float(high)


def null_paths(a: float, b: float, ordering: str) -> set[str]:
    """The paths that are 0 in ``simulate_trial``'s truth (direct = 0, no baseline or shared term): forward, the
    arm moves the outcome change by a and the score change by a x b; reverse, the score change is the mediator
    (its arm effect a x b), the outcome change the response (its arm effect a, all of it direct when b = 0)."""
    if ordering == "forward":
        effects = {"a": a, "b": b, "indirect": a * b, "direct": 0.0, "total": a * b}
    else:
        effects = {"a": a * b, "b": b, "indirect": a * b * b, "direct": a if b == 0 else 0.0, "total": a}
    return {path for path, value in effects.items() if value == 0}


def seed0(scenario: str) -> int:
    return 1000 * list(SCENARIOS).index(scenario)


def cohorts_in_parallel(one, scenario: str, cohorts: int) -> pd.DataFrame:
    with ProcessPoolExecutor(WORKERS) as pool:
        return pd.DataFrame(list(pool.map(partial(one, scenario), range(cohorts), chunksize=10)))


def mediation_cohort(scenario: str, k: int) -> dict:
    """Cohort k: ``{ordering}_{variant}_p_{path}`` and ``..._covers_0`` (the indirect CI covers 0)."""
    obs, scores = simulate_trial(n_per_arm=50, direct=0.0, seed=seed0(scenario) + k, **SCENARIOS[scenario])
    table = mediation_table(obs, LEVELS, scores, SETTINGS)
    row = {}
    for (mediator, variant), part in table.groupby(["mediator", "variant"]):
        paths = part.set_index("path")
        key = f"{ORDERINGS[mediator]}_{variant}"
        row.update({f"{key}_p_{path}": paths.loc[path, "p_value"] for path in PATHS})
        row[f"{key}_covers_0"] = paths.loc["indirect", "ci_low"] <= 0 <= paths.loc["indirect", "ci_high"]
    return row


def run(scenario: str, cohorts: int = COHORTS) -> pd.DataFrame:
    """One row per cohort (``mediation_cohort``)."""
    return cohorts_in_parallel(mediation_cohort, scenario, cohorts)


def summary(results: pd.DataFrame) -> dict[str, tuple[float, float, float]]:
    """Rate and CI per column: rejection at 5 % for p columns, non-coverage for the CI."""
    n = len(results)
    out = {}
    for column in results:
        k = int((~results[column]).sum()) if column.endswith("covers_0") else int((results[column] < 0.05).sum())
        out[column] = (k / n, *clopper_pearson(k, n))
    return out


def holds(rate) -> bool:  # the rate's CI overlaps [2.5 %, 7.5 %]
    return rate[1] <= 0.075 and rate[2] >= 0.025


def at_most(rate) -> bool:  # conservative allowed: the rate's CI reaches below 7.5 %
    return rate[1] <= 0.075


def above(rate) -> bool:  # inflated: the rate's CI lies above 7.5 %
    return rate[1] > 0.075


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_mediation_null_calibration(scenario):
    rates = summary(run(scenario))
    print(scenario, {k: tuple(round(100 * x, 1) for x in v) for k, v in rates.items()})
    a, b = SCENARIOS[scenario]["a"], SCENARIOS[scenario]["b"]
    pure = scenario in ("a0_b0.5", "a0.8_b0", "a0_b0")
    for ordering in ORDERINGS.values():
        null = null_paths(a, b, ordering)
        for variant in VARIANTS:
            key = f"{ordering}_{variant}"
            if not pure and variant == "change_score":
                continue  # the departures' change-score rows: below
            if not pure and scenario == "shared":
                continue  # no variant removes a shared state: below
            for path in null - {"indirect"}:
                assert holds(rates[f"{key}_p_{path}"]), (key, path, rates[f"{key}_p_{path}"])
            if "indirect" in null:
                # non-coverage of 0 and the joint-significance p at or below nominal, nominal when one path is real
                for column in (f"{key}_covers_0", f"{key}_p_indirect"):
                    assert at_most(rates[column]), (column, rates[column])
                    if {"a", "b"} - null:
                        assert holds(rates[column]), (column, rates[column])
    if scenario == "rtm":  # regression to the mean: the change-score b (forward) is biased, and so the indirect
        assert above(rates["forward_change_score_p_b"]) and above(rates["forward_change_score_covers_0"]), rates
    if scenario == "shared":  # the arm's effects are unbiased, the b path is not, in either variant
        for variant in VARIANTS:
            assert holds(rates[f"forward_{variant}_p_total"]) and holds(rates[f"reverse_{variant}_p_a"]), rates
            assert above(rates[f"forward_{variant}_p_b"]), rates


MODEL_COHORTS = 300
MODEL_SCENARIOS = {
    "null": {"a": 0.0, "direct": 0.0},  # no arm effect on the outcome or the score
    "arm_moves_both": {"a": 0.8, "direct": 0.5},  # the arm moves both, the within-person slope is 0
}
OUTCOME_SETTINGS = OutcomeSettings(
    design=DesignSettings(source="sim", covariates=("age",), adjust_for_cell_markers="auto"),
    outcomes=("wellbeing",),
    dose="acts",
)
MODEL_ROWS = {
    "outcome arm_x_time": ("wellbeing", "arm_x_time"),
    "within_person": ("ctra", "within_person"),
    "between_person": ("ctra", "between_person"),
    "dose_x_time": ("ctra", "dose_x_time"),
}


def model_cohort(scenario: str, k: int) -> dict:
    """Cohort k: the outcome, within/between and dose rows' p (2 x 20 participants, 10 % of post outcomes
    missing; score and outcome changes independent (b = 0), no dose effect)."""
    usage = pd.DataFrame({"gene": [], "group": [], "direction": [], "used": []})
    start = 5000 + 1000 * list(MODEL_SCENARIOS).index(scenario)
    obs, scores = simulate_trial(n_per_arm=20, b=0.0, missing=0.1, seed=start + k, **MODEL_SCENARIOS[scenario])
    adata = ad.AnnData(X=np.zeros((len(obs), 0)), obs=obs)
    adata.uns["levels"] = LEVELS
    table = fit_outcomes(adata, scores, usage, OUTCOME_SETTINGS)
    return {
        name: table.loc[(table["score"] == score) & (table["contrast"] == contrast), "p_value"].iloc[0]
        for name, (score, contrast) in MODEL_ROWS.items()
    }


def run_models(scenario: str, cohorts: int = MODEL_COHORTS) -> pd.DataFrame:
    """One row per cohort (``model_cohort``)."""
    return cohorts_in_parallel(model_cohort, scenario, cohorts)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(MODEL_SCENARIOS))
def test_outcome_and_dose_p_values_hold_their_size(scenario):
    rates = summary(run_models(scenario))
    print(scenario, {k: tuple(round(100 * x, 1) for x in v) for k, v in rates.items()})
    for column, rate in rates.items():
        if column == "outcome arm_x_time" and MODEL_SCENARIOS[scenario]["a"] != 0:
            assert above(rate), rate  # power
        else:
            assert holds(rate), (column, rate)


def _line(name: str, rates: dict) -> str:
    return (
        name + " " + " ".join(f"{k} {100 * r:.1f} ({100 * lo:.1f}-{100 * hi:.1f})" for k, (r, lo, hi) in rates.items())
    )


if __name__ == "__main__":
    for name in MODEL_SCENARIOS:
        print(_line(f"models {name}", summary(run_models(name))), flush=True)
    for name in SCENARIOS:
        print(_line(name, summary(run(name))), flush=True)
