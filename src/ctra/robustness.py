"""The CTRA safeguards: checks a reviewer of a CTRA paper will ask for, computed for every study.

* ``gee_genes``: the gene-level multivariate model of the Cole lab, in long format over the used
  genes, ``z ~ gene + arm * time + covariates [+ markers]``, GEE with exchangeable correlation within
  participant and robust (sandwich) standard errors (statsmodels).
* permutation test: arm labels shuffled between participants (whole participants move; within
  period for crossover designs); the statistic is the contrast's t from the GLS fit with the
  observed variance components, so every permutation is one batched least-squares solve.
* random-gene-set null: gene sets of the same group sizes, each gene replaced by a random expressed
  gene of the same mean-expression decile, scored exactly like the real set; where the observed
  contrast's t falls among theirs answers "would any 53 genes do?" (t rather than the estimate, so
  that sets of less correlated genes, whose scores vary less, are compared on the same footing).
* leave-one-participant-out: the largest change of each estimate when one participant is dropped,
  by downdating the GLS normal equations (variance components held at the full-data values).
* sensitivity: every contrast without covariates, without markers, and without both.

Random draws use one generator per draw, seeded by ``(seed, stream, draw)``, so results do not
depend on how the draws are split into chunks (cluster jobs) and are identical on rerun.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.special import ndtr, ndtri  # normal cdf and quantile

from .scoring import zscore
from .stats import (SCORES, BlockStructure, ContrastSpec, Design, arm_column, contrast_specs, fit_scores,
                    interaction_column, relative_variances, study_design)

PERMUTATION_STREAM, GENE_SET_STREAM = 0, 1
BATCH = 250
MAX_CONDITION = 1e12  # a design this ill-conditioned is treated as singular


# ----------------------------------------------------------------------------------------------
# GLS with fixed variance components: whitening by participant block
# ----------------------------------------------------------------------------------------------

class Whitener:
    """Applies H^-1/2 (inverse Cholesky factor per participant block) for fixed relative variances."""

    def __init__(self, structure: BlockStructure, gamma: np.ndarray):
        self.parts = []
        for index, same in structure.groups:
            size = index.shape[1]
            H = np.broadcast_to(np.eye(size), (len(index), size, size)).copy()
            for g, s in zip(gamma, same):
                H += g * s
            self.parts.append((index, np.linalg.inv(np.linalg.cholesky(H))))
        self.rows = np.concatenate([index.ravel() for index, _ in self.parts])

    def apply(self, M: np.ndarray) -> np.ndarray:
        """Whiten the sample axis (second to last) of M: shape (..., n, q) -> (..., n, q), rows in ``self.rows`` order."""
        pieces = []
        for index, inv_chol in self.parts:
            block = M[..., index, :]                       # (..., B, m, q)
            white = inv_chol @ block                        # broadcasts over leading axes
            pieces.append(white.reshape(*M.shape[:-2], -1, M.shape[-1]))
        return np.concatenate(pieces, axis=-2)


def _solve_batched(xtx: np.ndarray, xty: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """beta and (X'X)^-1 per batch item; singular items (e.g. a permutation emptying a cell) get NaN.

    Singularity is judged by the 1-norm condition number, ||A|| ||A^-1||, exact from the inverse
    (an SVD per item would cost more than everything else here); an exactly singular item makes
    the batched inverse fail, and then items are inverted one by one.
    """
    try:
        inverse = np.linalg.inv(xtx)
    except np.linalg.LinAlgError:
        inverse = np.array([_inverse_or_nan(a) for a in xtx])
    with np.errstate(invalid="ignore", over="ignore"):
        condition = np.abs(xtx).sum(axis=1).max(axis=1) * np.abs(inverse).sum(axis=1).max(axis=1)
    ok = np.isfinite(condition) & (condition < MAX_CONDITION)
    beta = np.einsum("bpq,bq->bp", inverse, xty)
    beta[~ok] = np.nan
    return beta, inverse, ok


def _inverse_or_nan(matrix: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.inv(matrix)
    except np.linalg.LinAlgError:
        return np.full_like(matrix, np.nan)


# ----------------------------------------------------------------------------------------------
# Permutation test
# ----------------------------------------------------------------------------------------------

def _units(design: Design) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Randomisation units (participant, or participant x period), their arm codes and strata."""
    unit = design.components[-1]
    arm_codes = pd.Index(design.arms).get_indexer(design.arm_of_sample)
    first = np.unique(unit, return_index=True)[1]
    unit_arm = arm_codes[first]
    if len(design.components) > 1:  # crossover: permute within period
        period = np.asarray(design.period_of_sample)[first]
        strata = pd.factorize(period, sort=True)[0]
    else:
        strata = np.zeros(len(first), dtype=int)
    return unit, unit_arm, strata


def permuted_arms(design: Design, seed: int, draws: range) -> np.ndarray:
    """Arm code per sample for each draw (draws x samples), one seeded generator per draw."""
    unit, unit_arm, strata = _units(design)
    out = np.empty((len(draws), len(unit)), dtype=int)
    for row, draw in enumerate(draws):
        rng = np.random.default_rng([seed, PERMUTATION_STREAM, draw])
        shuffled = unit_arm.copy()
        for stratum in np.unique(strata):
            members = np.flatnonzero(strata == stratum)
            shuffled[members] = unit_arm[rng.permutation(members)]
        out[row] = shuffled[unit]
    return out


class PermutedColumns:
    """The whitened arm and arm x time columns of any arm assignment of the randomisation units.

    Such a column is a sum over units of (the unit's samples [at time t]) x (unit has arm a), and
    whitening is linear and acts within participant blocks (which hold whole units), so each unit's
    whitened indicator vector is computed once; a draw's whitened column is then a sparse product
    ``S_t @ onehot``. No permuted design is built or whitened per draw.
    """

    def __init__(self, design: Design, whitener: Whitener):
        unit = design.components[-1]
        n_units = unit.max() + 1
        first = np.unique(unit, return_index=True)[1]
        owner = design.participant[first]
        slot = np.asarray(pd.Series(owner).groupby(owner).cumcount())  # unit's place within its participant
        unit_at = np.full((owner.max() + 1, slot.max() + 1), -1)
        unit_at[owner, slot] = np.arange(n_units)
        columns = {c: j for j, c in enumerate(design.columns)}
        self.first_sample = first
        # (column index, arm code, time level or None for the arm main effect)
        self.columns = [(columns[arm_column(arm)], a, None) for a, arm in enumerate(design.arms[1:], start=1)]
        self.columns += [(columns[interaction_column(arm, time)], a, time)
                         for a, arm in enumerate(design.arms[1:], start=1) for time in design.times[1:]]
        self.fixed = [j for j in range(design.X.shape[1]) if j not in {c for c, _, _ in self.columns}]
        rows_owner = design.participant[whitener.rows]
        self.unit_columns = {}
        for time in {t for _, _, t in self.columns}:
            in_time = np.ones(len(unit)) if time is None else (design.time_of_sample == time).astype(float)
            slots = np.zeros((len(unit), unit_at.shape[1]))
            slots[np.arange(len(unit)), slot[unit]] = in_time
            white = whitener.apply(slots)                      # (n, slots), whitened row order
            units = unit_at[rows_owner]                        # the unit in each slot of each row's block
            row, k = np.nonzero(units >= 0)
            self.unit_columns[time] = sparse.csr_matrix((white[row, k], (row, units[row, k])),
                                                        shape=(len(unit), n_units))

    def whitened(self, arm_codes: np.ndarray) -> list[np.ndarray]:
        """Per permuted column, the whitened column of every draw (n x draws)."""
        unit_arms = arm_codes[:, self.first_sample].T             # units x draws
        return [self.unit_columns[time] @ (unit_arms == a).astype(float) for _, a, time in self.columns]


def permutation_null(design: Design, y: np.ndarray, gamma: np.ndarray, specs: list[ContrastSpec],
                     arm_codes: np.ndarray) -> np.ndarray:
    """t of each contrast under each permuted arm assignment (draws x contrasts), GLS with fixed
    variance components: X'H^-1X and X'H^-1y of each draw assembled from the fixed columns' part
    (computed once) and the permuted columns' part (``PermutedColumns``), then one batched solve."""
    whitener = Whitener(BlockStructure(design), gamma)
    permuted = PermutedColumns(design, whitener)
    fixed_white = whitener.apply(design.X[:, permuted.fixed])
    y_white = whitener.apply(y[:, None])[:, 0]
    order = permuted.fixed + [c for c, _, _ in permuted.columns]  # xtx below is in this column order
    L = np.array([s.vector for s in specs])[:, order]
    n, p = design.X.shape
    n_fixed = len(permuted.fixed)
    out = []
    for start in range(0, len(arm_codes), BATCH):
        moving = np.stack(permuted.whitened(arm_codes[start:start + BATCH]))      # (k, n, draws)
        draws = moving.shape[2]
        xtx = np.empty((draws, p, p))
        xtx[:, :n_fixed, :n_fixed] = fixed_white.T @ fixed_white
        cross = np.einsum("nf,knd->dfk", fixed_white, moving, optimize=True)
        xtx[:, :n_fixed, n_fixed:] = cross
        xtx[:, n_fixed:, :n_fixed] = cross.transpose(0, 2, 1)
        xtx[:, n_fixed:, n_fixed:] = np.einsum("knd,lnd->dkl", moving, moving, optimize=True)
        xty = np.concatenate([np.broadcast_to(fixed_white.T @ y_white, (draws, n_fixed)),
                              np.einsum("knd,n->dk", moving, y_white)], axis=1)
        beta, inverse, _ = _solve_batched(xtx, xty)
        sigma2 = (y_white @ y_white - np.einsum("dp,dp->d", beta, xty)) / (n - p)
        var = sigma2[:, None] * np.einsum("cp,dpq,cq->dc", L, inverse, L)
        out.append((beta @ L.T) / np.sqrt(var))
    return np.concatenate(out) if out else np.empty((0, len(specs)))


def empirical_p(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    """Two-sided Monte Carlo p, (1 + #|null| >= |obs|) / (1 + #valid draws), per column."""
    valid = ~np.isnan(null)
    exceed = (np.abs(null) >= np.abs(observed)[None, :] - 1e-12) & valid
    return (1 + exceed.sum(axis=0)) / (1 + valid.sum(axis=0))


# ----------------------------------------------------------------------------------------------
# Random gene sets matched on expression decile
# ----------------------------------------------------------------------------------------------

def gene_set_draws(adata, usage: pd.DataFrame, seed: int, draws: range) -> tuple[np.ndarray, pd.DataFrame]:
    """Indices (draws x used genes) of decile-matched random genes replacing each used gene.

    The pool is every expressed gene outside the gene sets and markers; deciles are of the mean VST
    (``var['expressed']`` and ``var['vst_mean']``, from ``ctra.scoring.gene_summaries``).
    """
    used = usage[usage["used"].astype(bool) & (usage["group"] != "marker")].reset_index(drop=True)
    pool = np.flatnonzero(adata.var["expressed"].to_numpy(bool) & (adata.var["group"].to_numpy() == ""))
    means = adata.var["vst_mean"].to_numpy(float)
    edges = np.quantile(means[pool], np.linspace(0.1, 0.9, 9))
    pool_bin = np.searchsorted(edges, means[pool], side="right")
    used_bin = np.searchsorted(edges, means[adata.var_names.get_indexer(used["gene"])], side="right")
    out = np.empty((len(draws), len(used)), dtype=int)
    for row, draw in enumerate(draws):
        rng = np.random.default_rng([seed, GENE_SET_STREAM, draw])
        for b in np.unique(used_bin):
            slots = np.flatnonzero(used_bin == b)
            candidates = pool[pool_bin == b]
            out[row, slots] = rng.choice(candidates, len(slots), replace=len(candidates) < len(slots))
    return out, used


def random_set_scores(adata, picks: np.ndarray, used: pd.DataFrame) -> dict[str, np.ndarray]:
    """Scores (samples x draws) of each random set, computed like ctra.scoring (z, sign, mean)."""
    vst = adata.layers["vst"]
    directions = used["direction"].to_numpy(float)
    groups = used["group"].to_numpy()
    out = {score: np.empty((adata.n_obs, len(picks))) for score in SCORES}
    for row, genes in enumerate(picks):
        z = zscore(np.asarray(vst[:, genes], dtype=float))
        out["ctra"][:, row] = (z * directions).mean(axis=1)
        for group in SCORES[1:]:
            in_group = groups == group
            out[group][:, row] = z[:, in_group].mean(axis=1) if in_group.any() else np.nan
    return out


def gls_estimates(design: Design, Y: np.ndarray, gamma: np.ndarray, L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Contrast estimates and t for many responses sharing fixed relative variances (one solve).

    Each response keeps its own residual variance, so t is scale-free: a random gene set whose
    genes are less correlated (a score with less variance) is not favoured or penalised by scale.
    """
    _, xhx, xhy, yhy = BlockStructure(design).crossprods(gamma, design.X, Y)
    inverse = np.linalg.inv(xhx)
    beta = inverse @ xhy
    sigma2 = (yhy - np.einsum("pm,pm->m", beta, xhy)) / (len(Y) - design.X.shape[1])
    estimate = (L @ beta).T
    se = np.sqrt(sigma2[:, None] * np.einsum("cp,pq,cq->c", L, inverse, L)[None, :])
    return estimate, estimate / se


# ----------------------------------------------------------------------------------------------
# Leave one participant out
# ----------------------------------------------------------------------------------------------

def leave_one_out(design: Design, y: np.ndarray, gamma: np.ndarray, L: np.ndarray) -> np.ndarray:
    """Contrast estimates with each participant left out (participants x contrasts)."""
    whitener = Whitener(BlockStructure(design), gamma)
    Xw = whitener.apply(design.X)
    yw = whitener.apply(y[:, None])[:, 0]
    owner = design.participant[whitener.rows]
    n_people, p = owner.max() + 1, design.X.shape[1]
    A = np.zeros((n_people, p, p))
    b = np.zeros((n_people, p))
    np.add.at(A, owner, Xw[:, :, None] * Xw[:, None, :])
    np.add.at(b, owner, Xw * yw[:, None])
    beta, _, _ = _solve_batched(A.sum(axis=0)[None] - A, b.sum(axis=0)[None] - b)
    return beta @ L.T


# ----------------------------------------------------------------------------------------------
# Gene-level GEE (Cole-lab formulation)
# ----------------------------------------------------------------------------------------------

def gene_long_format(adata, usage: pd.DataFrame, design: Design, score: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Response, design and groups for the long-format gene model of one score.

    ``ctra`` uses all used genes with direction-signed z; a subscore uses its group's genes, unsigned.
    Rows are ordered by participant, then sample, then gene (as geepack expects clusters contiguous).
    """
    used = usage[usage["used"].astype(bool) & (usage["group"] != "marker")]
    if score != "ctra":
        used = used[used["group"] == score]
    z = zscore(np.asarray(adata[:, used["gene"].tolist()].layers["vst"], dtype=float))
    if score == "ctra":
        z = z * used["direction"].to_numpy(float)
    n, k = z.shape
    order = np.lexsort((np.arange(n), design.participant))
    sample = np.repeat(order, k)
    gene = np.tile(np.arange(k), n)
    dummies = np.zeros((n * k, k - 1))
    rows = np.flatnonzero(gene > 0)
    dummies[rows, gene[rows] - 1] = 1.0
    exog = np.hstack([design.X[sample], dummies])
    names = design.columns + [f"gene[T.{g}]" for g in used["gene"].iloc[1:]]
    return z[sample, gene], exog, design.participant[sample], names


def fit_gene_gee(adata, usage: pd.DataFrame, design: Design, score: str = "ctra"):
    """statsmodels GEE (Gaussian, exchangeable, robust SE) of the long-format gene model."""
    # imported here, and only the GEE module (statsmodels.api takes seconds to import)
    from statsmodels.genmod.cov_struct import Exchangeable
    from statsmodels.genmod.families import Gaussian
    from statsmodels.genmod.generalized_estimating_equations import GEE

    endog, exog, groups, names = gene_long_format(adata, usage, design, score)
    model = GEE(endog, exog, groups=groups, cov_struct=Exchangeable(), family=Gaussian())
    # start from least squares by the normal equations: the same solution as statsmodels' own start
    # (a GLM fit of the long table), without its SVDs
    start = np.linalg.solve(exog.T @ exog, exog.T @ endog)
    result = model.fit(maxiter=100, ddof_scale=0, start_params=start)  # scale and alpha over N, as geepack
    return result, names


def gee_table(adata, usage: pd.DataFrame, design: Design) -> pd.DataFrame:
    """Contrast rows (model gee_genes) for each score with at least two genes; normal-theory CI."""
    specs = contrast_specs(design)
    tables = []
    for score in SCORES:
        groups = usage.loc[usage["used"].astype(bool) & (usage["group"] != "marker"), "group"]
        n_genes = len(groups) if score == "ctra" else int((groups == score).sum())
        if n_genes < 2:
            continue
        result, names = fit_gene_gee(adata, usage, design, score)
        L = np.array([np.concatenate([s.vector, np.zeros(len(names) - len(s.vector))]) for s in specs])
        estimate = L @ result.params
        se = np.sqrt(np.einsum("cp,pq,cq->c", L, result.cov_robust, L))
        z = ndtri(0.975)
        tables.append(pd.DataFrame({
            "score": score, "model": "gee_genes", "contrast": [s.contrast for s in specs],
            "arm": [s.arm for s in specs], "time": [s.time for s in specs], "estimate": estimate, "se": se,
            "ci_low": estimate - z * se, "ci_high": estimate + z * se, "df": np.inf,
            "p_value": 2 * ndtr(-np.abs(estimate / se)),
            "n_participants": [len(np.unique(design.participant[s.samples])) for s in specs],
            "n_samples": [int(s.samples.sum()) for s in specs]}))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


# ----------------------------------------------------------------------------------------------
# Null draws (chunkable) and the final table
# ----------------------------------------------------------------------------------------------

def null_draws(adata, scores: pd.DataFrame, usage: pd.DataFrame, study: dict, chunk: int,
               n_chunks: int) -> pd.DataFrame:
    """Permutation t and random-gene-set t for this chunk's share of the draws (tidy).

    The variance components are the main model's REML ones, refitted here (the same computation as
    the model stage, so this stage need not wait for it).
    """
    settings = study["robustness"]
    design, _ = study_design(adata, usage, study, source=study["samples"])
    gammas = relative_variances(design, scores)
    specs = contrast_specs(design)
    L = np.array([s.vector for s in specs])
    perm_draws = _chunk(settings["permutations"], chunk, n_chunks) if len(design.arms) > 1 else range(0)
    set_draws = _chunk(settings["gene_sets"], chunk, n_chunks)
    picks, used = gene_set_draws(adata, usage, settings["seed"], set_draws)
    random_scores = random_set_scores(adata, picks, used)
    arm_codes = permuted_arms(design, settings["seed"], perm_draws)  # the same shuffles for every score
    frames = []
    for score, gamma in gammas.items():
        gamma = np.asarray(gamma)
        y = scores[score].to_numpy(float)
        interaction = [i for i, s in enumerate(specs) if s.contrast == "arm_x_time"]
        if len(perm_draws) and interaction:
            t = permutation_null(design, y, gamma, [specs[i] for i in interaction], arm_codes)
            frames.append(_tidy(t, "permutation", score, [specs[i] for i in interaction], perm_draws))
        _, t = gls_estimates(design, random_scores[score], gamma, L)
        frames.append(_tidy(t, "gene_set", score, specs, set_draws))
    return pd.concat(frames, ignore_index=True)


def _chunk(total: int, chunk: int, n_chunks: int) -> range:
    bounds = np.linspace(0, total, n_chunks + 1).round().astype(int)
    return range(bounds[chunk], bounds[chunk + 1])


def _tidy(values: np.ndarray, kind: str, score: str, specs: list[ContrastSpec], draws: range) -> pd.DataFrame:
    frame = pd.DataFrame(values, columns=range(len(specs)))
    frame["draw"] = list(draws)
    long = frame.melt(id_vars="draw", var_name="spec", value_name="value")
    long.insert(0, "kind", kind)
    long.insert(1, "score", score)
    long["contrast"] = [specs[i].contrast for i in long["spec"]]
    long["arm"] = [specs[i].arm for i in long["spec"]]
    long["time"] = [specs[i].time for i in long["spec"]]
    return long[["kind", "score", "contrast", "arm", "time", "draw", "value"]]


def robustness_table(adata, scores: pd.DataFrame, usage: pd.DataFrame, study: dict, models: pd.DataFrame,
                     gammas: dict, nulls: pd.DataFrame) -> pd.DataFrame:
    """contrasts.tsv: the main-model (lmm) rows of ``models`` with perm_p, geneset_p and leave-one-out
    columns added, then its other rows (GEE and sensitivity refits) as they are."""
    design, _ = study_design(adata, usage, study, source=study["samples"])
    specs = contrast_specs(design)
    L = np.array([s.vector for s in specs])
    key = ["score", "contrast", "arm", "time"]
    extra = []
    people = np.asarray(sorted(set(adata.obs["participant"])))  # the order of design.participant codes
    draws = {k: g.sort_values("draw")["value"].to_numpy() for k, g in nulls.groupby(["kind", *key], sort=False)}
    for score, gamma in gammas.items():
        gamma = np.asarray(gamma)
        y = scores[score].to_numpy(float)
        estimate, t = gls_estimates(design, y[:, None], gamma, L)
        observed_est, t_obs = estimate[0], t[0]
        loo = leave_one_out(design, y, gamma, L) - observed_est[None, :]
        worst = np.nanargmax(np.abs(loo), axis=0)
        for i, spec in enumerate(specs):
            row = {"score": score, "contrast": spec.contrast, "arm": spec.arm, "time": spec.time,
                   "loo_max_change": loo[worst[i], i], "loo_participant": people[worst[i]]}
            for kind, observed, column in (("permutation", t_obs[i], "perm_p"), ("gene_set", t_obs[i], "geneset_p")):
                null = draws.get((kind, score, spec.contrast, spec.arm, spec.time), np.empty(0))
                row[column] = empirical_p(np.array([observed]), null[:, None])[0] if len(null) else np.nan
                row[f"n_{kind}s"] = int(np.sum(~np.isnan(null)))
            extra.append(row)
    is_main = models["model"] == "lmm"
    main = models[is_main].merge(pd.DataFrame(extra), on=key, how="left", validate="one_to_one")
    main = main.astype({"n_permutations": "Int64", "n_gene_sets": "Int64"})
    return pd.concat([main, models[~is_main]], ignore_index=True)


def other_models(adata, scores: pd.DataFrame, usage: pd.DataFrame, study: dict) -> pd.DataFrame:
    """The contrast rows of the models beside the main one: gene-level GEE, then the sensitivity refits."""
    design, _ = study_design(adata, usage, study, source=study["samples"])
    return pd.concat([gee_table(adata, usage, design), sensitivity_table(adata, scores, usage, study)],
                     ignore_index=True)


def sensitivity_table(adata, scores: pd.DataFrame, usage: pd.DataFrame, study: dict) -> pd.DataFrame:
    """The main model refitted without covariates, without markers, and without both (when configured)."""
    has_covariates = bool(study.get("covariates"))
    has_markers = bool(study.get("adjust_for_cell_markers", True)) and bool(
        ((usage["group"] == "marker") & usage["used"].astype(bool)).any())
    variants = []
    if has_covariates:
        variants.append(("lmm_no_covariates", False, True))
    if has_markers:
        variants.append(("lmm_no_markers", True, False))
    if has_covariates and has_markers:
        variants.append(("lmm_unadjusted", False, False))
    tables = []
    for name, covariates, markers in variants:
        design, _ = study_design(adata, usage, study, study["samples"], covariates=covariates, markers=markers)
        tables.append(fit_scores(design, scores, name)[0])
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
