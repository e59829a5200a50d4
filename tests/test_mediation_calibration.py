"""Slow: the mediation p-values and the indirect effect's bootstrap CI on null cohorts (README, Calibration).

Three null scenarios for the indirect effect (a x b = 0), each on ``COHORTS`` seeded cohorts of ``simulate_trial``
(50 per arm, 1,000 bootstrap resamples, covariate age), through ``ctra.mediation.mediation_table``, the function
the mediation stage calls:

* ``a0_b0.5``: the arm does not move the outcome, whose change goes with the score change (b = 0.5);
* ``a0.8_b0``: the arm moves the outcome, whose change does not go with the score change;
* ``a0_b0``: neither (the complete null, where both the joint-significance test and the CI are conservative).

The direct effect is 0 throughout, so the total effect is 0 too. Rates are rejections at 5 % with exact
(Clopper-Pearson) 95 % CIs. ``python tests/test_mediation_calibration.py`` prints the table.
"""

from __future__ import annotations

import pandas as pd
import pytest
from scipy.stats import beta

from ctra.config import MediationSettings
from ctra.mediation import mediation_table
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


if __name__ == "__main__":
    for name, (a, b) in SCENARIOS.items():
        rates = summary(run(a, b, seed0=1000 * list(SCENARIOS).index(name)))
        print(name, " ".join(f"{k} {100 * r:.1f} ({100 * lo:.1f}-{100 * hi:.1f})" for k, (r, lo, hi) in rates.items()))
