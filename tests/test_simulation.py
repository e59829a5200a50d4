"""Inference on simulated cohorts with a known truth (issue: statistics you can defend).

Cohorts are simulated on the log2 scale (the normalization is tested elsewhere): 36 participants in
three arms, pre/post, 6 missing their second draw, 20 CTRA-like genes that share a strong draw-level
factor (pairwise correlation about 0.7), so a naive average of per-gene tests that treats genes as
independent is badly anti-conservative. Tolerances are binomial: with R replicates and two
arm x time tests each, a nominal 5% test must reject in [2%, 9%] of tests (about +/- 3 SE at R=250).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctra import safeguards as rb
from ctra.models import gee
from ctra.scoring import compute_scores
from ctra.models.mixed import contrast_specs, contrast_table, fit_reml
from ctra.design import build_design

LEVELS = {"arm": ["control", "a", "b"], "time": ["pre", "post"]}
N_PEOPLE, N_GENES, N_MISSING = 36, 20, 6
SD_PERSON, SD_SHARED, SD_GENE = 0.5, 0.6, 0.4  # shared = draw-level factor all genes load on


def simulate(seed: int, effect: float = 0.0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """obs, log2 expression (samples x genes) and gene directions; 'a' moves by -effect (signed)."""
    rng = np.random.default_rng(seed)
    arms = np.repeat(LEVELS["arm"], N_PEOPLE // 3)
    missing = set(rng.choice(N_PEOPLE, N_MISSING, replace=False))
    rows = [
        (f"p{i}", arms[i], t) for i in range(N_PEOPLE) for t in LEVELS["time"] if not (t == "post" and i in missing)
    ]
    obs = pd.DataFrame(rows, columns=["participant", "arm", "time"], index=[f"s{j}" for j in range(len(rows))])
    person = pd.factorize(obs["participant"])[0]
    direction = np.where(np.arange(N_GENES) < N_GENES // 2, 1.0, -1.0)
    treated = ((obs["arm"] == "a") & (obs["time"] == "post")).to_numpy(float)
    state = rng.normal(0, SD_PERSON, N_PEOPLE)[person] + rng.normal(0, SD_SHARED, len(obs)) - effect * treated
    values = np.outer(state, direction) + rng.normal(0, SD_GENE, (len(obs), N_GENES)) + 8.0
    return obs, values, direction


def interaction_p(obs: pd.DataFrame, values: np.ndarray, direction: np.ndarray) -> pd.DataFrame:
    scores = compute_scores(values, direction, np.array(["inflammatory"] * N_GENES))
    design = build_design(obs, LEVELS, [])
    table = contrast_table(fit_reml(design, scores["ctra"].to_numpy()), design, contrast_specs(design))
    return table[table["contrast"] == "arm_x_time"]


def naive_per_gene_p(obs: pd.DataFrame, values: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """The criticised approach: per-gene models, estimates averaged, SEs combined as if independent."""
    design = build_design(obs, LEVELS, [])
    specs = [s for s in contrast_specs(design) if s.contrast == "arm_x_time"]
    z = (values - values.mean(0)) / values.std(0, ddof=1) * direction
    estimates, ses = [], []
    for g in range(N_GENES):
        t = contrast_table(fit_reml(design, z[:, g]), design, specs)
        estimates.append(t["estimate"].to_numpy())
        ses.append(t["se"].to_numpy())
    mean = np.mean(estimates, axis=0)
    se = np.sqrt(np.mean(np.square(ses), axis=0) / N_GENES)
    from scipy import stats

    return 2 * stats.norm.sf(np.abs(mean / se))


@pytest.mark.slow
def test_null_rejection_rate_is_nominal_and_naive_gene_averaging_is_not():
    ours, naive = [], []
    for seed in range(250):
        obs, values, direction = simulate(seed)
        ours.extend(interaction_p(obs, values, direction)["p_value"])
        if seed < 60:
            naive.extend(naive_per_gene_p(obs, values, direction))
    rate = np.mean(np.array(ours) < 0.05)
    naive_rate = np.mean(np.array(naive) < 0.05)
    assert 0.02 <= rate <= 0.09, rate
    assert naive_rate > 0.2, naive_rate  # anti-conservative when genes are correlated


def test_null_rejection_rate_quick():
    """A quick version of the test above for the default suite (80 cohorts, 160 tests: 0-11%)."""
    p = np.concatenate([interaction_p(*simulate(1000 + seed))["p_value"].to_numpy() for seed in range(80)])
    assert np.mean(p < 0.05) <= 0.11


def test_true_effect_recovered_with_nominal_coverage():
    effect = 1.0
    # population SD of a gene (log2): person + shared + gene noise + the treated share's effect variance
    treated_share = 12 * 2 / (2 * N_PEOPLE) / 2  # about 1/6 of draws are arm a at post
    sd = np.sqrt(SD_PERSON**2 + SD_SHARED**2 + SD_GENE**2 + effect**2 * treated_share * (1 - treated_share))
    truth = -effect / sd
    covered, estimates, significant = [], [], []
    for seed in range(2000, 2120):
        row = interaction_p(*simulate(seed, effect)).set_index("arm").loc["a"]
        covered.append(row["ci_low"] <= truth <= row["ci_high"])
        estimates.append(row["estimate"])
        significant.append(row["p_value"] < 0.05)
    assert np.mean(estimates) == pytest.approx(truth, abs=0.08)  # ~3 Monte Carlo SE of the mean
    assert 0.88 <= np.mean(covered) <= 0.99
    assert np.mean(significant) > 0.5  # 12 per arm, noisy draws: power is moderate by design


@pytest.mark.slow  # 60 null cohorts, ~8 s; the slow calibration test checks every p-value column's size too
def test_gene_level_gee_and_permutation_hold_size_under_null():
    """Bias-reduced GEE (t reference) and the permutation p (null-model variance components), under H0."""
    gee_p, perm_p = [], []
    for seed in range(3000, 3060):
        obs, values, direction = simulate(seed)
        design = build_design(obs, LEVELS, [])
        y = compute_scores(values, direction, np.array(["inflammatory"] * N_GENES))["ctra"].to_numpy()
        for index, scheme in enumerate(rb.permutation_schemes(design)):
            gamma = rb.null_relative_variances(design, y, scheme)
            specs = [s for s in contrast_specs(design) if scheme.tests(s)]
            arm_codes = scheme.sample_arms(scheme.sample(seed, index, range(400)))
            null = rb.permutation_null(design, y, gamma, specs, arm_codes)
            _, t_obs = rb.gls_estimates(design, y[:, None], gamma, np.array([s.vector for s in specs]))
            perm_p.extend(rb.empirical_p(t_obs[0], null))
        gee_p.extend(_gee_p(obs, values, direction, design))
    assert np.mean(np.array(perm_p) < 0.05) <= 0.12
    assert np.mean(np.array(gee_p) < 0.05) <= 0.12


def _gee_p(obs, values, direction, design):
    import anndata as ad

    adata = ad.AnnData(X=values, obs=obs)
    adata.var_names = [f"g{j}" for j in range(N_GENES)]
    adata.layers["vst"] = values
    usage = pd.DataFrame(
        {"gene": adata.var_names, "group": "inflammatory", "direction": direction.astype(int), "used": True}
    )
    table = gee.gee_table(adata, usage, design, scores=("ctra",))
    return table.loc[table["contrast"] == "arm_x_time", "p_value"].tolist()
