"""The pre-specified primary endpoint, its family of tests and the Holm adjustment over it.

A trial's confirmatory question is one score and one contrast (default: the CTRA score's arm x time
contrast). With two active arms or several follow-up times that question is several tests (every
active arm x non-baseline time): the *primary family*, whose main-model p-values get a
Holm-adjusted ``p_holm`` (family-wise error at the nominal level, no assumption about the
dependence between the tests). Every other main-model row (subscores, within-arm changes) is
``exploratory``; the rows of the other models (gene-level GEE, refits without covariates or markers)
are ``sensitivity`` analyses of the main one, except the as-published per-gene t (``per_gene_t``),
whose rows are ``as_published``: a test built to be anti-conservative reproduces a published number
and is never a check of the main one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .config import PrimarySettings

MAIN_MODEL = "lmm"
AS_PUBLISHED_MODELS = ("per_gene_t",)


def primary_endpoint(primary: PrimarySettings, has_control: bool) -> dict[str, str]:
    """The primary score and contrast; a single-arm study (no control) has only within-arm changes,
    so its primary contrast is ``change`` whatever the config says (recorded in the report)."""
    return {"score": primary.score, "contrast": primary.contrast if has_control else "change"}


def association_endpoint(primary: PrimarySettings, terms: list[tuple[str, str]]) -> dict:
    """An association study's primary score and predictor (default: the first), and its design columns
    (a categorical predictor's levels are one family)."""
    predictor = primary.term or terms[0][0]
    return {
        "score": primary.score,
        "contrast": "association",
        "term": predictor,
        "terms": [column for name, column in terms if name == predictor],
    }


def holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (monotone, capped at 1). A NaN (a test that could not be
    computed) stays NaN but still counts in the family size, so the others are not under-adjusted."""
    p = np.asarray(p, dtype=float)
    out = np.full(len(p), np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(p)
    stepped = np.maximum.accumulate(p[order] * (m - np.arange(len(order))))
    out[order] = np.minimum(stepped, 1.0)
    return out


def mark_endpoints(contrasts: pd.DataFrame, endpoint: dict[str, str]) -> pd.DataFrame:
    """``role`` (primary / exploratory / sensitivity / as_published) and ``p_holm`` (primary rows only)
    columns."""
    main = contrasts["model"] == MAIN_MODEL
    primary = main & (contrasts["score"] == endpoint["score"]) & (contrasts["contrast"] == endpoint["contrast"])
    if "terms" in endpoint:  # association: the primary predictor's terms
        primary &= contrasts["term"].isin(endpoint["terms"])
    out = contrasts.copy()
    out.insert(
        out.columns.get_loc("model") + 1,
        "role",
        np.select(
            [primary, main, contrasts["model"].isin(AS_PUBLISHED_MODELS)],
            ["primary", "exploratory", "as_published"],
            "sensitivity",
        ),
    )
    out.insert(out.columns.get_loc("p_value") + 1, "p_holm", np.nan)
    out.loc[primary, "p_holm"] = holm(out.loc[primary, "p_value"].to_numpy())
    notes = out.pop("note").fillna("") if "note" in out else pd.Series("", index=out.index)
    out["note"] = notes
    return out


def append_rows(contrasts: pd.DataFrame, extra: list[pd.DataFrame]) -> pd.DataFrame:
    """contrasts.tsv with further rows (outcome and dose rows, their ``role`` set) after its own; a ``term``
    column (the outcome or dose a row is about) follows ``time`` (where the association design puts its
    predictor), empty on the score rows."""
    out = pd.concat([contrasts, *extra], ignore_index=True)
    if "term" in out:
        term = out.pop("term").fillna("")
        out.insert(out.columns.get_loc("time") + 1, "term", term)
    notes = out.pop("note").fillna("")
    out["note"] = notes
    return out
