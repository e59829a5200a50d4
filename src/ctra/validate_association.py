"""The sample-sheet checks of an association study (``design: association``), beside ``ctra.validate``.

Messages name the sheet and the column: a design key of trials in an association study (or an
association key in a trial), a primary term that is not a predictor, too few participants, a time
column with missing cells, a design that is not of full rank, and a numeric predictor that the
covariates (and the other predictors, and time) nearly determine, named with its variance inflation
factor and the columns it goes with.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .config import ValidateSettings
from .errors import InputError, ProblemList

TRIAL_KEYS = ("baseline", "control", "arm_levels", "time_levels")
MAX_VIF = 10.0  # a predictor this collinear with the rest of the design is refused
MIN_PARTICIPANTS = 10
MIN_RESIDUAL_DF = 5


def conflicting_keys(settings: ValidateSettings) -> list[str]:
    """The config keys that do not belong to the study's design, as messages."""
    if settings.design != "association":
        given = [k for k in ("predictors", "time", "standardize_predictors") if getattr(settings, k)]
        return [
            f"config: `{key}` is a key of association studies, but this study is a trial (design: trial, "
            "the default); set `design: association` or remove it."
            for key in given
        ]
    out = [
        f"config: `{key}` is a key of trials (arm x time), but this study has `design: association`; "
        "remove it (an association study tests its `predictors`)."
        for key in TRIAL_KEYS
        if getattr(settings, key) is not None
    ]
    if settings.columns.period:
        out.append("config: `columns: period` (crossover trials) does not apply to `design: association`; remove it.")
    if settings.primary_term and settings.primary_term not in settings.predictors:
        out.append(
            f"config: `primary: term: {settings.primary_term}` is not one of the `predictors` "
            f"({', '.join(settings.predictors)})."
        )
    return out


def check_association(
    obs: pd.DataFrame, settings: ValidateSettings, path: Path, problems: ProblemList, check_rank: bool
) -> dict:
    """The association checks of the (typed, complete) sheet; returns the study's levels (time only)."""
    from .design import build_association_design, check_full_rank

    n_before = len(problems.problems)
    for message in conflicting_keys(settings):
        problems.add(message)
    levels: dict[str, list[str]] = {}
    if "time" in obs:
        time = obs["time"].fillna("").astype(str).str.strip()
        numeric = pd.to_numeric(time, errors="coerce")
        obs["time"] = numeric.astype(float) if numeric.notna().all() else time
        levels["time"] = [str(t) for t in dict.fromkeys(time)]
    people = obs["participant"].nunique()
    if people < MIN_PARTICIPANTS:
        problems.add(
            f"{path}: {people} participants; an association study needs at least {MIN_PARTICIPANTS} "
            "(participants are the unit of the test)."
        )
    if not check_rank or len(problems.problems) > n_before:
        return levels
    predictors, covariates = list(settings.predictors), list(dict.fromkeys(settings.covariates))
    design = build_association_design(obs, predictors, covariates, settings.time)
    try:
        check_full_rank(design.X, design.columns, str(path))
    except InputError as err:
        for problem in err.problems:
            problems.add(
                f"{problem} A predictor or covariate that repeats another (or a combination of them) cannot "
                "be estimated: remove or recode it."
            )
        return levels
    residual = len(design.X) - design.X.shape[1]
    if residual < MIN_RESIDUAL_DF:
        problems.add(
            f"{path}: {len(design.X)} samples and {design.X.shape[1]} model columns leave {residual} residual "
            f"df, fewer than {MIN_RESIDUAL_DF}: use fewer covariates or predictors."
        )
    for column, vif, partners in variance_inflation(design):
        if vif > MAX_VIF:
            problems.add(
                f"{path}: predictor column '{column}' is collinear with {', '.join(partners)}: variance "
                f"inflation factor {vif:.1f} (above {MAX_VIF:g}); its estimate would be unstable: remove "
                "or combine the columns it repeats."
            )
    return levels


def variance_inflation(design) -> list[tuple[str, float, list[str]]]:
    """Each predictor column's variance inflation factor against the rest of the design (intercept
    included), and the columns it goes with most (largest |correlation|, at most three)."""
    index = {c: j for j, c in enumerate(design.columns)}
    out = []
    for _, column in design.terms:
        j = index[column]
        others = [k for k in range(design.X.shape[1]) if k != j]
        x, rest = design.X[:, j], design.X[:, others]
        fitted = rest @ np.linalg.lstsq(rest, x, rcond=None)[0]
        centred = x - x.mean()
        r2 = 1 - np.sum((x - fitted) ** 2) / np.sum(centred**2)
        vif = float(1 / max(1 - r2, 1e-12))
        correlations = []
        for k in others[1:]:  # not the intercept
            other = design.X[:, k] - design.X[:, k].mean()
            denominator = np.sqrt(np.sum(other**2) * np.sum(centred**2))
            correlations.append((abs(float(other @ centred / denominator)) if denominator else 0.0, design.columns[k]))
        partners = [f"'{name}' (|r| {r:.2f})" for r, name in sorted(correlations, reverse=True)[:3]]
        out.append((column, vif, partners or ["the intercept"]))
    return out
