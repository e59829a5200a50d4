"""The safeguards' machinery against direct dense computations and its invariances."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctra import robustness as rb
from ctra.scoring import gene_summaries
from ctra.stats import BlockStructure, build_design, contrast_specs, fit_reml

LEVELS = {"arm": ["control", "a"], "time": ["pre", "post"]}


def cohort(seed: int = 0, n: int = 16, period: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        arms = ["control", "a"] if period else [LEVELS["arm"][i % 2]] * 2
        for p, arm in enumerate(arms if period else arms[:1]):
            for t in LEVELS["time"]:
                if t == "post" and i == 3:
                    continue
                rows.append({"participant": f"p{i:02d}", "arm": arm if not period else (arm if i % 2 else arms[1 - p]),
                             "time": t, "period": str(p + 1), "y": rng.normal() + (i % 5) * 0.3})
    obs = pd.DataFrame(rows)
    obs.index = [f"s{j}" for j in range(len(obs))]
    return obs if period else obs.drop(columns="period")


def dense_v(design, gamma) -> np.ndarray:
    n = len(design.X)
    V = np.eye(n)
    for g, codes in zip(gamma, design.components):
        V += g * (codes[:, None] == codes[None, :])
    return V


def test_whitener_reproduces_dense_gls_crossproducts():
    obs = cohort(period=True)
    design = build_design(obs, LEVELS, [])
    gamma = np.array([0.7, 0.3])
    white = rb.Whitener(BlockStructure(design), gamma).apply(design.X)
    dense = design.X.T @ np.linalg.solve(dense_v(design, gamma), design.X)
    assert np.allclose(white.T @ white, dense)


def test_leave_one_out_equals_dense_refit_without_that_participant():
    obs = cohort()
    design = build_design(obs, LEVELS, [])
    y = obs["y"].to_numpy()
    gamma = np.array([0.5])
    L = np.array([s.vector for s in contrast_specs(design)])
    loo = rb.leave_one_out(design, y, gamma, L)
    keep = design.participant != 5
    V = dense_v(design, gamma)[np.ix_(keep, keep)]
    X = design.X[keep]
    beta = np.linalg.solve(X.T @ np.linalg.solve(V, X), X.T @ np.linalg.solve(V, y[keep]))
    assert np.allclose(loo[5], L @ beta)


def test_permutations_move_whole_participants_and_are_chunk_invariant():
    obs = cohort()
    design = build_design(obs, LEVELS, [])
    whole = rb.permuted_arms(design, seed=7, draws=range(10))
    split = np.vstack([rb.permuted_arms(design, 7, range(0, 4)), rb.permuted_arms(design, 7, range(4, 10))])
    assert np.array_equal(whole, split)
    original = pd.Series(pd.Index(design.arms).get_indexer(design.arm_of_sample)).groupby(design.participant).first()
    for draw in whole:
        per_person = pd.Series(draw).groupby(design.participant)
        assert (per_person.nunique() == 1).all()          # a participant's draws move together
        assert sorted(per_person.first()) == sorted(original)  # participants per arm unchanged
    assert len({tuple(d) for d in whole}) > 5


def test_crossover_permutations_stay_within_period():
    obs = cohort(period=True)
    design = build_design(obs, LEVELS, [])
    draws = rb.permuted_arms(design, seed=1, draws=range(20))
    original = pd.Index(design.arms).get_indexer(design.arm_of_sample)
    for draw in draws:
        for period in ("1", "2"):
            in_period = design.period_of_sample == period
            units = pd.Series(draw[in_period]).groupby(design.components[1][in_period]).first()
            before = pd.Series(original[in_period]).groupby(design.components[1][in_period]).first()
            assert sorted(units) == sorted(before)  # same arm counts within the period


def test_empirical_p_counts_ties_and_adds_one():
    null = np.array([[1.0], [-2.0], [3.0], [np.nan]])
    assert rb.empirical_p(np.array([2.0]), null)[0] == pytest.approx((1 + 2) / (1 + 3))


def test_gls_t_with_reml_variances_matches_the_reml_fit():
    obs = cohort()
    design = build_design(obs, LEVELS, [])
    y = obs["y"].to_numpy()
    fit = fit_reml(design, y)
    gamma = fit.component_variances / fit.sigma2
    L = np.array([s.vector for s in contrast_specs(design)])
    estimate, t = rb.gls_estimates(design, y[:, None], gamma, L)
    se = np.sqrt(np.einsum("cp,pq,cq->c", L, fit.cov_beta, L))
    assert np.allclose(estimate[0], L @ fit.beta)
    assert np.allclose(t[0], (L @ fit.beta) / se)


def test_null_draws_gathered_from_chunks_equal_one_chunk():
    """Cluster jobs split the draws; gathering the chunks in order must give the one-job table."""
    import anndata as ad

    rng = np.random.default_rng(3)
    obs = cohort(n=20)
    n_genes = 300
    vst = rng.normal(8, 1, (len(obs), n_genes))
    var = pd.DataFrame({"group": [""] * n_genes, "input_ids": [f"g{j}" for j in range(n_genes)]},
                       index=[f"g{j}" for j in range(n_genes)])
    var.iloc[:10, 0] = "inflammatory"
    adata = ad.AnnData(obs=obs, var=var, layers={"vst": vst})
    adata.var[["expressed", "vst_mean", "vst_var"]] = gene_summaries(adata)
    adata.uns["levels"] = LEVELS
    usage = pd.DataFrame({"gene": var.index[:10], "group": "inflammatory", "direction": 1, "used": True})
    scores = pd.DataFrame({"ctra": vst[:, :10].mean(axis=1), "inflammatory": vst[:, :10].mean(axis=1),
                           "antiviral": np.nan, "antibody": np.nan}, index=obs.index)
    study = {"samples": "samples.tsv", "covariates": [], "adjust_for_cell_markers": False,
             "expression_filter": {"min_count": 1, "min_fraction": 0.5},
             "robustness": {"permutations": 30, "gene_sets": 20, "seed": 11}}
    one = rb.null_draws(adata, scores, usage, study, 0, 1)
    split = pd.concat([rb.null_draws(adata, scores, usage, study, k, 3) for k in range(3)])
    key = ["kind", "score", "contrast", "arm", "time", "draw"]
    pd.testing.assert_frame_equal(one.sort_values(key).reset_index(drop=True),
                                  split.sort_values(key).reset_index(drop=True))
    assert set(one["kind"]) == {"permutation", "gene_set"} and one["draw"].max() == 29


@pytest.mark.parametrize("crossover", [False, True])
def test_permutation_t_equals_dense_gls_refit_of_each_permuted_design(crossover):
    """Each draw's t is that of a full GLS refit on a sample sheet with the arms relabelled."""
    obs = cohort(n=18, period=crossover)
    obs["age"] = np.random.default_rng(5).normal(50, 10, len(obs))
    levels = {"arm": ["control", "a", "b"], "time": ["pre", "post"]} if not crossover else LEVELS
    if not crossover:  # three arms: every third participant to arm b
        obs.loc[obs["participant"].str[1:].astype(int) % 3 == 2, "arm"] = "b"
    design = build_design(obs, levels, ["age"])
    y = obs["y"].to_numpy()
    gamma = np.array([0.6, 0.2]) if crossover else np.array([0.6])
    specs = [s for s in contrast_specs(design) if s.contrast == "arm_x_time"]
    arm_codes = rb.permuted_arms(design, seed=4, draws=range(12))
    t = rb.permutation_null(design, y, gamma, specs, arm_codes)

    V = dense_v(design, gamma)
    L = np.array([s.vector for s in specs])
    for draw, codes in enumerate(arm_codes):
        relabelled = obs.assign(arm=np.asarray(design.arms)[codes])
        X = build_design(relabelled, levels, ["age"]).X
        xtx = X.T @ np.linalg.solve(V, X)
        beta = np.linalg.solve(xtx, X.T @ np.linalg.solve(V, y))
        resid = y - X @ beta
        sigma2 = resid @ np.linalg.solve(V, resid) / (len(y) - X.shape[1])
        se = np.sqrt(sigma2 * np.einsum("cp,pq,cq->c", L, np.linalg.inv(xtx), L))
        np.testing.assert_allclose(t[draw], L @ beta / se, rtol=1e-8)
    assert np.unique(np.round(t[:, 0], 8)).size > 6  # the draws differ


def test_batched_solve_flags_singular_and_near_singular_items():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(3, 30, 4))
    X[1, :, 3] = X[1, :, 0] + X[1, :, 1]                  # exactly collinear
    X[2, :, 3] = X[2, :, 0] + 1e-9 * rng.normal(size=30)  # collinear up to rounding noise
    xtx = np.einsum("bnp,bnq->bpq", X, X)
    xty = np.einsum("bnp,bn->bp", X, rng.normal(size=(3, 30)))
    beta, _, ok = rb._solve_batched(xtx, xty)
    assert ok.tolist() == [True, False, False]
    assert np.allclose(beta[0], np.linalg.solve(xtx[0], xty[0])) and np.isnan(beta[1:]).all()
    # without a numerically singular item the batched inverse succeeds and the condition bound decides:
    # a column equal to another up to 1e-7 (2-norm condition ~5e14) is refused, the sound design kept
    X[2, :, 3] = X[2, :, 0] + 1e-7 * rng.normal(size=30)
    xtx = np.einsum("bnp,bnq->bpq", X, X)
    assert rb._solve_batched(xtx[[0, 2]], xty[[0, 2]])[2].tolist() == [True, False]
