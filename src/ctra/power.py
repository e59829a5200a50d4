"""Power and sample size for the next trial, from the fitted main model of this one.

The planned trial has ``arms`` arms (control included) of ``n`` participants each, the fitted study's time
points and its pattern of missed draws (the share of participants with each set of attended draws), and is
analysed by the same random-intercept model. With the fitted residual variance sigma^2 and participant
variance sigma_u^2 (gamma = sigma_u^2 / sigma^2), a participant of pattern p (m attended draws, selection
S_p) carries information S_p' V_p^-1 S_p about its arm's time means, V_p^-1 = (I - gamma / (1 + m gamma) J)
/ sigma^2. Averaged over the patterns this is I_1 per participant, so an arm of n carries n I_1 and the GLS
arm x time contrast c = (e_t - e_0) of the active arm minus control's has

    Var(n) = 2 c' I_1^-1 c / n           (a change within one arm: c' I_1^-1 c / n)

exactly for known variance components and a balanced design whose pattern counts are n times the shares.
Power is that of the two-sided t test with the design's within-participant df,

    df(n) = arms * n * sum_p share_p (m_p - 1) - arms (T - 1) - q_within,

(q_within: the fixed effects that vary within participant, such as the leukocyte markers while ``auto`` keeps
them at that n; where it leaves them out, sigma^2 and gamma are those of the main model refitted without the
markers, ``sigma2_no_markers`` and ``gamma_no_markers`` of primary_effect.json), under a
non-central t with non-centrality delta / sqrt(Var(n)): exact for complete balanced data; otherwise checked
against Monte-Carlo fits of whole simulated cohorts through ctra's own REML and Satterthwaite code
(``simulate_power``; tests/test_power.py). Two effect scales: *score units* (the score is a mean of per-gene
z-scores; every estimate, the observed effect and its CI bound included, is in them) and *baseline SD*: the SD
(ddof 1) of the primary score over the participants' baseline draws (``score_sd`` of primary_effect.json, one
draw per participant at the first time point). The user's planning effects (``power.effects``) are in baseline
SD and are multiplied by ``score_sd`` into score units before the power is computed; power.tsv carries both
(``effect``: score units, ``effect_baseline_sd``). Everything is a closed form in n, so a grid of 10,000
participants per arm is one vectorised call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

ANALYTIC = "analytic"
MONTE_CARLO = "monte_carlo"
LABELS = {
    "observed": "observed effect",
    "ci_bound": "95 % CI bound nearer zero",
    "user": "planning effect",
}
POWER_COLUMNS = (
    "kind",
    "effect_label",
    "arm",
    "time",
    "effect",
    "effect_baseline_sd",
    "target",
    "per_arm",
    "enrolled_per_arm",
    "power",
    "df",
    "alpha",
    "attrition",
    "planned_arms",
    "method",
    "note",
)


@dataclass(frozen=True)
class PlannedDesign:
    """What the power of a planned trial depends on, besides n: taken from the fitted study."""

    times: tuple[str, ...]
    patterns: tuple[tuple[int, ...], ...]  # each a tuple of attended time indices
    shares: tuple[float, ...]  # share of participants with each pattern (sums to 1)
    gamma: float  # participant variance / residual variance
    sigma2: float  # residual variance (score units^2)
    q_within: int  # fixed effects varying within participant besides time, arm x time and the markers
    markers: int  # leukocyte marker columns of the fitted model
    marker_rule: bool | str  # adjust_for_cell_markers: true, false or "auto"
    p_between: int  # participant-level fixed effects besides arm (intercept, covariates)
    arms: int  # arms of the planned trial, control included (1: a single-arm study)
    # the variance components of the main model refitted without the markers: used at every n where the planned
    # model leaves them out (``auto`` below its residual-df threshold); None: the same as gamma and sigma2
    gamma_no_markers: float | None = None
    sigma2_no_markers: float | None = None

    @classmethod
    def from_effect(cls, effect: dict, arms: int) -> PlannedDesign:
        return cls(
            times=tuple(effect["times"]),
            patterns=tuple(tuple(p) for p in effect["patterns"]),
            shares=tuple(effect["pattern_shares"]),
            gamma=float(effect["gamma"]),
            sigma2=float(effect["sigma2"]),
            q_within=int(effect["q_within"]),
            markers=len(effect["markers_used"]),
            marker_rule=effect["marker_rule"],
            p_between=int(effect["p_between"]),
            arms=arms,
            gamma_no_markers=_optional(effect.get("gamma_no_markers")),
            sigma2_no_markers=_optional(effect.get("sigma2_no_markers")),
        )

    def without_markers(self) -> PlannedDesign:
        """The same design with the variance components of the model without markers (itself when not recorded)."""
        if self.sigma2_no_markers is None or self.gamma_no_markers is None:
            return self
        return replace(self, gamma=self.gamma_no_markers, sigma2=self.sigma2_no_markers)


def _optional(value) -> float | None:
    return None if value is None else float(value)


def information_per_participant(design: PlannedDesign) -> np.ndarray:
    """I_1 (T x T, in units of 1 / sigma^2): the expected GLS information about one arm's time means."""
    T = len(design.times)
    info = np.zeros((T, T))
    for pattern, share in zip(design.patterns, design.shares):
        m = len(pattern)
        block = np.eye(m) - design.gamma / (1 + m * design.gamma) * np.ones((m, m))
        index = np.asarray(pattern)
        info[np.ix_(index, index)] += share * block
    return info


def unit_variance(design: PlannedDesign, time: str) -> float:
    """Var(contrast) x n / sigma^2 at ``time``: arm x time (arms >= 2) or the change (arms = 1)."""
    c = np.zeros(len(design.times))
    c[0], c[design.times.index(time)] = -1.0, 1.0
    info = information_per_participant(design)
    if np.linalg.matrix_rank(info) < len(c):
        return math.inf
    per_arm = float(c @ np.linalg.solve(info, c))
    return per_arm * (2 if design.arms > 1 else 1)


def markers_kept(design: PlannedDesign, per_arm: np.ndarray) -> np.ndarray:
    """Whether the planned trial's model keeps the markers: ``adjust_for_cell_markers`` as fitted, with ``auto``
    applied to the planned trial (at least ``MIN_MARKER_RESIDUAL_DF`` residual df with them, as the model does)."""
    from .design import MIN_MARKER_RESIDUAL_DF

    per_arm = np.asarray(per_arm, dtype=float)
    if design.markers == 0 or design.marker_rule is False:
        return np.zeros(per_arm.shape, dtype=bool)
    if design.marker_rule is True:
        return np.ones(per_arm.shape, dtype=bool)
    draws = sum(share * len(p) for p, share in zip(design.patterns, design.shares))
    columns = design.arms * len(design.times) + design.p_between - 1 + design.q_within  # intercept is in arms x T
    return design.arms * per_arm * draws - columns - design.markers >= MIN_MARKER_RESIDUAL_DF


def design_df(design: PlannedDesign, per_arm: np.ndarray) -> np.ndarray:
    """The planned design's within-participant residual df for ``per_arm`` participants per arm."""
    per_arm = np.asarray(per_arm, dtype=float)
    within = sum(share * (len(p) - 1) for p, share in zip(design.patterns, design.shares))
    T = len(design.times)
    q = design.q_within + design.markers * markers_kept(design, per_arm)
    return design.arms * per_arm * within - design.arms * (T - 1) - q


def power(design: PlannedDesign, time: str, effect_sd: np.ndarray, per_arm: np.ndarray, alpha: float) -> np.ndarray:
    """Power of the two-sided level-``alpha`` test for effects (score units) x participants per arm
    (broadcast against each other). NaN where the design has no residual df."""
    # scipy.special, not scipy.stats (whose import alone takes about a second): the same Boost functions
    from scipy.special import nctdtr, stdtrit

    effect_sd, per_arm = np.broadcast_arrays(np.abs(np.asarray(effect_sd, float)), np.asarray(per_arm, float))
    df = design_df(design, per_arm)
    # where the planned model leaves the markers out, the variance components are those fitted without them
    plain = design.without_markers()
    kept = markers_kept(design, per_arm) | (design.markers == 0)
    variance = np.where(kept, design.sigma2 * unit_variance(design, time), plain.sigma2 * unit_variance(plain, time))
    se = np.sqrt(variance / per_arm)
    noncentrality = effect_sd / se
    out = np.full(df.shape, np.nan)
    ok = df >= 1
    crit = stdtrit(df[ok], 1 - alpha / 2)
    nc = noncentrality[ok]
    upper, lower = 1 - nctdtr(df[ok], nc, crit), nctdtr(df[ok], nc, -crit)
    # scipy's non-central t cdf returns NaN for some far tails (below 1e-10 once nc > ~8, which makes the upper tail
    # NaN once nc > ~35): 0 and 1 there
    far = nc > 8
    out[ok] = np.where(np.isnan(upper) & far, 1.0, upper) + np.where(np.isnan(lower) & far, 0.0, lower)
    return np.clip(out, 0.0, 1.0)


def sample_size(
    design: PlannedDesign, time: str, effect_sd: float, target: float, alpha: float, max_per_arm: int
) -> tuple[int | None, float]:
    """Smallest participants per arm (2..max_per_arm) with power >= target, and its power; (None, nan)
    when not reached (a zero effect never is). Power rises with n, so one vectorised pass finds it."""
    if not effect_sd or not np.isfinite(effect_sd):
        return None, math.nan
    n = np.arange(2, max_per_arm + 1)
    values = power(design, time, effect_sd, n, alpha)
    reached = np.flatnonzero(np.nan_to_num(values, nan=0.0) >= target)
    if len(reached) == 0:
        return None, math.nan
    return int(n[reached[0]]), float(values[reached[0]])


def without_markers_note(design: PlannedDesign, per_arm: int) -> str:
    """A sample size at which ``auto`` leaves the markers out of the planned model says whose variance it used."""
    if design.markers == 0 or bool(markers_kept(design, np.array([per_arm]))[0]):
        return ""
    if design.sigma2_no_markers is None:
        return (
            "the planned model leaves the markers out at this n, but the fit without them was not recorded: "
            "the variance components with markers may be optimistic"
        )
    return "the planned model leaves the markers out at this n: variance components of the fit without markers"


def curve_grid(max_per_arm: int) -> np.ndarray:
    """Participants per arm shown in the curves: every n to 50, then by 5 to 200, 25 to 1000, 100 beyond."""
    parts = [np.arange(2, 51), np.arange(55, 201, 5), np.arange(225, 1001, 25), np.arange(1100, max_per_arm + 1, 100)]
    grid = np.concatenate(parts)
    return np.unique(np.append(grid[grid <= max_per_arm], max_per_arm))


def enrolled(per_arm: int, attrition: float) -> int:
    """Participants to enrol per arm so that ``per_arm`` remain after losing a share ``attrition``."""
    return math.ceil(per_arm / (1 - attrition) - 1e-9)


def planning_effects(effect: dict, user_effects: list[float]) -> list[dict]:
    """The effects to plan for, in score units (``effect``) and in baseline SD (``effect_baseline_sd``): each
    primary row's observed effect and its CI bound nearer zero (a magnitude; zero when the CI covers zero),
    then the user's effects (given in baseline SD, times ``score_sd`` in score units) at each follow-up time."""
    score_sd = float(effect.get("score_sd", math.nan))
    if not (np.isfinite(score_sd) and score_sd > 0):
        raise ValueError(
            f"the baseline SD of the primary score is {score_sd}: the planning effects (in baseline SD) "
            "cannot be put in score units"
        )
    rows = []
    for row in effect["primary_rows"]:
        estimate, low, high = row["estimate"], row["ci_low"], row["ci_high"]
        bound = 0.0 if (low <= 0 <= high) else min(abs(low), abs(high))
        rows.append({"effect_label": "observed", "arm": row["arm"], "time": row["time"], "effect": estimate})
        rows.append(
            {
                "effect_label": "ci_bound",
                "arm": row["arm"],
                "time": row["time"],
                "effect": math.copysign(bound, estimate),
            }
        )
    times = list(dict.fromkeys(row["time"] for row in effect["primary_rows"])) or list(effect["times"][1:])
    for time in times:
        for value in user_effects:
            rows.append({"effect_label": "user", "arm": "", "time": time, "effect": float(value) * score_sd})
    for row in rows:
        row["effect_baseline_sd"] = row["effect"] / score_sd
    return rows


def power_table(effect: dict, settings) -> pd.DataFrame:
    """power.tsv: power curves (``kind = curve``) and participants per arm for each target
    (``kind = sample_size``) for every planning effect. ``settings``: ``ctra.config.PowerSettings``."""
    if effect.get("unsupported"):
        return pd.DataFrame(columns=POWER_COLUMNS)
    design = PlannedDesign.from_effect(effect, settings.arms if effect["has_control"] else 1)
    grid = curve_grid(settings.max_per_arm)
    rows = []
    for plan in planning_effects(effect, list(settings.effects)):
        common = {
            **plan,
            "alpha": settings.alpha,
            "attrition": settings.attrition,
            "planned_arms": design.arms,
            "method": ANALYTIC,
        }
        for target in settings.targets:
            n, achieved = sample_size(
                design, plan["time"], plan["effect"], target, settings.alpha, settings.max_per_arm
            )
            note = (
                without_markers_note(design, n)
                if n
                else (
                    "the CI covers zero: no sample size has this power"
                    if plan["effect"] == 0
                    else f"not reached within max_per_arm {settings.max_per_arm}"
                )
            )
            rows.append(
                {
                    **common,
                    "kind": "sample_size",
                    "target": target,
                    "per_arm": n,
                    "enrolled_per_arm": enrolled(n, settings.attrition) if n else None,
                    "power": achieved,
                    "df": float(design_df(design, n)) if n else math.nan,
                    "note": note,
                }
            )
        values = power(design, plan["time"], plan["effect"], grid, settings.alpha)
        for n, value in zip(grid, values):
            rows.append(
                {
                    **common,
                    "kind": "curve",
                    "target": math.nan,
                    "per_arm": int(n),
                    "enrolled_per_arm": enrolled(int(n), settings.attrition),
                    "power": value,
                    "df": float(design_df(design, n)),
                    "note": "",
                }
            )
    table = pd.DataFrame(rows, columns=POWER_COLUMNS)
    table["per_arm"] = table["per_arm"].astype("Int64")
    table["enrolled_per_arm"] = table["enrolled_per_arm"].astype("Int64")
    return table


# ----------------------------------------------------------------------------------------------
# The fitted study's summary the planning starts from (work/primary_effect.json)
# ----------------------------------------------------------------------------------------------


def primary_effect(
    adata, scores: pd.DataFrame, usage: pd.DataFrame, contrasts: pd.DataFrame, model_info: dict, settings
) -> dict:
    """Everything power and synthesis need from one fitted study, for its primary score: the primary rows
    (estimate, se, CI, df, p, participants), the REML variance components of the main model refitted on the
    primary score (the same fit as the model stage's), the baseline SD of the score (the effect unit), the
    pattern of attended draws and the fixed effects that vary within participant. ``settings``:
    ``ctra.config.EffectSettings``."""
    from .models.mixed import fit_reml
    from .design import study_design

    endpoint = model_info["primary"]
    score = endpoint["score"]
    times = [str(t) for t in model_info["levels"]["time"]]
    arms = [str(a) for a in model_info["levels"]["arm"]]
    has_control = len(arms) > 1
    ordered = scores.set_index("sample").loc[adata.obs_names]
    design, markers = study_design(adata, usage, settings.design)
    fit = fit_reml(design, ordered[score].to_numpy(float))
    # without the markers (the planned model at any n where ``auto`` leaves them out): its own variance components
    plain_fit = fit
    if markers:
        plain_design, _ = study_design(adata, usage, settings.design, markers=False)
        plain_fit = fit_reml(plain_design, ordered[score].to_numpy(float))
    # the model stage's rows (work/model_contrasts.tsv): the main model's rows of the primary score and contrast
    # are contrasts.tsv's primary rows (robustness adds columns, not estimates), so this runs beside the null draws
    main = contrasts[
        (contrasts["model"] == "lmm") & (contrasts["score"] == score) & (contrasts["contrast"] == endpoint["contrast"])
    ]
    primary_rows = [
        {
            key: (str(row[key]) if key in ("arm", "time", "contrast") else float(row[key]))
            for key in (
                "contrast",
                "arm",
                "time",
                "estimate",
                "se",
                "ci_low",
                "ci_high",
                "df",
                "p_value",
                "n_participants",
            )
        }
        for _, row in main.iterrows()
    ]
    baseline = ordered[ordered["time"].astype(str) == times[0]][score].to_numpy(float)
    attended = ordered.assign(t=ordered["time"].astype(str).map({t: i for i, t in enumerate(times)}))
    per_person = attended.groupby(attended["participant"].astype(str))["t"].apply(lambda s: tuple(sorted(set(s))))
    counts = per_person.value_counts()
    patterns = sorted(counts.index, key=lambda p: (-len(p), p))
    n_people = int(counts.sum())
    participant_level = [
        j
        for j, column in enumerate(design.columns)
        if np.all(pd.Series(design.X[:, j]).groupby(design.participant).nunique().to_numpy() == 1)
    ]
    interaction_or_time = [j for j, c in enumerate(design.columns) if c.startswith("time[") or ":time[" in c]
    q_within = design.X.shape[1] - len(participant_level) - len(interaction_or_time) - len(markers)
    p_between = len(participant_level) - (len(arms) - 1)
    component_variances = [float(v) for v in fit.component_variances]
    unsupported = "" if len(design.components) == 1 else "crossover designs: power is planned for parallel designs only"
    return {
        "score": score,
        "contrast": endpoint["contrast"],
        "has_control": has_control,
        "arms": arms,
        "times": times,
        "input": settings.input,
        "markers_used": list(markers),
        "covariates": list(settings.design.covariates),
        "sigma2": float(fit.sigma2),
        "sigma2_participant": component_variances[0],
        "gamma": component_variances[0] / float(fit.sigma2) if fit.sigma2 > 0 else 0.0,
        "sigma2_no_markers": float(plain_fit.sigma2),
        "gamma_no_markers": (
            float(plain_fit.component_variances[0]) / float(plain_fit.sigma2) if plain_fit.sigma2 > 0 else 0.0
        ),
        "score_sd": float(np.std(baseline, ddof=1)) if len(baseline) > 1 else math.nan,
        "n_baseline": int(len(baseline)),
        "patterns": [list(p) for p in patterns],
        "pattern_shares": [float(counts[p] / n_people) for p in patterns],
        "n_participants": n_people,
        "q_within": int(q_within),
        "p_between": int(p_between),
        "marker_rule": settings.design.adjust_for_cell_markers,
        "primary_rows": primary_rows,
        "unsupported": unsupported,
    }


# ----------------------------------------------------------------------------------------------
# Monte-Carlo check: whole cohorts through ctra's REML fit and Satterthwaite test
# ----------------------------------------------------------------------------------------------


def planned_sheet(design: PlannedDesign, per_arm: int) -> pd.DataFrame:
    """The planned cohort's draws: ``per_arm`` participants in each arm, the patterns allotted in each arm
    by largest remainder (so the shares are met as closely as n allows, identically in every arm)."""
    raw = np.asarray(design.shares) * per_arm
    counts = np.floor(raw).astype(int)
    counts[np.argsort(-(raw - counts), kind="stable")[: per_arm - counts.sum()]] += 1
    rows = []
    arms = ["control", *[f"arm{k}" for k in range(1, design.arms)]] if design.arms > 1 else ["arm0"]
    for arm in arms:
        person = 0
        for pattern, count in zip(design.patterns, counts):
            for _ in range(count):
                person += 1
                for t in pattern:
                    rows.append({"participant": f"{arm}_{person:05d}", "arm": arm, "time": design.times[t]})
    return pd.DataFrame(rows)


def simulate_power(
    design: PlannedDesign, time: str, effect_sd: float, per_arm: int, alpha: float, cohorts: int, seed: int
) -> tuple[float, float, float]:
    """Share of ``cohorts`` seeded cohorts (scores from the fitted variance components, the active arm moved
    by ``effect_sd`` score SDs at ``time``) in which ctra's REML fit with Satterthwaite df rejects at
    ``alpha``, with its exact 95 % (Clopper-Pearson) interval."""
    from scipy import stats

    from .models.mixed import contrast_specs, contrast_table, fit_reml_many
    from .design import build_design

    sheet = planned_sheet(design, per_arm)
    arms = list(dict.fromkeys(sheet["arm"]))
    fixed = build_design(sheet, {"arm": arms, "time": list(design.times)}, [])
    rng = np.random.default_rng(seed)
    n_people = fixed.participant.max() + 1
    sigma = math.sqrt(design.sigma2)
    u = rng.normal(0, sigma * math.sqrt(design.gamma), (n_people, cohorts))[fixed.participant]
    y = u + rng.normal(0, sigma, (len(sheet), cohorts))
    active = arms[-1]
    moved = ((sheet["arm"] == active) & (sheet["time"] == time)).to_numpy()
    y[moved] += effect_sd
    specs = [
        s
        for s in contrast_specs(fixed)
        if s.arm == active and s.time == time and s.contrast == ("arm_x_time" if design.arms > 1 else "change")
    ]
    rejections = 0
    for fit in fit_reml_many(fixed, y):
        rejections += int(contrast_table(fit, fixed, specs)["p_value"].iloc[0] < alpha)
    low = stats.beta.ppf(0.025, rejections, cohorts - rejections + 1) if rejections else 0.0
    high = stats.beta.ppf(0.975, rejections + 1, cohorts - rejections) if rejections < cohorts else 1.0
    return rejections / cohorts, float(low), float(high)
