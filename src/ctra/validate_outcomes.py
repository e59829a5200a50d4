"""Checks of the trial keys ``outcomes``, ``dose`` and ``mediation`` against the config and the sample sheet.

``ctra.validate`` calls these while it builds the sample table: ``sheet_roles`` names the extra sheet
columns a study reads (so a missing one is reported with the design columns), ``config_problems`` the key
combinations that cannot work, and ``type_outcomes`` types the columns and records what it did.

* An outcome is numeric (a questionnaire scale): a cell that is not a number is an error naming the rows;
  an empty or NA cell is a draw without that outcome: its rows are left out of that outcome's analyses only,
  said in the log and the report (``outcome_notes``), never an error (questionnaires do go missing).
* The dose is one number per participant (acts completed, sessions attended): a participant with two
  different values is an error; a missing dose in an active arm leaves that participant out of the dose model
  (said); control participants need none (the dose model is fitted within the active arms).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .config import ValidateSettings
from .genesets import SCORE_NAMES

MISSING = ("", "NA")


def sheet_roles(settings: ValidateSettings) -> list[tuple[str, str]]:
    """(sheet column, role) of every outcome and the dose column, in config order."""
    roles = [(name, "outcome") for name in dict.fromkeys(settings.outcomes)]
    if settings.dose:
        roles.append((settings.dose, "dose"))
    return roles


def config_problems(settings: ValidateSettings, design_columns: dict[str, str]) -> list[str]:
    """Key combinations that cannot work, one message each (``design_columns``: role -> sheet column)."""
    problems = []
    outcomes, covariates, dose = settings.outcomes, set(settings.covariates), settings.dose
    if settings.mediation and not outcomes:
        problems.append(
            "config: `mediation` is set but `outcomes` is not; mediation needs the outcome columns whose change "
            "may carry the arm effect (e.g. `outcomes: [wellbeing]`), or remove `mediation`."
        )
    if settings.mediation and settings.control is None:
        problems.append(
            "config: `mediation` needs a `control` arm (the effect it decomposes is an arm's change against "
            "control's); remove `mediation` for a single-arm study."
        )
    if design_columns.get("period"):
        for key, given in (("mediation", settings.mediation), ("dose", dose is not None)):
            if given:
                problems.append(
                    f"config: `{key}` is for parallel-arm trials; this study is a crossover (`columns: period`), "
                    f"where every participant is in every arm: remove `{key}`."
                )
    by_column = {name: role for role, name in design_columns.items()}
    for name, role in sheet_roles(settings):
        if name in by_column:
            problems.append(
                f"config: {role} column '{name}' is the study's {by_column[name]} column; give the {role} its own "
                "sheet column."
            )
        elif name in covariates:
            problems.append(
                f"config: '{name}' is listed both as a covariate and as the {role}; an outcome or dose is "
                "modelled by itself: remove it from `covariates`."
            )
        elif name in SCORE_NAMES:
            problems.append(
                f"config: {role} column '{name}' has the name of a CTRA score; rename the sheet column (and "
                f"`{'outcomes' if role == 'outcome' else 'dose'}`) so tables stay unambiguous."
            )
    if dose and dose in outcomes:
        problems.append(f"config: '{dose}' is listed both in `outcomes` and as `dose`; it can be one of them.")
    return problems


def _numbers(obs: pd.DataFrame, name: str) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(values as float, present mask, not-a-number-but-present mask) of one sheet column."""
    text = obs[name].fillna("").astype(str).str.strip()
    present = ~text.isin(MISSING)
    values = pd.to_numeric(text.where(present), errors="coerce")
    return values.astype(float), present, present & values.isna()


def type_outcomes(
    obs: pd.DataFrame, settings: ValidateSettings, levels: dict[str, list[str]], path: Path, rows, add
) -> tuple[pd.DataFrame, list[str]]:
    """Outcome and dose columns as floats (NaN: missing), and the notes for the log and the report.

    ``levels`` are the study's arm and time levels (control and baseline first), ``rows(mask)`` describes sheet
    rows of a mask, ``add(message)`` records a problem.
    """
    control = settings.control
    notes = []
    for name in dict.fromkeys(settings.outcomes):
        values, present, bad = _numbers(obs, name)
        if bad.any():
            add(
                f"{path}: outcome '{name}' is not numeric on {rows(bad)} (e.g. '{obs.loc[bad, name].iloc[0]}'); an "
                "outcome is a number per draw (a scale score); leave a cell empty where it was not measured."
            )
            continue
        if not present.any():
            add(f"{path}: outcome '{name}' is empty for every sample; fill it in or remove it from `outcomes`.")
            continue
        if values[present].nunique() < 2:
            add(f"{path}: outcome '{name}' has the same value for every sample; it cannot be modelled.")
            continue
        cells = obs[present].groupby([obs["arm"].astype(str), obs["time"].astype(str)]).size()
        empty = [f"{arm} at {time}" for arm in levels["arm"] for time in levels["time"] if (arm, time) not in cells]
        if empty:
            add(
                f"{path}: outcome '{name}' has no value for {', '.join(empty[:4])}{' ...' if len(empty) > 4 else ''}; "
                "its arm x time model needs it in every arm at every time (measure it there, or remove it from "
                "`outcomes`)."
            )
            continue
        obs[name] = values
        missing = int((~present).sum())
        if missing:
            notes.append(
                f"outcome '{name}': missing at {missing} of {len(obs)} draws ({rows(~present)}); those draws are "
                f"left out of the analyses of '{name}' only ({int(present.sum())} draws used)."
            )
    dose = settings.dose
    if dose:
        values, present, bad = _numbers(obs, dose)
        if bad.any():
            add(
                f"{path}: dose column '{dose}' is not numeric on {rows(bad)} (e.g. '{obs.loc[bad, dose].iloc[0]}'); "
                "write one number per participant (leave it empty where unknown)."
            )
            return obs, notes
        spread = values.groupby(obs["participant"]).agg(lambda v: v.dropna().nunique())
        varying = spread[spread > 1].index.astype(str).tolist()
        if varying:
            add(
                f"{path}: dose column '{dose}' differs between the draws of participant(s) "
                f"{', '.join(repr(p) for p in varying[:5])}{' ...' if len(varying) > 5 else ''} "
                f"({rows(obs['participant'].astype(str).isin(varying))}); the dose is one value per participant."
            )
            return obs, notes
        per_person = values.groupby(obs["participant"]).transform(
            lambda v: v.dropna().iloc[0] if v.notna().any() else np.nan
        )
        active = obs["arm"].astype(str) != str(control) if control is not None else pd.Series(True, index=obs.index)
        if per_person[active].dropna().nunique() < 2:
            add(
                f"{path}: dose column '{dose}' has fewer than two distinct values among the active arms' "
                "participants; its moderation cannot be estimated: remove `dose`."
            )
            return obs, notes
        obs[dose] = per_person
        lacking = sorted(set(obs.loc[active & per_person.isna(), "participant"].astype(str)))
        if lacking:
            notes.append(
                f"dose '{dose}': missing for {len(lacking)} participant(s) of the active arms; they are left out of "
                "the dose model."
            )
    return obs, notes
