"""Arm x time contrasts from a linear mixed model fitted by REML, with Satterthwaite df.

Model (lme4 notation)::

    score ~ arm * time + covariates [+ marker VST] + (1 | participant) [+ (1 | participant:period)]

with treatment coding, the control arm and baseline time as references (from the config, never
alphabetical). The random effects are nested in participant, so V is block-diagonal by participant
and every REML quantity is a sum over participant blocks; blocks of equal size are stacked and
inverted in one batched call. The REML criterion with the residual variance profiled out is
minimised over the relative standard deviations (lme4's theta), and denominator degrees of freedom
follow Satterthwaite (as lmerTest's default): numerical Hessian of the REML deviance in the variance
parameters and numerical gradient of the contrast variance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize
from scipy.special import stdtr, stdtrit  # Student t cdf and quantile (scipy.stats costs ~1 s to import)

from .errors import InputError

LOG_2PI = float(np.log(2 * np.pi))
MAX_THETA = 1e3  # relative SD of a random effect; beyond this H is numerically singular


# ----------------------------------------------------------------------------------------------
# Fixed-effects design
# ----------------------------------------------------------------------------------------------

@dataclass
class Design:
    """Fixed-effects matrix with named columns plus the grouping of the random effects."""

    X: np.ndarray
    columns: list[str]
    participant: np.ndarray
    components: list[np.ndarray]
    component_names: list[str]
    arms: list[str]
    times: list[str]
    formula: str = ""
    arm_of_sample: np.ndarray = field(default_factory=lambda: np.array([]))
    time_of_sample: np.ndarray = field(default_factory=lambda: np.array([]))
    period_of_sample: np.ndarray | None = None


def arm_column(arm: str) -> str:
    return f"arm[T.{arm}]"


def time_column(time: str) -> str:
    return f"time[T.{time}]"


def interaction_column(arm: str, time: str) -> str:
    return f"{arm_column(arm)}:{time_column(time)}"


def _indicator(values: np.ndarray, level: str) -> np.ndarray:
    return (values == level).astype(np.float64)


def build_design(obs: pd.DataFrame, levels: dict[str, list[str]], covariates: list[str],
                 extra: pd.DataFrame | None = None) -> Design:
    """Treatment-coded ``arm * time`` plus covariates and extra numeric columns (marker VST).

    Numeric covariates and extra columns are centered (the contrasts do not change; conditioning
    improves). Categorical covariates use their first level (order of appearance) as reference.
    """
    arms, times = [str(a) for a in levels["arm"]], [str(t) for t in levels["time"]]
    arm_values, time_values = obs["arm"].to_numpy(str), obs["time"].to_numpy(str)
    columns = {"Intercept": np.ones(len(obs))}
    for arm in arms[1:]:
        columns[arm_column(arm)] = _indicator(arm_values, arm)
    for time in times[1:]:
        columns[time_column(time)] = _indicator(time_values, time)
    for arm in arms[1:]:
        for time in times[1:]:
            columns[interaction_column(arm, time)] = columns[arm_column(arm)] * columns[time_column(time)]
    terms = []
    for name in covariates:
        values = obs[name]
        if pd.api.types.is_numeric_dtype(values):
            columns[name] = values.to_numpy(np.float64) - values.mean()
            terms.append(name)
        else:
            for level in list(dict.fromkeys(values))[1:]:
                columns[f"{name}[T.{level}]"] = _indicator(values.to_numpy(str), level)
            terms.append(f"C({name})")
    if extra is not None:
        for name in extra.columns:
            columns[name] = extra[name].to_numpy(np.float64) - extra[name].mean()
            terms.append(name)
    participant = pd.factorize(obs["participant"], sort=True)[0]
    components, names = [participant], ["participant"]
    if "period" in obs:
        components.append(pd.factorize(obs["participant"].astype(str) + "\x1f" + obs["period"].astype(str), sort=True)[0])
        names.append("participant:period")
    fixed = "arm * time" if len(arms) > 1 else "time"
    random = " + ".join(f"(1 | {n})" for n in names)
    formula = " + ".join(["score ~ " + fixed, *terms, random])
    return Design(X=np.column_stack(list(columns.values())), columns=list(columns), participant=participant,
                  components=components, component_names=names, arms=arms, times=times, formula=formula,
                  arm_of_sample=arm_values, time_of_sample=time_values,
                  period_of_sample=obs["period"].to_numpy(str) if "period" in obs else None)


def check_full_rank(X: np.ndarray, columns: list[str], source: str) -> None:
    """Refuse a rank-deficient design, naming each column that adds nothing and what it repeats."""
    if np.linalg.matrix_rank(X) == X.shape[1]:
        return
    kept: list[int] = []
    problems = []
    for j in range(X.shape[1]):
        candidate = kept + [j]
        if np.linalg.matrix_rank(X[:, candidate]) == len(candidate):
            kept = candidate
            continue
        coef = np.linalg.lstsq(X[:, kept], X[:, j], rcond=None)[0] if kept else np.array([])
        partners = [columns[k] for k, c in zip(kept, coef) if abs(c) > 1e-8]
        what = f"a combination of {', '.join(partners)}" if partners else "all zero (no sample has it)"
        problems.append(f"{source}: the model design is not of full rank: column '{columns[j]}' is {what}.")
    raise InputError(problems)


# ----------------------------------------------------------------------------------------------
# REML for nested random intercepts, block-diagonal by participant
# ----------------------------------------------------------------------------------------------

class BlockStructure:
    """Participant blocks grouped by size, with per-component 'same group' matrices stacked."""

    def __init__(self, design: Design):
        order = np.argsort(design.participant, kind="stable")
        sizes = np.bincount(design.participant)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.n, self.p = design.X.shape
        self.groups = []
        for size in np.unique(sizes):
            owners = np.flatnonzero(sizes == size)
            index = order[starts[owners][:, None] + np.arange(size)[None, :]]
            same = [(c[index][:, :, None] == c[index][:, None, :]).astype(np.float64) for c in design.components]
            self.groups.append((index, same))

    def crossprods(self, gamma: np.ndarray, X: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """log|H|, X'H^-1X, X'H^-1Y, Y'H^-1Y (diag only) for H = I + sum_k gamma_k S_k.

        ``Y`` is n x m (several responses share H, e.g. genes or permutations of one score). With a
        single random intercept, H_i^-1 = I - w J with w = gamma / (1 + m gamma), so only block sums are
        needed; nested components go through a batched Cholesky per block size.
        """
        if len(gamma) == 1:
            return self._intercept_crossprods(float(gamma[0]), X, Y)
        logdet, xhx = 0.0, np.zeros((self.p, self.p))
        xhy, yhy = np.zeros((self.p, Y.shape[1])), np.zeros(Y.shape[1])
        for index, same in self.groups:
            size = index.shape[1]
            H = np.broadcast_to(np.eye(size), (len(index), size, size)).copy()
            for g, s in zip(gamma, same):
                H += g * s
            chol = np.linalg.cholesky(H)
            logdet += 2 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum()
            xw = np.linalg.solve(chol, X[index])          # L^-1 X_i
            yw = np.linalg.solve(chol, Y[index])          # L^-1 Y_i
            xhx += np.einsum("bip,biq->pq", xw, xw)
            xhy += np.einsum("bip,bim->pm", xw, yw)
            yhy += np.einsum("bim,bim->m", yw, yw)
        return logdet, xhx, xhy, yhy

    def _intercept_crossprods(self, gamma: float, X: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        logdet, xhx, xhy, yhy = 0.0, X.T @ X, X.T @ Y, np.einsum("nm,nm->m", Y, Y)
        for index, _ in self.groups:
            size = index.shape[1]
            weight = gamma / (1 + size * gamma)
            x_sum, y_sum = X[index].sum(axis=1), Y[index].sum(axis=1)
            logdet += len(index) * np.log1p(size * gamma)
            xhx = xhx - weight * (x_sum.T @ x_sum)
            xhy = xhy - weight * (x_sum.T @ y_sum)
            yhy = yhy - weight * np.einsum("bm,bm->m", y_sum, y_sum)
        return logdet, xhx, xhy, yhy


@dataclass
class Fit:
    """REML fit of one response."""

    beta: np.ndarray
    cov_beta: np.ndarray
    sigma2: float
    component_variances: np.ndarray
    deviance: float
    structure: BlockStructure
    X: np.ndarray
    y: np.ndarray


def _profiled_deviance(theta: np.ndarray, structure: BlockStructure, X: np.ndarray, y: np.ndarray) -> float:
    """REML criterion (-2 log restricted likelihood) with sigma^2 profiled out; theta = relative SDs."""
    logdet, xhx, xhy, yhy = structure.crossprods(theta ** 2, X, y[:, None])
    chol = np.linalg.cholesky(xhx)
    beta_part = np.linalg.solve(chol, xhy[:, 0])
    rss = yhy[0] - beta_part @ beta_part
    dof = structure.n - structure.p
    return dof * (1 + LOG_2PI + np.log(rss / dof)) + logdet + 2 * np.log(np.diag(chol)).sum()


def _minimize_one(objective) -> np.ndarray:
    """One relative SD: Brent on log10(theta) in [-6, 3], then the boundary theta = 0 if it is better."""
    result = optimize.minimize_scalar(lambda u: objective(np.array([10.0 ** u])), bounds=(-6, np.log10(MAX_THETA)),
                                      method="bounded", options={"xatol": 1e-9})
    theta = np.array([10.0 ** result.x])
    return np.zeros(1) if objective(np.zeros(1)) <= objective(theta) else theta


def fit_reml(design: Design, y: np.ndarray, structure: BlockStructure | None = None) -> Fit:
    """REML estimates of beta, their covariance and the variance components for one response."""
    structure = structure or BlockStructure(design)
    k = len(design.components)

    def objective(theta: np.ndarray) -> float:
        try:
            return _profiled_deviance(theta, structure, design.X, y)
        except np.linalg.LinAlgError:  # numerically singular far out in theta: steer the optimizer back
            return 1e300

    if k == 1:
        theta = _minimize_one(objective)
    else:
        best = None
        for start in (np.ones(k), np.full(k, 0.3)):
            result = optimize.minimize(objective, start, method="L-BFGS-B", bounds=[(0.0, MAX_THETA)] * k,
                                       options={"ftol": 1e-14, "gtol": 1e-9, "maxiter": 500})
            if best is None or result.fun < best.fun:
                best = result
        theta = best.x
    gamma = theta ** 2
    _, xhx, xhy, yhy = structure.crossprods(gamma, design.X, y[:, None])
    xhx_inv = np.linalg.inv(xhx)
    beta = xhx_inv @ xhy[:, 0]
    sigma2 = float((yhy[0] - beta @ xhy[:, 0]) / (structure.n - structure.p))
    return Fit(beta=beta, cov_beta=sigma2 * xhx_inv, sigma2=sigma2, component_variances=sigma2 * gamma,
               deviance=float(objective(theta)), structure=structure, X=design.X, y=y)


def _deviance_at(variances: np.ndarray, fit: Fit) -> float:
    """Full REML deviance at variance parameters (sigma^2, component variances...)."""
    sigma2, gamma = variances[0], variances[1:] / variances[0]
    logdet, xhx, xhy, yhy = fit.structure.crossprods(gamma, fit.X, fit.y[:, None])
    beta = np.linalg.solve(xhx, xhy[:, 0])
    rhr = yhy[0] - beta @ xhy[:, 0]
    dof = fit.structure.n - fit.structure.p
    return (dof * (LOG_2PI + np.log(sigma2)) + logdet + np.linalg.slogdet(xhx)[1] + rhr / sigma2)


def _cov_beta_at(variances: np.ndarray, fit: Fit) -> np.ndarray:
    sigma2, gamma = variances[0], variances[1:] / variances[0]
    _, xhx, _, _ = fit.structure.crossprods(gamma, fit.X, fit.y[:, None])
    return sigma2 * np.linalg.inv(xhx)


def satterthwaite_df(fit: Fit, contrasts: np.ndarray) -> np.ndarray:
    """Satterthwaite df for each row of ``contrasts`` (lmerTest's method).

    Variance parameters on the boundary (a component estimated at 0) are held fixed, which is what
    the theta parametrisation implies there (the deviance is flat in that direction).
    """
    full = np.concatenate([[fit.sigma2], fit.component_variances])
    free = np.flatnonzero(full > 1e-10 * fit.sigma2)
    steps = 1e-4 * full[free]

    def shifted(delta: np.ndarray) -> np.ndarray:
        out = full.copy()
        out[free] += delta
        return out

    m = len(free)
    hessian = np.zeros((m, m))
    f0 = _deviance_at(full, fit)
    for a in range(m):
        for b in range(a, m):
            ea, eb = np.eye(m)[a] * steps[a], np.eye(m)[b] * steps[b]
            if a == b:
                value = (_deviance_at(shifted(ea), fit) - 2 * f0 + _deviance_at(shifted(-ea), fit)) / steps[a] ** 2
            else:
                value = (_deviance_at(shifted(ea + eb), fit) - _deviance_at(shifted(ea - eb), fit)
                         - _deviance_at(shifted(eb - ea), fit) + _deviance_at(shifted(-ea - eb), fit)) / (4 * steps[a] * steps[b])
            hessian[a, b] = hessian[b, a] = value
    vcov_var = 2 * np.linalg.inv(hessian)
    grads = np.zeros((len(contrasts), m))
    for a in range(m):
        e = np.eye(m)[a] * steps[a]
        up, down = _cov_beta_at(shifted(e), fit), _cov_beta_at(shifted(-e), fit)
        grads[:, a] = (np.einsum("cp,pq,cq->c", contrasts, up, contrasts)
                       - np.einsum("cp,pq,cq->c", contrasts, down, contrasts)) / (2 * steps[a])
    variance = np.einsum("cp,pq,cq->c", contrasts, fit.cov_beta, contrasts)
    return 2 * variance ** 2 / np.einsum("ca,ab,cb->c", grads, vcov_var, grads)


# ----------------------------------------------------------------------------------------------
# Contrasts
# ----------------------------------------------------------------------------------------------

@dataclass
class ContrastSpec:
    contrast: str
    arm: str
    time: str
    vector: np.ndarray
    samples: np.ndarray


def contrast_specs(design: Design) -> list[ContrastSpec]:
    """Each non-control arm x non-baseline time (vs control's change), then each arm's own change."""
    index = {c: i for i, c in enumerate(design.columns)}
    control, baseline = design.arms[0], design.times[0]
    specs = []

    def vector(*names: str) -> np.ndarray:
        v = np.zeros(len(design.columns))
        for name in names:
            v[index[name]] = 1.0
        return v

    def involved(arms: list[str], time: str) -> np.ndarray:
        return np.isin(design.arm_of_sample, arms) & np.isin(design.time_of_sample, [baseline, time])

    if len(design.arms) > 1:
        for arm in design.arms[1:]:
            for time in design.times[1:]:
                specs.append(ContrastSpec("arm_x_time", arm, time, vector(interaction_column(arm, time)),
                                          involved([control, arm], time)))
    for arm in design.arms:
        for time in design.times[1:]:
            names = [time_column(time)] + ([interaction_column(arm, time)] if arm != control else [])
            specs.append(ContrastSpec("change", arm, time, vector(*names), involved([arm], time)))
    return specs


def contrast_table(fit: Fit, design: Design, specs: list[ContrastSpec]) -> pd.DataFrame:
    """estimate, se, 95% CI, Satterthwaite df and p for each contrast of one fit."""
    L = np.array([s.vector for s in specs])
    estimate = L @ fit.beta
    se = np.sqrt(np.einsum("cp,pq,cq->c", L, fit.cov_beta, L))
    df = satterthwaite_df(fit, L)
    t_crit = stdtrit(df, 0.975)
    participants = np.asarray(design.participant)
    return pd.DataFrame({
        "contrast": [s.contrast for s in specs],
        "arm": [s.arm for s in specs],
        "time": [s.time for s in specs],
        "estimate": estimate,
        "se": se,
        "ci_low": estimate - t_crit * se,
        "ci_high": estimate + t_crit * se,
        "df": df,
        "p_value": 2 * stdtr(df, -np.abs(estimate / se)),
        "n_participants": [len(np.unique(participants[s.samples])) for s in specs],
        "n_samples": [int(s.samples.sum()) for s in specs],
    })


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values (step-up, monotone, capped at 1)."""
    p = np.asarray(p, dtype=float)
    n = len(p)
    order = np.argsort(p, kind="stable")
    ranked = p[order] * n / np.arange(1, n + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(adjusted, 1.0)
    return out


# ----------------------------------------------------------------------------------------------
# One study: all scores and all used genes
# ----------------------------------------------------------------------------------------------

SCORES = ("ctra", "inflammatory", "antiviral", "antibody")
DF_METHOD = "Satterthwaite (as lmerTest), REML"


def study_design(adata, usage: pd.DataFrame, study: dict, source: str,
                 covariates: bool = True, markers: bool = True) -> tuple[Design, list[str]]:
    """The study's fixed design (checked for full rank) and the marker genes it adjusts for."""
    marker_genes: list[str] = []
    extra = None
    if markers and study.get("adjust_for_cell_markers", True):
        marker_genes = usage.loc[(usage["group"] == "marker") & usage["used"].astype(bool), "gene"].tolist()
        extra = pd.DataFrame(adata[:, marker_genes].layers["vst"], columns=marker_genes, index=adata.obs_names)
    design = build_design(adata.obs, adata.uns["levels"], study.get("covariates", []) if covariates else [], extra)
    check_full_rank(design.X, design.columns, source)
    return design, marker_genes


def _score_fits(design: Design, scores: pd.DataFrame):
    """(score, REML fit) for every score column that has values, sharing one block structure."""
    structure = BlockStructure(design)
    for score in SCORES:
        y = scores[score].to_numpy(dtype=float)
        if not np.isnan(y).all():
            yield score, fit_reml(design, y, structure)


def _relative_variances(fit: Fit) -> list[float]:
    return (fit.component_variances / fit.sigma2).tolist()


def fit_scores(design: Design, scores: pd.DataFrame, model: str) -> tuple[pd.DataFrame, dict[str, list[float]]]:
    """Contrast rows for every score column that has values, and each fit's relative variances.

    The relative variances (component variance / residual variance) let the robustness checks
    reuse the fitted covariance structure in closed-form refits.
    """
    specs = contrast_specs(design)
    tables, gammas = [], {}
    for score, fit in _score_fits(design, scores):
        table = contrast_table(fit, design, specs)
        table.insert(0, "score", score)
        table.insert(1, "model", model)
        tables.append(table)
        gammas[score] = _relative_variances(fit)
    return pd.concat(tables, ignore_index=True), gammas


def relative_variances(design: Design, scores: pd.DataFrame) -> dict[str, list[float]]:
    """Each score's REML variance components over its residual variance (as ``fit_scores`` records
    them), for the checks that refit with fixed variance components without waiting for the model."""
    return {score: _relative_variances(fit) for score, fit in _score_fits(design, scores)}


def fit_genes(design: Design, adata, usage: pd.DataFrame) -> pd.DataFrame:
    """The same contrasts per used gene on its VST, with BH FDR within each contrast."""
    structure = BlockStructure(design)
    specs = contrast_specs(design)
    used = usage[usage["used"].astype(bool) & (usage["group"] != "marker")]
    vst = np.asarray(adata[:, used["gene"].tolist()].layers["vst"], dtype=float)
    tables = []
    for j, record in enumerate(used.itertuples(index=False)):
        table = contrast_table(fit_reml(design, vst[:, j], structure), design, specs)
        table.insert(0, "gene", record.gene)
        table.insert(1, "group", record.group)
        table.insert(2, "direction", int(record.direction))
        tables.append(table)
    genes = pd.concat(tables, ignore_index=True)
    genes["fdr"] = genes.groupby(["contrast", "arm", "time"], sort=False)["p_value"].transform(
        lambda p: benjamini_hochberg(p.to_numpy()))
    return genes.drop(columns=["n_participants"])


def fit_study(adata, scores: pd.DataFrame, usage: pd.DataFrame, study: dict, source: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """contrasts.tsv, genes.tsv and the model description for the report's methods."""
    scores = scores.set_index("sample").loc[adata.obs_names]
    design, marker_genes = study_design(adata, usage, study, source)
    contrasts, gammas = fit_scores(design, scores, "lmm")
    genes = fit_genes(design, adata, usage)
    info = {"formula": design.formula, "coefficients": design.columns, "df_method": DF_METHOD,
            "covariates": list(study.get("covariates", [])), "markers_used": marker_genes,
            "reference_levels": {"arm": design.arms[0], "time": design.times[0]},
            "levels": {"arm": design.arms, "time": design.times},
            "normalization": adata.uns.get("normalization", {}), "relative_variances": gammas,
            "variance_components": design.component_names}
    return contrasts, genes, info
