"""Synthesis across studies: random-effects meta-analysis of the studies' primary contrasts.

Each study contributes its primary arm x time estimate y_i with v_i = se_i^2 in score units: the mean of
per-gene z-scores, each gene z-scored within its own study. That makes the unit comparable in kind (a gene's SD
in that study), not a validated common metric across platforms or populations (RNA-seq counts through the VST,
microarray log2): a study with less spread in expression gets a larger effect for the same biology. So
meta.tsv also gives, as a sensitivity, the pooling of each effect divided by its study's baseline SD of the
score (``random_effects_reml_hk_baseline_sd``). The estimand is each study's own model: meta.tsv's study rows
record the leukocyte markers adjusted for, the covariates and the primary time, and the pooled row's note says
when the studies differ in marker adjustment (an effect net of cell composition pooled with one that is not) or
in covariates; they are pooled anyway, with that note, not refused.

* REML tau^2 (Fisher scoring, truncated at 0, as metafor's ``rma(method = "REML")``), the pooled mean
  mu = sum w_i y_i / sum w_i with w_i = 1 / (v_i + tau^2), and the Hartung-Knapp(-Sidik-Jonkman) CI and p:
  se_HK^2 = sum w_i (y_i - mu)^2 / ((k - 1) sum w_i) on a t reference with k - 1 df (metafor's
  ``test = "knha"``, no truncation);
* heterogeneity: Cochran's Q (fixed-effect weights 1 / v_i, chi^2 on k - 1 df), I^2 = tau^2 / (tau^2 + s^2)
  and H^2 = (tau^2 + s^2) / s^2 with s^2 = (k - 1) sum(1/v) / ((sum 1/v)^2 - sum 1/v^2) (metafor's
  definitions), and the 95 % prediction interval mu +/- t_{k-2} sqrt(se_HK^2 + tau^2) (Higgins, Thompson &
  Spiegelhalter 2009; metafor's ``predict(pi.type = "riley")``), empty (NaN) with fewer than 3 studies.
  metafor's default ``predict()`` after ``test = "knha"`` uses t_{k-1} instead; that interval is kept as
  ``pi_low_k1`` / ``pi_high_k1`` of ``reml_hk`` so both are checked against metafor, but meta.tsv reports the
  k - 2 one (the k - 1 interval ignores that tau^2 is estimated and undercovers with few studies);
* DerSimonian-Laird as a sensitivity analysis: tau^2 by moments, Wald (z) CI;
* leave-one-study-out: the REML / Hartung-Knapp analysis without each study in turn (k >= 3).

Every function takes arrays whose last axis is the studies, so the calibration simulation fits thousands of
meta-analyses in one call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import chdtrc, ndtr, ndtri, stdtr, stdtrit

REML_TOL = 1e-12
REML_MAX_ITER = 500
META_COLUMNS = (
    "analysis",
    "study",
    "score",
    "arm",
    "time",
    "input",
    "n_participants",
    "k",
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "df",
    "p_value",
    "weight",
    "tau2",
    "i2",
    "h2",
    "q",
    "q_df",
    "q_p",
    "pi_low",
    "pi_high",
    "markers",
    "covariates",
    "score_sd",
    "note",
)
INPUT_LABELS = {"counts": "RNA-seq counts (DESeq2 VST)", "log2_expression": "log2 expression (microarray, log2 TPM)"}


def _heterogeneity(y: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
    w = 1 / v
    k = y.shape[-1]
    fixed = (w * y).sum(-1) / w.sum(-1)
    q = (w * (y - fixed[..., None]) ** 2).sum(-1)
    sw, sw2 = w.sum(-1), (w**2).sum(-1)
    return {"q": q, "q_df": np.full(q.shape, k - 1.0), "q_p": chdtrc(k - 1, q), "typical": (k - 1) * sw / (sw**2 - sw2)}


def tau2_dl(y: np.ndarray, v: np.ndarray) -> np.ndarray:
    """DerSimonian-Laird moment estimate of tau^2 (truncated at 0)."""
    w = 1 / v
    q = _heterogeneity(y, v)["q"]
    k = y.shape[-1]
    return np.maximum(0.0, (q - (k - 1)) / (w.sum(-1) - (w**2).sum(-1) / w.sum(-1)))


def tau2_reml(y: np.ndarray, v: np.ndarray) -> np.ndarray:
    """REML estimate of tau^2 by Fisher scoring from the DL estimate, truncated at 0 (as metafor)."""
    tau2 = tau2_dl(y, v)
    active = np.ones(tau2.shape, dtype=bool)
    for _ in range(REML_MAX_ITER):
        w = 1 / (v + tau2[..., None])
        sw = w.sum(-1)
        mu = (w * y).sum(-1) / sw
        resid = y - mu[..., None]
        tr_p = sw - (w**2).sum(-1) / sw
        ypppy = (w**2 * resid**2).sum(-1)
        tr_pp = (w**2).sum(-1) - 2 * (w**3).sum(-1) / sw + ((w**2).sum(-1) / sw) ** 2
        step = (ypppy - tr_p) / tr_pp
        new = np.maximum(0.0, tau2 + step)
        change = np.abs(new - tau2)
        tau2 = np.where(active, new, tau2)
        active &= change > REML_TOL
        if not active.any():
            break
    return tau2


def pooled(y: np.ndarray, v: np.ndarray, tau2: np.ndarray, hartung_knapp: bool, level: float = 0.95) -> dict:
    """Pooled mean, se, CI, df and p for given tau^2: Hartung-Knapp (t, k - 1 df) or Wald (z)."""
    k = y.shape[-1]
    w = 1 / (v + tau2[..., None])
    sw = w.sum(-1)
    mu = (w * y).sum(-1) / sw
    if hartung_knapp:
        se = np.sqrt((w * (y - mu[..., None]) ** 2).sum(-1) / ((k - 1) * sw))
        df = np.full(mu.shape, k - 1.0)
        crit = stdtrit(df, 0.5 + level / 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = 2 * stdtr(df, -np.abs(mu / se))
    else:
        se = np.sqrt(1 / sw)
        df = np.full(mu.shape, np.inf)
        crit = ndtri(0.5 + level / 2)
        p = 2 * ndtr(-np.abs(mu / se))
    return {
        "estimate": mu,
        "se": se,
        "ci_low": mu - crit * se,
        "ci_high": mu + crit * se,
        "df": df,
        "p_value": p,
        "weights": w / sw[..., None],
    }


def reml_hk(y: np.ndarray, v: np.ndarray) -> dict:
    """REML tau^2 with the Hartung-Knapp CI and p, heterogeneity and the prediction interval."""
    tau2 = tau2_reml(y, v)
    out = pooled(y, v, tau2, hartung_knapp=True)
    het = _heterogeneity(y, v)
    k = y.shape[-1]
    spread = np.sqrt(out["se"] ** 2 + tau2)
    half_k1 = stdtrit(out["df"], 0.975) * spread
    half = stdtrit(np.full(out["df"].shape, k - 2.0), 0.975) * spread if k >= 3 else np.full(spread.shape, np.nan)
    out.update(
        tau2=tau2,
        i2=100 * tau2 / (tau2 + het["typical"]),
        h2=(tau2 + het["typical"]) / het["typical"],
        q=het["q"],
        q_df=het["q_df"],
        q_p=het["q_p"],
        pi_low=out["estimate"] - half,
        pi_high=out["estimate"] + half,
        pi_low_k1=out["estimate"] - half_k1,
        pi_high_k1=out["estimate"] + half_k1,
    )
    return out


def dersimonian_laird(y: np.ndarray, v: np.ndarray) -> dict:
    """DerSimonian-Laird tau^2 with the Wald (z) CI (the classic random-effects analysis)."""
    tau2 = tau2_dl(y, v)
    out = pooled(y, v, tau2, hartung_knapp=False)
    het = _heterogeneity(y, v)
    out.update(
        tau2=tau2,
        i2=100 * tau2 / (tau2 + het["typical"]),
        h2=(tau2 + het["typical"]) / het["typical"],
        q=het["q"],
        q_df=het["q_df"],
        q_p=het["q_p"],
    )
    return out


def leave_one_out(y: np.ndarray, v: np.ndarray) -> list[dict]:
    """The REML / Hartung-Knapp analysis without each study in turn (one dict per left-out study)."""
    k = len(y)
    keep = ~np.eye(k, dtype=bool)
    ys, vs = np.stack([y[m] for m in keep]), np.stack([v[m] for m in keep])
    fits = reml_hk(ys, vs)
    return [{key: value[i] for key, value in fits.items() if key != "weights"} for i in range(k)]


# ----------------------------------------------------------------------------------------------
# Which studies, and their standardized primary contrasts
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyEffect:
    study: str
    score: str
    arm: str
    time: str
    input: str
    n_participants: int
    estimate: float  # score units (per-gene SDs of the study)
    se: float
    ci_low: float
    ci_high: float
    markers: tuple[str, ...] = ()  # leukocyte markers the study's main model adjusted for (none: not adjusted)
    covariates: tuple[str, ...] = ()
    score_sd: float = math.nan  # the SD of the primary score over the study's baseline draws


def study_effect(name: str, effect: dict, arm: str | None, time: str | None) -> StudyEffect:
    """One study's pooled row: its primary row (chosen by arm and time when it has several) on the
    standardized scale. InputError when the study's fit has no usable estimate (a failed study)."""
    from .errors import InputError

    rows = [
        r
        for r in effect["primary_rows"]
        if (arm is None or r["arm"] == arm) and (time is None or r["time"] == time) and r["contrast"] == "arm_x_time"
    ]
    if len(rows) != 1:
        listed = ", ".join(f"{{arm: {r['arm']}, time: {r['time']}}}" for r in effect["primary_rows"]) or "none"
        if not rows:
            raise InputError(
                f"synthesis: study '{name}' has no primary arm x time row for arm {arm}, time {time} (its primary rows: {listed})"
            )
        raise InputError(
            f"synthesis: study '{name}' has {len(rows)} primary rows ({listed}): choose one in synthesis: studies "
            f"as {{study: {name}, arm: ..., time: ...}}"
        )
    row = rows[0]
    values = [row["estimate"], row["se"]]
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in values) or row["se"] <= 0:
        raise InputError(
            f"synthesis: study '{name}' has no usable primary estimate (estimate {row['estimate']}, se {row['se']}): "
            f"its model fit failed; see results/{name}/logs/"
        )
    return StudyEffect(
        study=name,
        score=effect["score"],
        arm=row["arm"],
        time=row["time"],
        input=effect["input"],
        n_participants=int(row["n_participants"]),
        estimate=row["estimate"],
        se=row["se"],
        ci_low=row["ci_low"],
        ci_high=row["ci_high"],
        markers=tuple(effect.get("markers_used", ())),
        covariates=tuple(effect.get("covariates", ())),
        score_sd=float(effect.get("score_sd", math.nan)),
    )


def estimand_notes(effects: list[StudyEffect]) -> list[str]:
    """Where the pooled studies estimate different things: marker adjustment or covariates differ."""
    notes = []
    adjusted = [e.study for e in effects if e.markers]
    plain = [e.study for e in effects if not e.markers]
    if adjusted and plain:
        notes.append(
            "the studies differ in leukocyte-marker adjustment (adjusted: "
            + ", ".join(adjusted)
            + "; not adjusted: "
            + ", ".join(plain)
            + "): the pooled estimate mixes an effect net of cell composition with one that "
            "is not"
        )
    if len({tuple(sorted(e.covariates)) for e in effects}) > 1:
        notes.append("the studies adjust for different covariates (see the study rows)")
    return notes


def meta_table(effects: list[StudyEffect]) -> pd.DataFrame:
    """meta.tsv: one row per study, the pooled REML / Hartung-Knapp row, the DerSimonian-Laird row and
    one leave-one-out row per study (k >= 3)."""
    y = np.array([e.estimate for e in effects])
    v = np.array([e.se for e in effects]) ** 2
    main = reml_hk(y, v)
    dl = dersimonian_laird(y, v)
    k = len(effects)
    score = effects[0].score
    rows = []
    for e, weight in zip(effects, main["weights"]):
        rows.append(
            {
                "analysis": "study",
                "study": e.study,
                "score": e.score,
                "arm": e.arm,
                "time": e.time,
                "input": e.input,
                "n_participants": e.n_participants,
                "k": 1,
                "estimate": e.estimate,
                "se": e.se,
                "ci_low": e.ci_low,
                "ci_high": e.ci_high,
                "weight": 100 * weight,
                "markers": ",".join(e.markers) if e.markers else "none",
                "covariates": ",".join(e.covariates) if e.covariates else "none",
                "score_sd": e.score_sd,
            }
        )
    summary = {"score": score, "n_participants": sum(e.n_participants for e in effects), "k": k}
    scalar = {key: float(value) for key, value in main.items() if key != "weights"}
    wald_se = float(np.sqrt(1 / (1 / (v + main["tau2"])).sum()))
    narrower = scalar["ci_high"] - scalar["ci_low"] < float(dl["ci_high"] - dl["ci_low"])
    notes = []
    if narrower:
        notes.append(
            f"the Hartung-Knapp CI is narrower than the DerSimonian-Laird Wald CI: the studies agree more closely "
            f"than their standard errors imply (Hartung-Knapp se {scalar['se']:.3g}, Wald se {wald_se:.3g})"
        )
    if k < 3:
        notes.append("no prediction interval: it needs 3 or more studies (a t with k - 2 df)")
    notes.extend(estimand_notes(effects))
    note = "; ".join(notes)
    rows.append(
        {"analysis": "random_effects_reml_hk", "study": "pooled", **summary, **scalar, "weight": 100.0, "note": note}
    )
    dl_scalar = {key: float(value) for key, value in dl.items() if key not in ("weights", "p_value", "df")}
    rows.append(
        {
            "analysis": "random_effects_dl",
            "study": "pooled",
            **summary,
            **dl_scalar,
            "weight": 100.0,
            "note": "sensitivity: DerSimonian-Laird tau^2, Wald (z) CI; no p-value (the z test is too liberal "
            "with few studies, see README Calibration)",
        }
    )
    sd = np.array([e.score_sd for e in effects])
    if np.all(np.isfinite(sd) & (sd > 0)):
        scaled = reml_hk(y / sd, v / sd**2)
        rows.append(
            {
                "analysis": "random_effects_reml_hk_baseline_sd",
                "study": "pooled",
                **summary,
                **{
                    key: float(value)
                    for key, value in scaled.items()
                    if key not in ("weights", "p_value", "pi_low_k1", "pi_high_k1")
                },
                "weight": 100.0,
                "note": "sensitivity: each study's effect and se divided by its baseline SD of the score (REML, "
                "Hartung-Knapp); in baseline SD, not score units",
            }
        )
    if k >= 3:
        for e, fit in zip(effects, leave_one_out(y, v)):
            values = {key: float(value) for key, value in fit.items() if key != "p_value"}
            rows.append(
                {
                    "analysis": "leave_one_out",
                    "study": e.study,
                    "score": score,
                    "n_participants": summary["n_participants"] - e.n_participants,
                    "k": k - 1,
                    **values,
                    "note": f"without {e.study}",
                }
            )
    table = pd.DataFrame(rows, columns=META_COLUMNS)
    table["n_participants"] = table["n_participants"].astype("Int64")
    table["k"] = table["k"].astype("Int64")
    table["note"] = table["note"].fillna("")
    return table
