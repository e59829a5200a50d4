"""The report's section for trials with ``outcomes:``, ``dose:`` and ``mediation:``.

Two figures a PI reads at a glance: the arm x time effect on the CTRA score beside each outcome's own arm x time
effect (each in its own units), and a mediation forest (for the CTRA score: the indirect, direct and total effect
of each arm, with the outcome change as the mediator and, separately, the reverse ordering), then the
within/between-person and dose rows as a table, and the causal assumptions in plain words. Only aggregates are
shown; every user string goes through the report's escaping (tables by Jinja's autoescape, figure text by
``_plot_text``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MEDIATION_PATHS = ("indirect", "direct", "total")
PATH_COLOURS = {"indirect": "#d1495b", "direct": "#6b6b6b", "total": "#1f6fb4"}
OUTCOME_CONTRASTS = ("within_person", "between_person", "dose_x_time")

ASSUMPTIONS = (
    "The arm is randomised; the mediator is not. Reading the indirect effect as the part of the arm's effect "
    "that runs through the mediator assumes no unmeasured confounding of the mediator-response relation (for "
    "example, a life event that raises well-being and lowers inflammation would produce an 'indirect effect' by "
    "itself), and that the arm does not change such a confounder. It also assumes no arm × mediator interaction "
    "(the mediator's slope on the response is the same in both arms) and linear relations; without these "
    "assumptions a × b describes the regressions, it is not an effect.",
    "Ordering: the outcome and the blood draw are measured at the same visits, so the data cannot say whether the "
    "psychological change came first. Both orderings are shown; a difference between them is not evidence for "
    "either.",
    "Change scores from baseline: each participant's follow-up minus baseline value, covariates as at baseline; no "
    "leukocyte markers (the mediation 'total' can therefore differ from the main model's arm x time estimate). "
    "Change scores carry regression to the mean; the table's baseline_adjusted rows (the same models adjusted for "
    "the baseline mediator and response, ANCOVA) are the sensitivity analysis, the figure shows the change scores.",
    "The indirect CI is a percentile bootstrap over participants (stratified by arm); its p-value is the joint-"
    "significance test (both paths a and b significant), which is conservative when neither path exists. The "
    "two are different tests and can disagree (p below 0.05 with a CI that covers 0, or the reverse).",
    "Every mediation row is exploratory: one unadjusted test per score × outcome × arm × time × ordering (2), so "
    "some will be 'significant' by chance.",
)


def split_rows(contrasts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the score rows every other section reads, the outcome and dose rows): a row is an outcome row when it is
    a within/between or dose row, or its score is not a CTRA score (an outcome's own arm x time model). Other rows
    with a ``term`` (the association design's predictors) stay with the scores."""
    from .report import SCORES

    if "term" not in contrasts:
        return contrasts, contrasts.iloc[0:0]
    extra = contrasts["contrast"].isin(OUTCOME_CONTRASTS) | ~contrasts["score"].isin(SCORES)
    scores = contrasts[~extra].reset_index(drop=True)
    if (scores["term"].fillna("").astype(str) == "").all():
        scores = scores.drop(columns=["term"])
    return scores, contrasts[extra].reset_index(drop=True)


def _forest(
    fig_id: str, rows: pd.DataFrame, labels: list[str], groups: list[str], colours: dict, axis: str, caption: str
):
    from .report import _figure, forest_layout, forest_trace

    position = -np.arange(len(rows), dtype=float)
    data = []
    for group in dict.fromkeys(groups):
        mask = np.array([g == group for g in groups])
        shown = [label for label, m in zip(labels, mask) if m]
        data.append(forest_trace(rows[mask], position[mask], shown, group, colours.get(group, "#1f6fb4")))
    return _figure(fig_id, data, forest_layout(position, labels, axis), caption)


def effects_figure(scores: pd.DataFrame, outcomes: pd.DataFrame, control: str):
    """Arm x time on the CTRA score (main model) beside each outcome's own arm x time."""
    from .report import MAIN_MODEL, SCORE_LABELS

    ctra = scores[(scores["model"] == MAIN_MODEL) & (scores["score"] == "ctra") & (scores["contrast"] == "arm_x_time")]
    own = outcomes[(outcomes["contrast"] == "arm_x_time") & (outcomes["term"].fillna("") == "")]
    rows = pd.concat([ctra, own], ignore_index=True)
    if rows.empty:
        return None
    labels = [
        f"{SCORE_LABELS.get(r.score, r.score)} · {r.arm} − {control} · {r.time}" for r in rows.itertuples(index=False)
    ]
    groups = ["CTRA score" if s == "ctra" else "psychological outcome" for s in rows["score"]]
    return _forest(
        "fig-outcome-effects",
        rows,
        labels,
        groups,
        {"CTRA score": "#1f6fb4", "psychological outcome": "#2a9d5c"},
        "Arm × time estimate with 95% CI (each in its own units)",
        "The intervention's effect on the CTRA score and on each psychological outcome (arm × time, 95% CI). "
        "The outcomes are in their own scale units.",
    )


def mediation_figure(mediation: pd.DataFrame, control: str):
    """Indirect, direct and total effect on the CTRA score (and, reversed, on each outcome), 95% CI."""
    shown = (mediation["score"] == "ctra") & mediation["path"].isin(MEDIATION_PATHS)
    rows = mediation[shown & (mediation["variant"] == "change_score")].reset_index(drop=True)
    if rows.empty:
        return None
    labels = []
    for r in rows.itertuples(index=False):
        response = r.outcome if r.mediator == "ctra" else "CTRA"
        via = "CTRA" if r.mediator == "ctra" else r.mediator
        labels.append(f"{r.arm} − {control} → {response} via {via} · {r.time}: {r.path}")
    return _forest(
        "fig-mediation",
        rows,
        labels,
        list(rows["path"]),
        PATH_COLOURS,
        "Effect on the change from baseline, with 95% CI",
        "Mediation (CTRA score): the arm's total effect on the response's change = direct + indirect (a × b; "
        "the part carried by the mediator's change only if the assumptions below hold). Indirect CI: participant "
        "bootstrap. Both orderings are shown; exploratory.",
    )


def outcome_context(inputs) -> dict:
    """The section's variables, or a falsy ``outcomes`` when the study has no outcome, dose or mediation rows."""
    from .report import _frame_table

    rows, mediation = inputs.outcome_contrasts, inputs.mediation
    if (rows is None or rows.empty) and (mediation is None or mediation.empty):
        return {"outcomes": None}
    rows = rows if rows is not None else pd.DataFrame()
    notes = list(inputs.adata.uns.get("outcome_notes", []))
    control = inputs.levels.control
    context = {
        "effects": effects_figure(inputs.contrasts, rows, control) if len(rows) else None,
        "mediation_figure": mediation_figure(mediation, control) if mediation is not None else None,
        "assumptions": list(ASSUMPTIONS) if mediation is not None else [],
        "notes": notes,
        "associations": None,
        "mediation_table": None,
    }
    shown = rows
    if len(shown):
        columns = [
            "score",
            "contrast",
            "term",
            "arm",
            "time",
            "estimate",
            "ci_low",
            "ci_high",
            "p_value",
            "n_participants",
        ]
        context["associations"] = _frame_table(shown, columns, inputs.participants)
    if mediation is not None and len(mediation):
        columns = [
            "score",
            "outcome",
            "mediator",
            "arm",
            "time",
            "variant",
            "path",
            "estimate",
            "ci_low",
            "ci_high",
            "p_value",
            "n_boot",
        ]
        context["mediation_table"] = _frame_table(mediation, columns, inputs.participants)
    return {"outcomes": context}
