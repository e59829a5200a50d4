"""Slow: the mediation p-values and the indirect effect's bootstrap CI on null cohorts (README, Calibration).

Three null scenarios for the indirect effect (a x b = 0), each on ``COHORTS`` seeded cohorts of ``simulate_trial``
(50 per arm, 1,000 bootstrap resamples, covariate age), through ``ctra.mediation.mediation_table``, the function
the mediation stage calls:

* ``a0_b0.5``: the arm does not move the outcome, whose change goes with the score change (b = 0.5);
* ``a0.8_b0``: the arm moves the outcome, whose change does not go with the score change;
* ``a0_b0``: neither (the complete null, where both the joint-significance test and the CI are conservative).

The direct effect is 0 throughout, so the total effect is 0 too. Rates are rejections at 5 % with exact
(Clopper-Pearson) 95 % CIs. The outcome, within/between and dose rows of contrasts.tsv are checked likewise
(``run_models``). ``python tests/test_mediation_calibration.py`` prints the tables.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta

from ctra.config import DesignSettings, MediationSettings, OutcomeSettings
from ctra.mediation import mediation_table
from ctra.models.outcomes import fit_outcomes
from ctra.simulate_outcomes import simulate_trial

COHORTS = 400
SCENARIOS = {"a0_b0.5": (0.0, 0.5), "a0.8_b0": (0.8, 0.0), "a0_b0": (0.0, 0.0)}
LEVELS = {"arm": ["control", "kind"], "time": ["pre", "post"]}
SETTINGS = MediationSettings(source="sim", covariates=("age",), outcomes=("wellbeing",), bootstrap=1000, seed=11)


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    low = beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
    high = beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    return float(low), float(high)


def run(a: float, b: float, cohorts: int = COHORTS, seed0: int = 0) -> pd.DataFrame:
    """One row per cohort: each path's p (the outcome as mediator) and whether the indirect CI covers 0."""
    rows = []
    for k in range(cohorts):
        obs, scores = simulate_trial(n_per_arm=50, a=a, b=b, direct=0.0, seed=seed0 + k)
        table = mediation_table(obs, LEVELS, scores, SETTINGS)
        forward = table[table["mediator"] == "wellbeing"].set_index("path")
        row = {f"p_{path}": forward.loc[path, "p_value"] for path in forward.index}
        row["covers_0"] = forward.loc["indirect", "ci_low"] <= 0 <= forward.loc["indirect", "ci_high"]
        rows.append(row)
    return pd.DataFrame(rows)


def summary(results: pd.DataFrame) -> dict[str, tuple[float, float, float]]:
    """Rate and CI per column: rejection at 5 % for p columns, non-coverage for the CI."""
    n = len(results)
    out = {}
    for column in results:
        k = int((~results[column]).sum()) if column == "covers_0" else int((results[column] < 0.05).sum())
        out[column] = (k / n, *clopper_pearson(k, n))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_mediation_null_calibration(scenario):
    a, b = SCENARIOS[scenario]
    rates = summary(run(a, b, seed0=1000 * list(SCENARIOS).index(scenario)))
    print(scenario, {k: tuple(round(100 * x, 1) for x in v) for k, v in rates.items()})

    def holds(column):  # the rate's CI overlaps [2.5 %, 7.5 %]
        _, low, high = rates[column]
        return low <= 0.075 and high >= 0.025

    def at_most(column):  # conservative allowed: the rate's CI reaches below 7.5 %
        return rates[column][1] <= 0.075

    for column in ("p_total", "p_direct"):
        assert holds(column), (column, rates[column])
    if a == 0:
        assert holds("p_a"), rates["p_a"]
    if b == 0:
        assert holds("p_b"), rates["p_b"]
    # the indirect effect: non-coverage of 0 and the joint-significance p at or below nominal, nominal when one
    # path is real
    assert at_most("covers_0") and at_most("p_indirect"), rates
    if (a, b) != (0.0, 0.0):
        assert holds("covers_0") and holds("p_indirect"), rates


MODEL_COHORTS = 300
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


def run_models(cohorts: int = MODEL_COHORTS, seed0: int = 5000) -> pd.DataFrame:
    """The outcome, within/between and dose rows' p on null cohorts (2 x 20 participants, 10 % of post outcomes
    missing; no arm effect on the outcome, score and outcome independent, no dose effect)."""
    usage = pd.DataFrame({"gene": [], "group": [], "direction": [], "used": []})
    rows = []
    for k in range(cohorts):
        obs, scores = simulate_trial(n_per_arm=20, a=0.0, b=0.0, direct=0.0, missing=0.1, seed=seed0 + k)
        adata = ad.AnnData(X=np.zeros((len(obs), 0)), obs=obs)
        adata.uns["levels"] = LEVELS
        table = fit_outcomes(adata, scores, usage, OUTCOME_SETTINGS)
        rows.append(
            {
                name: table.loc[(table["score"] == score) & (table["contrast"] == contrast), "p_value"].iloc[0]
                for name, (score, contrast) in MODEL_ROWS.items()
            }
        )
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_outcome_and_dose_p_values_hold_their_size():
    rates = summary(run_models())
    print({k: tuple(round(100 * x, 1) for x in v) for k, v in rates.items()})
    for column, (_, low, high) in rates.items():
        assert low <= 0.075 and high >= 0.025, (column, rates[column])


if __name__ == "__main__":
    rates = summary(run_models())
    print("models", " ".join(f"{k} {100 * r:.1f} ({100 * lo:.1f}-{100 * hi:.1f})" for k, (r, lo, hi) in rates.items()))
    for name, (a, b) in SCENARIOS.items():
        rates = summary(run(a, b, seed0=1000 * list(SCENARIOS).index(name)))
        print(name, " ".join(f"{k} {100 * r:.1f} ({100 * lo:.1f}-{100 * hi:.1f})" for k, (r, lo, hi) in rates.items()))
