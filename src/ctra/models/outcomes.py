"""Psychological outcomes and dose in a trial: the rows ``outcomes:`` and ``dose:`` add to contrasts.tsv.

Three analyses, each on the main model's machinery (``ctra.models.mixed``: REML, Satterthwaite df):

* **The outcome's own arm x time model** (``score`` = the outcome): ``outcome ~ arm * time + covariates +
  (1 | participant)`` on the draws where the outcome was measured, the same contrasts as the scores. The
  leukocyte markers are *not* in it: they adjust a blood measure for leukocyte composition, which has no
  bearing on a questionnaire score (adjusting for them would only spend df, and condition on a possible
  consequence of the arm).
* **Within- and between-person association** of each score with each outcome (``contrast`` =
  ``within_person`` / ``between_person``, ``term`` = the outcome): the outcome split into its person mean
  (between, centred on the grand mean) and the draw's deviation from it (within, person-mean centred),
  ``score ~ arm * time + covariates [+ markers] + within + between + (1 | participant)``. The within slope
  is the change in the score per unit change of the outcome in the same person, net of the arm x time
  means (so the intervention's average effect does not show up as an association); the between slope
  compares people (confoundable by anything stable about a person).
* **Dose**: moderation of the change within the active arms (non-randomised, exploratory) (``contrast`` = ``dose_x_time``, ``term`` = the dose column): within the
  active arms only, ``score ~ arm * time + covariates [+ markers] + dose + dose:time + (1 | participant)``;
  ``dose:time`` is the extra change from baseline per unit of dose (pooled over the active arms). Dose is
  not randomised: this is an association (people who do more may differ), never an effect of the dose, and not a
  moderation of the arm effect (control participants have no dose).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import OutcomeSettings
from ..errors import InputError
from .mixed import ContrastSpec, contrast_rows, contrast_specs, contrast_table, fit_reml_many, satterthwaite_df, SCORES
from ..design import Design, build_design, check_full_rank, marker_decision, time_column, MIN_MARKER_RESIDUAL_DF

MAIN_MODEL = "lmm"
ROLE = "exploratory"
NO_RESAMPLING = "; no permutation / random-gene-set / leave-one-out for outcome rows (their columns stay empty)"
MODERATION = "moderation of the change within the active arms (non-randomised, exploratory)"  # the dose rows


def _design(obs: pd.DataFrame, levels: dict, covariates: list[str], extra: pd.DataFrame | None, source: str) -> Design:
    design = build_design(obs, levels, covariates, extra)
    try:
        check_full_rank(design.X, design.columns, source)
    except InputError as error:
        raise InputError([f"{p} (in the outcome / dose models)" for p in error.problems]) from None
    return design


def _marker_frame(adata, markers: list[str], mask: np.ndarray) -> pd.DataFrame | None:
    if not markers:
        return None
    values = np.asarray(adata[:, markers].layers["vst"], dtype=float)[mask]
    return pd.DataFrame(values, columns=markers, index=adata.obs_names[mask])


def _score_names(scores: pd.DataFrame) -> list[str]:
    return [s for s in SCORES if s in scores and not scores[s].isna().all()]


def outcome_models(adata, settings: OutcomeSettings) -> pd.DataFrame:
    """Each outcome's own arm x time model (no markers), on the draws where it was measured."""
    obs, levels = adata.obs, adata.uns["levels"]
    tables = []
    for outcome in settings.outcomes:
        observed = obs[outcome].notna().to_numpy()
        sub = obs[observed]
        design = _design(sub, levels, list(settings.design.covariates), None, settings.design.source)
        fit = fit_reml_many(design, sub[[outcome]].to_numpy(float))[0]
        table = contrast_table(fit, design, contrast_specs(design))
        table.insert(0, "score", outcome)
        table.insert(1, "model", MAIN_MODEL)
        note = "psychological outcome: its own arm x time model, covariates but no leukocyte markers"
        if not observed.all():
            note += f"; {int(observed.sum())} of {len(obs)} draws with the outcome"
        table["note"] = note
        tables.append(table)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def person_centred(values: pd.Series, participant: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(within, between): the draw's deviation from its person's mean, and the person's mean minus the mean
    of the person means (each person counts once)."""
    means = values.groupby(participant, sort=True).transform("mean")
    grand = values.groupby(participant, sort=True).mean().mean()
    return (values - means).to_numpy(float), (means - grand).to_numpy(float)


def within_between(adata, scores: pd.DataFrame, usage: pd.DataFrame, settings: OutcomeSettings) -> pd.DataFrame:
    """Within- and between-person slopes of each score on each outcome (main design, markers as the main model)."""
    obs, levels = adata.obs, adata.uns["levels"]
    markers = marker_decision(adata, usage, settings.design)[0]
    names = _score_names(scores)
    tables = []
    for outcome in settings.outcomes:
        observed = obs[outcome].notna().to_numpy()
        sub = obs[observed]
        within, between = person_centred(sub[outcome], sub["participant"])
        extra = pd.DataFrame({f"{outcome}_within": within, f"{outcome}_between": between}, index=sub.index)
        marker_frame = _marker_frame(adata, markers, observed)
        if marker_frame is not None:
            extra = pd.concat([marker_frame, extra], axis=1)
        design = _design(sub, levels, list(settings.design.covariates), extra, settings.design.source)
        index = {c: i for i, c in enumerate(design.columns)}
        specs = []
        for kind in ("within", "between"):
            vector = np.zeros(len(design.columns))
            vector[index[f"{outcome}_{kind}"]] = 1.0
            specs.append(ContrastSpec(f"{kind}_person", "", "", vector, np.ones(len(sub), dtype=bool)))
        L = np.array([s.vector for s in specs])
        fits = fit_reml_many(design, scores.loc[sub.index, names].to_numpy(float))
        for score, fit in zip(names, fits):
            table = contrast_rows(
                design,
                specs,
                L @ fit.beta,
                np.sqrt(np.einsum("cp,pq,cq->c", L, fit.cov_beta, L)),
                satterthwaite_df(fit, L),
            )
            table.insert(0, "score", score)
            table.insert(1, "model", MAIN_MODEL)
            table.insert(table.columns.get_loc("time") + 1, "term", outcome)
            table["note"] = (
                f"per unit of '{outcome}': within = the draw's deviation from the person's mean, between = the "
                "person's mean; net of arm x time"
                + ("" if observed.all() else f"; {int(observed.sum())} of {len(obs)} draws")
            )
            tables.append(table)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def dose_moderation(adata, scores: pd.DataFrame, usage: pd.DataFrame, settings: OutcomeSettings) -> pd.DataFrame:
    """The dose's moderation of the change within the active arms (non-randomised, exploratory): the change from baseline per unit of dose."""
    dose = settings.dose
    if not dose:
        return pd.DataFrame()
    obs, levels = adata.obs, adata.uns["levels"]
    arms = levels["arm"][1:] if len(levels["arm"]) > 1 else levels["arm"]  # the active arms (single-arm: all)
    times = levels["time"]
    mask = (obs["arm"].astype(str).isin(arms) & obs[dose].notna()).to_numpy()
    sub = obs[mask]
    centred = sub[dose].to_numpy(float) - sub[dose].mean()
    extra = {dose: centred}
    for time in times[1:]:
        extra[f"{dose}:{time_column(time)}"] = centred * (sub["time"].astype(str) == time).to_numpy(float)
    extra = pd.DataFrame(extra, index=sub.index)
    markers = marker_decision(adata, usage, settings.design)[0]
    sub_levels = {"arm": list(arms), "time": list(times)}
    if markers:
        without = build_design(sub, sub_levels, list(settings.design.covariates), extra)
        residual = len(sub) - without.X.shape[1] - len(markers)
        if settings.design.adjust_for_cell_markers == "auto" and residual < MIN_MARKER_RESIDUAL_DF:
            markers = []
    marker_frame = _marker_frame(adata, markers, mask)
    if marker_frame is not None:
        extra = pd.concat([marker_frame, extra], axis=1)
    design = _design(sub, sub_levels, list(settings.design.covariates), extra, settings.design.source)
    index = {c: i for i, c in enumerate(design.columns)}
    specs = []
    for time in times[1:]:
        vector = np.zeros(len(design.columns))
        vector[index[f"{dose}:{time_column(time)}"]] = 1.0
        involved = sub["time"].astype(str).isin([times[0], time]).to_numpy()
        specs.append(ContrastSpec("dose_x_time", ";".join(arms), time, vector, involved))
    L = np.array([s.vector for s in specs])
    names = _score_names(scores)
    tables = []
    for score, fit in zip(names, fit_reml_many(design, scores.loc[sub.index, names].to_numpy(float))):
        table = contrast_rows(
            design, specs, L @ fit.beta, np.sqrt(np.einsum("cp,pq,cq->c", L, fit.cov_beta, L)), satterthwaite_df(fit, L)
        )
        table.insert(0, "score", score)
        table.insert(1, "model", MAIN_MODEL)
        table.insert(table.columns.get_loc("time") + 1, "term", dose)
        table["note"] = (
            f"{MODERATION}: extra change from baseline per unit of '{dose}' within the active arms "
            f"({', '.join(arms)}){'' if markers else '; no markers'}"
        )
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def fit_outcomes(adata, scores: pd.DataFrame, usage: pd.DataFrame, settings: OutcomeSettings) -> pd.DataFrame:
    """Every row ``outcomes:`` and ``dose:`` add to contrasts.tsv, with ``role`` exploratory; their ``note`` says
    they have no resampling columns (permutation, random gene sets, leave-one-out: the main model's rows only)."""
    scores = scores.loc[adata.obs_names]
    parts = [outcome_models(adata, settings)]
    if settings.outcomes:
        parts.append(within_between(adata, scores, usage, settings))
    parts.append(dose_moderation(adata, scores, usage, settings))
    table = pd.concat([p for p in parts if len(p)], ignore_index=True)
    if "term" not in table:
        table.insert(table.columns.get_loc("time") + 1, "term", "")
    table["term"] = table["term"].fillna("")
    table.insert(2, "role", ROLE)
    table["note"] = table["note"].fillna("").astype(str) + NO_RESAMPLING
    return table
