"""Mediation of a trial's arm effect on the score change by an outcome's change (mediation.tsv).

For each active arm against control, each non-baseline time, each score and each outcome, on the
participants with both draws and both measures (change scores from baseline, ``d = value(time) -
value(baseline)``; covariates as at baseline), ordinary least squares of three participant-level models
(T = 1 for the arm, 0 for control; M the mediator's change, Y the response's change; C the covariates):

    M ~ 1 + T + C             a      = the arm's effect on the mediator change
    Y ~ 1 + T + M + C         b      = the mediator change's slope on the response change, at fixed arm
                              direct = the arm's effect on the response change at fixed mediator change (c')
    Y ~ 1 + T + C             total  = the arm's effect on the response change (c)

indirect = a x b; with the same participants and covariates, total = direct + indirect exactly. Both orderings
are reported (``mediator`` = the outcome: arm -> outcome change -> score change; ``mediator`` = the score: arm
-> score change -> outcome change): the data cannot tell them apart, and the causal reading of either needs
(1) no unmeasured confounding of the mediator-response relation (the mediator is not randomised), (2) the
mediator change preceding the response change (both are measured at the same draws here), and (3) no effect of
the arm on a confounder of that relation.

Inference: a, b, direct and total from the OLS t (df = participants - coefficients). The indirect effect's CI
is the percentile interval of ``bootstrap`` participant-level resamples (stratified by arm, so each resample
keeps the trial's arm sizes), all computed at once as weighted least squares with resample counts as weights,
seeded per outcome, arm and time (``numpy.random.default_rng([seed, outcome, arm, time])``). Its p-value is the
joint-significance test, max(p_a, p_b): H0 "a = 0 or b = 0" is rejected only when both paths are; an
intersection-union test, of level at most alpha everywhere under H0 and conservative when both are 0 (the
bootstrap CI of a x b is conservative there too; see the README's Calibration).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import stdtr, stdtrit

from .config import MediationSettings
from .errors import InputError
from .genesets import SCORE_NAMES

PATHS = ("a", "b", "indirect", "direct", "total")
COLUMNS = (
    "score",
    "outcome",
    "mediator",
    "arm",
    "time",
    "path",
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "p_value",
    "n_participants",
    "n_boot",
    "note",
)
MIN_PARTICIPANTS = 6  # per arm pair: fewer and the three models' df vanish
SINGULAR = 1e10  # condition number above which a resample's normal equations are taken as singular


def _covariate_matrix(frame: pd.DataFrame, covariates: list[str]) -> tuple[np.ndarray, list[str]]:
    """Covariates as at baseline: numeric centred, categorical as treatment dummies; constant columns dropped."""
    columns, names = [], []
    for name in covariates:
        values = frame[name]
        if pd.api.types.is_numeric_dtype(values):
            x = values.to_numpy(float)
            if np.ptp(x) > 0:
                columns.append(x - x.mean())
                names.append(name)
        else:
            text = values.astype(str).to_numpy()
            for level in list(dict.fromkeys(text))[1:]:
                columns.append((text == level).astype(float))
                names.append(f"{name}[T.{level}]")
    return (np.column_stack(columns) if columns else np.zeros((len(frame), 0))), names


def changes(
    obs: pd.DataFrame, scores: pd.DataFrame, measures: list[str], baseline: str, time: str, covariates: list[str]
) -> pd.DataFrame:
    """One row per participant with both draws: arm, each measure's change (NaN where either draw lacks it) and
    the covariates at baseline; sorted by participant."""
    table = pd.concat([obs[["participant", "arm", "time", *covariates]], scores.reindex(obs.index)], axis=1)
    table = table.loc[:, ~table.columns.duplicated()]
    for name in measures:
        if name in obs and name not in scores:
            table[name] = obs[name].to_numpy(float)
    before = table[table["time"].astype(str) == baseline].set_index("participant")
    after = table[table["time"].astype(str) == time].set_index("participant")
    people = sorted(set(before.index) & set(after.index), key=str)
    out = before.loc[people, ["arm", *covariates]].copy()
    for name in measures:
        out[name] = after.loc[people, name].to_numpy(float) - before.loc[people, name].to_numpy(float)
    out.index.name = "participant"
    return out


def ols(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Coefficients, their standard errors and the residual df of y on X."""
    xtx_inv = np.linalg.inv(X.T @ X)
    beta = xtx_inv @ (X.T @ y)
    df = len(y) - X.shape[1]
    sigma2 = float(np.sum((y - X @ beta) ** 2) / df)
    return beta, np.sqrt(np.diag(xtx_inv) * sigma2), df


def resample_counts(strata: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """n_boot x n counts: how often each participant is drawn in each resample, drawing with replacement
    within each stratum as many as it has (the arms keep their sizes)."""
    n = len(strata)
    counts = np.zeros(n_boot * n, dtype=np.int64)
    offsets = (np.arange(n_boot) * n)[:, None]
    for level in np.unique(strata):
        members = np.flatnonzero(strata == level)
        picks = members[rng.integers(0, len(members), size=(n_boot, len(members)))]
        counts += np.bincount((offsets + picks).ravel(), minlength=n_boot * n)
    return counts.reshape(n_boot, n).astype(float)


def weighted_coefs(weights: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Weighted least-squares coefficients for every row of ``weights`` (resamples x n) and every column of
    ``Y`` (n x m): resamples x p x m; NaN for a resample whose normal equations are singular."""
    n, p = X.shape
    gram = (weights @ (X[:, :, None] * X[:, None, :]).reshape(n, p * p)).reshape(-1, p, p)
    cross = (weights @ (X[:, :, None] * Y[:, None, :]).reshape(n, -1)).reshape(-1, p, Y.shape[1])
    singular = np.linalg.cond(gram) > SINGULAR
    gram[singular] = np.eye(p)
    coefs = np.linalg.solve(gram, cross)
    coefs[singular] = np.nan
    return coefs


def _p(estimate: float, se: float, df: int) -> float:
    return float(2 * stdtr(df, -abs(estimate / se))) if se > 0 else np.nan


def decompose(
    treat: np.ndarray, mediator: np.ndarray, response: np.ndarray, C: np.ndarray, weights: np.ndarray
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """The five paths' point estimates (estimate, se, p, CI) and the bootstrap replicates of each."""
    n = len(treat)
    Xa = np.column_stack([np.ones(n), treat, C])
    Xb = np.column_stack([np.ones(n), treat, mediator, C])
    a_coef, a_se, a_df = ols(Xa, mediator)
    c_coef, c_se, _ = ols(Xa, response)
    b_coef, b_se, b_df = ols(Xb, response)
    point = {
        "a": (a_coef[1], a_se[1], a_df),
        "b": (b_coef[2], b_se[2], b_df),
        "direct": (b_coef[1], b_se[1], b_df),
        "total": (c_coef[1], c_se[1], a_df),
    }
    rows = {}
    for path, (estimate, se, df) in point.items():
        t = float(stdtrit(df, 0.975))
        rows[path] = {
            "estimate": estimate,
            "se": se,
            "ci_low": estimate - t * se,
            "ci_high": estimate + t * se,
            "p_value": _p(estimate, se, df),
        }
    first = weighted_coefs(weights, Xa, np.column_stack([mediator, response]))
    second = weighted_coefs(weights, Xb, response[:, None])
    boot = {"a": first[:, 1, 0], "total": first[:, 1, 1], "b": second[:, 2, 0], "direct": second[:, 1, 0]}
    boot["indirect"] = boot["a"] * boot["b"]
    indirect = rows["a"]["estimate"] * rows["b"]["estimate"]
    valid = boot["indirect"][~np.isnan(boot["indirect"])]
    low, high = np.percentile(valid, [2.5, 97.5]) if len(valid) else (np.nan, np.nan)
    rows["indirect"] = {
        "estimate": indirect,
        "se": float(np.std(valid, ddof=1)) if len(valid) > 1 else np.nan,
        "ci_low": low,
        "ci_high": high,
        "p_value": max(rows["a"]["p_value"], rows["b"]["p_value"]),  # joint significance
    }
    return rows, boot


NOTES = {
    "a": "OLS t; the arm's effect on the mediator change",
    "b": "OLS t; mediator change -> response change at fixed arm",
    "indirect": "a x b; CI: percentile bootstrap of participants (stratified by arm), se: bootstrap SD; "
    "p: joint significance max(p_a, p_b)",
    "direct": "OLS t; the arm's effect at fixed mediator change",
    "total": "OLS t; change-score model without markers (may differ from contrasts.tsv's mixed model)",
}


def mediation_table(obs: pd.DataFrame, levels: dict, scores: pd.DataFrame, settings: MediationSettings) -> pd.DataFrame:
    """mediation.tsv: every score x outcome x active arm x non-baseline time x ordering x path."""
    arms, times = [str(a) for a in levels["arm"]], [str(t) for t in levels["time"]]
    if len(arms) < 2:
        raise InputError(f"{settings.source}: mediation needs a control arm and at least one active arm.")
    names = [s for s in SCORE_NAMES if s in scores and not scores[s].isna().all()]
    covariates = list(settings.covariates)
    rows = []
    for t_index, time in enumerate(times[1:], start=1):
        table = changes(obs, scores, [*names, *settings.outcomes], times[0], time, covariates)
        for o_index, outcome in enumerate(settings.outcomes):
            for a_index, arm in enumerate(arms[1:], start=1):
                pair = table[table["arm"].astype(str).isin([arms[0], arm])]
                pair = pair[pair[[outcome, *names]].notna().all(axis=1)]
                treat = (pair["arm"].astype(str) == arm).to_numpy(float)
                if len(pair) < MIN_PARTICIPANTS or treat.sum() < 2 or (1 - treat).sum() < 2:
                    raise InputError(
                        f"{settings.source}: mediation of '{outcome}' for arm '{arm}' at '{time}' has only "
                        f"{len(pair)} participant(s) with both draws and both measures; it needs at least "
                        f"{MIN_PARTICIPANTS}, 2 per arm."
                    )
                C, _ = _covariate_matrix(pair, covariates)
                rng = np.random.default_rng([settings.seed, o_index, a_index, t_index])
                weights = resample_counts(treat.astype(int), settings.bootstrap, rng)
                m = pair[outcome].to_numpy(float)
                for score in names:
                    s = pair[score].to_numpy(float)
                    for mediator, (med, resp) in ((outcome, (m, s)), (score, (s, m))):
                        paths, boot = decompose(treat, med, resp, C, weights)
                        for path in PATHS:
                            rows.append(
                                {
                                    "score": score,
                                    "outcome": outcome,
                                    "mediator": mediator,
                                    "arm": arm,
                                    "time": time,
                                    "path": path,
                                    **paths[path],
                                    "n_participants": len(pair),
                                    "n_boot": int(np.sum(~np.isnan(boot["indirect"])))
                                    if path == "indirect"
                                    else np.nan,
                                    "note": NOTES[path],
                                }
                            )
    out = pd.DataFrame(rows, columns=list(COLUMNS))
    return out.astype({"n_boot": "Int64"})
