"""The safeguards' machinery against direct dense computations and its invariances."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctra import safeguards as rb
from ctra.models import gee
from ctra.config import NullSettings
from ctra.scoring import gene_summaries
from ctra.models.mixed import BlockStructure, contrast_specs, fit_reml
from ctra.design import build_design

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
                rows.append(
                    {
                        "participant": f"p{i:02d}",
                        "arm": arm if not period else (arm if i % 2 else arms[1 - p]),
                        "time": t,
                        "period": str(p + 1),
                        "y": rng.normal() + (i % 5) * 0.3,
                    }
                )
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


def test_parallel_scheme_moves_only_the_tested_arm_and_control_and_is_chunk_invariant():
    obs = cohort(n=18)
    obs.loc[obs["participant"].str[1:].astype(int) % 3 == 2, "arm"] = "b"
    design = build_design(obs, {"arm": ["control", "a", "b"], "time": ["pre", "post"]}, [])
    schemes = rb.permutation_schemes(design)
    assert [s.arm for s in schemes] == ["a", "b"]
    scheme = schemes[0]
    whole = scheme.sample_arms(scheme.sample(seed=7, scheme_index=0, draws=range(10)))
    split = np.vstack(
        [scheme.sample_arms(scheme.sample(7, 0, range(0, 4))), scheme.sample_arms(scheme.sample(7, 0, range(4, 10)))]
    )
    assert np.array_equal(whole, split)
    observed = pd.Index(design.arms).get_indexer(design.arm_of_sample)
    b = observed == 2
    for draw in whole:
        assert np.array_equal(draw[b], observed[b])  # arm b's participants never move
        per_person = pd.Series(draw).groupby(design.participant)
        assert (per_person.nunique() == 1).all()  # a participant's draws move together
        assert sorted(per_person.first()) == sorted(pd.Series(observed).groupby(design.participant).first())
    assert len({tuple(d) for d in whole}) > 5


def test_exact_enumeration_lists_every_distinct_allocation_once():
    obs = cohort(n=10)  # 5 control, 5 'a' participants: C(10, 5) = 252 allocations
    design = build_design(obs, LEVELS, [])
    (scheme,) = rb.permutation_schemes(design)
    assert scheme.n_allocations == 252
    allocations = scheme.enumerate(range(252))
    assert len({tuple(a) for a in allocations}) == 252
    assert (np.bincount(allocations.ravel()) == 5 * 252).all()  # five of each label in every one
    assert any(np.array_equal(a, scheme.labels) for a in allocations)  # the observed allocation is one
    assert np.array_equal(scheme.enumerate(range(100, 130)), allocations[100:130])


def test_crossover_scheme_moves_whole_sequences_within_attendance_strata():
    obs = cohort(n=12, period=True)
    obs = obs[~((obs["participant"] == "p05") & (obs["period"] == "2"))]  # p05 attended period 1 only
    design = build_design(obs, LEVELS, [])
    (scheme,) = rb.permutation_schemes(design)
    assert scheme.arm is None
    observed = pd.Index(design.arms).get_indexer(design.arm_of_sample)

    def sequences(codes):
        frame = pd.DataFrame({"p": design.participant, "period": design.period_of_sample, "arm": codes})
        return frame.drop_duplicates(["p", "period"]).pivot(index="p", columns="period", values="arm")

    before = sequences(observed)
    allowed = {tuple(r) for r in before.fillna(-1).to_numpy()}
    lonely = design.participant[obs["participant"].to_numpy() == "p05"][0]
    for draw in scheme.sample_arms(scheme.sample(3, 0, range(30))):
        after = sequences(draw)
        assert {tuple(r) for r in after.fillna(-1).to_numpy()} <= allowed  # only sequences the design has
        assert sorted(map(tuple, after.fillna(-1).to_numpy())) == sorted(map(tuple, before.fillna(-1).to_numpy()))
        assert after.loc[lonely, "1"] == before.loc[lonely, "1"]  # alone in its stratum
        both = after.dropna()
        assert (both["1"] != both["2"]).all()  # never the same arm twice


def test_empirical_p_counts_ties_and_adds_one():
    null = np.array([[1.0], [-2.0], [3.0], [np.nan]])
    assert rb.empirical_p(np.array([2.0]), null)[0] == pytest.approx((1 + 2) / (1 + 3))
    assert rb.empirical_p(np.array([2.0]), null, exact=True)[0] == pytest.approx(2 / 3)


def test_exact_permutation_p_includes_the_observed_allocation_and_uses_null_model_variances():
    obs = cohort(n=10)
    design = build_design(obs, LEVELS, [])
    scores = pd.DataFrame({"ctra": obs["y"].to_numpy()}, index=obs.index)
    frames = rb.permutation_draws(design, scores, permutations=300, seed=1, chunk=0, n_chunks=1)
    table = pd.concat(frames)
    null = table[table["kind"] == "permutation_exact"]
    observed = table.loc[table["kind"] == "permutation_observed", "value"].to_numpy()
    assert len(null) == 252 and len(observed) == 1
    assert np.isclose(null["value"], observed[0], rtol=1e-9).sum() >= 1  # the identity allocation
    (scheme,) = rb.permutation_schemes(design)
    gamma = rb.null_relative_variances(design, obs["y"].to_numpy(), scheme)
    null_fit = fit_reml(
        build_design(obs.assign(arm="control"), {"arm": ["control"], "time": LEVELS["time"]}, []), obs["y"].to_numpy()
    )
    assert np.allclose(gamma, null_fit.component_variances / null_fit.sigma2)  # arm terms dropped
    spec = [s for s in contrast_specs(design) if s.contrast == "arm_x_time"]
    _, t = rb.gls_estimates(design, obs["y"].to_numpy()[:, None], gamma, np.array([s.vector for s in spec]))
    assert np.isclose(observed[0], t[0, 0])
    few = pd.concat(rb.permutation_draws(design, scores, permutations=100, seed=1, chunk=0, n_chunks=1))
    assert set(few["kind"]) == {"permutation", "permutation_observed"}  # 252 > 100: Monte Carlo


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
    var = pd.DataFrame(
        {"group": [""] * n_genes, "input_ids": [f"g{j}" for j in range(n_genes)]},
        index=[f"g{j}" for j in range(n_genes)],
    )
    var.iloc[:10, 0] = "inflammatory"
    adata = ad.AnnData(obs=obs, var=var, layers={"vst": vst})
    adata.var[["expressed", "vst_mean", "vst_var"]] = gene_summaries(adata)
    adata.uns["levels"] = LEVELS
    usage = pd.DataFrame({"gene": var.index[:10], "group": "inflammatory", "direction": 1, "used": True})
    scores = pd.DataFrame(
        {
            "ctra": vst[:, :10].mean(axis=1),
            "inflammatory": vst[:, :10].mean(axis=1),
            "antiviral": np.nan,
            "antibody": np.nan,
        },
        index=obs.index,
    )
    study = {
        "samples": "samples.tsv",
        "design": "trial",
        "standardize_predictors": False,
        "covariates": [],
        "adjust_for_cell_markers": False,
        "score_method": "mean_z",
        "expression_filter": {"min_count": 1, "min_fraction": 0.5},
        "robustness": {"permutations": 30, "gene_sets": 20, "seed": 11, "chunks": 1},
    }
    settings = NullSettings.from_study(study)
    one = rb.null_draws(adata, scores, usage, settings, 0, 1)
    split = pd.concat([rb.null_draws(adata, scores, usage, settings, k, 3) for k in range(3)])
    assert set(one["kind"]) == {"permutation", "permutation_observed", "gene_set"}
    key = ["kind", "score", "contrast", "arm", "time", "draw"]
    pd.testing.assert_frame_equal(
        one.sort_values(key).reset_index(drop=True), split.sort_values(key).reset_index(drop=True)
    )
    assert one["draw"].max() == 29


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
    scheme = rb.permutation_schemes(design)[0]
    arm_codes = scheme.sample_arms(scheme.sample(seed=4, scheme_index=0, draws=range(12)))
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
    X[1, :, 3] = X[1, :, 0] + X[1, :, 1]  # exactly collinear
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


@pytest.mark.parametrize("crossover", [False, True])
def test_batched_reml_equals_one_fit_per_response(crossover):
    """fit_reml_batch (vectorized golden section / projected Newton) against fit_reml per response,
    including a response with no participant variance (the boundary)."""
    from ctra.models.mixed import fit_reml_batch

    obs = cohort(seed=4, n=24, period=crossover)
    design = build_design(obs, LEVELS, [])
    rng = np.random.default_rng(9)
    person, unit = design.participant, design.components[-1]
    Y = rng.normal(size=(len(obs), 12)) + rng.normal(size=(person.max() + 1, 12))[person] * np.linspace(0, 2, 12)
    if crossover:
        Y += rng.normal(size=(unit.max() + 1, 12))[unit] * np.linspace(1, 0, 12)
    beta, cov = fit_reml_batch(design, Y)
    for j in range(Y.shape[1]):
        fit = fit_reml(design, Y[:, j])
        np.testing.assert_allclose(beta[j], fit.beta, atol=1e-6)
        np.testing.assert_allclose(cov[j], fit.cov_beta, atol=1e-6 * np.abs(fit.cov_beta).max())


def test_random_gene_set_t_of_the_real_set_is_the_main_model_t():
    """A 'random' set that is the real set gets exactly the main model's t: same scoring function,
    its own REML fit."""
    from ctra.scoring import compute_scores
    from ctra.models.mixed import contrast_table

    obs = cohort(n=20)
    rng = np.random.default_rng(1)
    vst = rng.normal(8, 1, (len(obs), 6)) + obs["y"].to_numpy()[:, None]
    used = pd.DataFrame(
        {
            "gene": [f"g{j}" for j in range(6)],
            "group": ["inflammatory"] * 3 + ["antiviral"] * 3,
            "direction": [1, 1, 1, -1, -1, -1],
        }
    )
    adata = __import__("anndata").AnnData(obs=obs, layers={"vst": vst}, var=pd.DataFrame(index=used["gene"].to_list()))
    random = rb.random_set_scores(adata, np.array([np.arange(6)]), used)
    real = compute_scores(vst, used["direction"].to_numpy(float), used["group"].to_numpy())
    design = build_design(obs, LEVELS, [])
    specs = contrast_specs(design)
    L = np.array([s.vector for s in specs])
    for score in ("ctra", "inflammatory", "antiviral"):
        np.testing.assert_allclose(random[score][:, 0], real[score])
        table = contrast_table(fit_reml(design, real[score].to_numpy()), design, specs)
        np.testing.assert_allclose(rb.reml_t(design, random[score], L)[0], table["estimate"] / table["se"], rtol=1e-6)


def test_gene_set_null_says_why_without_a_pool():
    var = pd.DataFrame(
        {"group": ["inflammatory"] * 4 + [""] * 5, "expressed": True, "vst_mean": np.arange(9.0)},
        index=[f"g{j}" for j in range(9)],
    )
    usage = pd.DataFrame({"gene": var.index[:4], "group": "inflammatory", "direction": 1, "used": True})
    picks, _, reason = rb.gene_set_draws(var, usage, seed=1, draws=range(5))
    assert picks is None and "5 expressed genes outside the set" in reason


def test_gee_rows_below_the_minimum_are_empty_and_say_why():
    import anndata as ad

    obs = cohort(n=8)
    rng = np.random.default_rng(0)
    vst = rng.normal(size=(len(obs), 5)) + obs["y"].to_numpy()[:, None]
    adata = ad.AnnData(obs=obs, layers={"vst": vst}, var=pd.DataFrame(index=[f"g{j}" for j in range(5)]))
    usage = pd.DataFrame({"gene": adata.var_names, "group": "inflammatory", "direction": 1, "used": True})
    design = build_design(obs, LEVELS, [])
    table = gee.gee_table(adata, usage, design, scores=("ctra",))
    assert table[["estimate", "se", "df", "p_value"]].isna().all().all()
    assert table["note"].str.contains("8 participants, fewer than 10").all()
    bigger = cohort(n=24)
    vst = rng.normal(size=(len(bigger), 5)) + bigger["y"].to_numpy()[:, None]
    adata = ad.AnnData(obs=bigger, layers={"vst": vst}, var=pd.DataFrame(index=[f"g{j}" for j in range(5)]))
    design = build_design(bigger, LEVELS, [])
    table = gee.gee_table(adata, usage, design, scores=("ctra",))
    assert (table["df"] == 24 - design.X.shape[1]).all() and (table["note"] == "").all()
    result, names = gee.fit_gene_gee(adata, usage, design, "ctra")
    j = names.index("arm[T.a]:time[T.post]")
    row = table[(table["contrast"] == "arm_x_time")].iloc[0]
    assert row["se"] == pytest.approx(np.sqrt(result.cov_robust_bc[j, j]))
    assert row["se"] > np.sqrt(result.cov_robust[j, j])  # the correction inflates the plain sandwich


def test_gene_set_null_fits_each_random_set_with_its_own_variance_components():
    """Each random set's t equals a separate REML fit (fit_reml) of that set's score."""
    import anndata as ad
    from ctra.models.mixed import contrast_table

    rng = np.random.default_rng(8)
    obs = cohort(n=20)
    person = pd.factorize(obs["participant"])[0]
    n_genes = 120
    # genes differ in how person-stable they are, so a shared variance component would be wrong
    vst = 8 + rng.normal(size=(len(obs), n_genes)) + rng.normal(size=(20, n_genes))[person] * np.linspace(0, 3, n_genes)
    var = pd.DataFrame({"group": [""] * n_genes}, index=[f"g{j}" for j in range(n_genes)])
    var.iloc[:6, 0] = "inflammatory"
    adata = ad.AnnData(obs=obs, var=var, layers={"vst": vst})
    adata.var[["expressed", "vst_mean", "vst_var"]] = gene_summaries(adata)
    usage = pd.DataFrame({"gene": var.index[:6], "group": "inflammatory", "direction": 1, "used": True})
    design = build_design(obs, LEVELS, [])
    scores = pd.DataFrame({"ctra": vst[:, :6].mean(axis=1)}, index=obs.index)
    frames, reason = rb.gene_set_null(adata, usage, design, scores, gene_sets=8, seed=2, chunk=0, n_chunks=1)
    assert reason == ""
    t = frames[0].pivot(index="draw", columns=["contrast", "arm", "time"], values="value")
    picks, used, _ = rb.gene_set_draws(adata.var, usage, 2, range(8))
    specs = contrast_specs(design)
    for draw, genes in enumerate(picks):
        z = (vst[:, genes] - vst[:, genes].mean(0)) / vst[:, genes].std(0, ddof=1)
        table = contrast_table(fit_reml(design, z.mean(axis=1)), design, specs)
        expected = (table["estimate"] / table["se"]).to_numpy()
        got = np.array([t.loc[draw, (s.contrast, s.arm, s.time)] for s in specs])
        np.testing.assert_allclose(got, expected, rtol=1e-5)
