"""A study's fixed-effects design: the model matrix every model of ctra fits, and the checks on it.

A trial's design is treatment-coded ``arm * time`` [+ ``period + period:time``] plus covariates and the
leukocyte markers' VST (``build_design``); an association study's is its predictors [+ time] plus the
same (``build_association_design``). ``study_design`` builds the one the study's config asks for and
refuses a rank-deficient one. The validate stage checks the sample sheet with the same functions, so a
design the models could not fit is refused before normalization, with the same column names.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from .config import DesignSettings
from .errors import InputError
from .genesets import marker_genes as used_markers


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
    kind: str = "trial"  # or "association" (ctra.models.association): its contrasts are its terms
    terms: list[tuple[str, str]] = field(default_factory=list)  # association: (predictor, design column)
    scales: dict[str, float] = field(default_factory=dict)  # association: SD a standardized predictor was divided by


def arm_column(arm: str) -> str:
    return f"arm[T.{arm}]"


def time_column(time: str) -> str:
    return f"time[T.{time}]"


def interaction_column(arm: str, time: str) -> str:
    return f"{arm_column(arm)}:{time_column(time)}"


def period_column(period: str) -> str:
    return f"period[T.{period}]"


def _indicator(values: np.ndarray, level: str) -> np.ndarray:
    return (values == level).astype(np.float64)


def period_levels(values: pd.Series) -> list[str]:
    """Periods in natural order (numerically when every label is a number, so '10' follows '9')."""
    labels = sorted(set(values.astype(str)))
    numeric = pd.to_numeric(pd.Series(labels), errors="coerce")
    if numeric.notna().all():
        labels = [labels[i] for i in np.argsort(numeric.to_numpy(), kind="stable")]
    return labels


def build_design(
    obs: pd.DataFrame, levels: dict[str, list[str]], covariates: list[str], extra: pd.DataFrame | None = None
) -> Design:
    """Treatment-coded ``arm * time`` [+ ``period + period:time``] plus covariates and extra numeric
    columns (marker VST).

    With a ``period`` column (crossover), period and period x time are fixed effects, the standard
    crossover analysis: without them an unbalanced sequence allocation confounds the arm x time
    contrast with the period effect. Numeric covariates and extra columns are centered (the
    contrasts do not change; conditioning improves). A covariate column holding text is categorical
    (``ctra.validate`` types them: numbers unless listed in ``categorical``), with its first level
    (order of appearance) as reference.
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
    has_period = "period" in obs
    if has_period:
        period_values = obs["period"].to_numpy(str)
        periods = period_levels(obs["period"])
        for period in periods[1:]:
            columns[period_column(period)] = _indicator(period_values, period)
        for period in periods[1:]:
            for time in times[1:]:
                columns[f"{period_column(period)}:{time_column(time)}"] = (
                    columns[period_column(period)] * columns[time_column(time)]
                )
        terms.append("period + period:time")
    add_covariate_columns(obs, covariates, columns, terms, extra)
    participant = pd.factorize(obs["participant"], sort=True)[0]
    components, names = [participant], ["participant"]
    if has_period:
        components.append(
            pd.factorize(obs["participant"].astype(str) + "\x1f" + obs["period"].astype(str), sort=True)[0]
        )
        names.append("participant:period")
    fixed = "arm * time" if len(arms) > 1 else "time"
    random = " + ".join(f"(1 | {n})" for n in names)
    formula = " + ".join(["score ~ " + fixed, *terms, random])
    return Design(
        X=np.column_stack(list(columns.values())),
        columns=list(columns),
        participant=participant,
        components=components,
        component_names=names,
        arms=arms,
        times=times,
        formula=formula,
        arm_of_sample=arm_values,
        time_of_sample=time_values,
        period_of_sample=obs["period"].to_numpy(str) if has_period else None,
    )


def add_covariate_columns(
    obs: pd.DataFrame, covariates: list[str], columns: dict, terms: list[str], extra: pd.DataFrame | None = None
) -> None:
    """Add each covariate's columns (numeric: centered; text: treatment-coded, first level the
    reference) and the extra numeric columns (centered) to ``columns``, and their formula terms to ``terms``."""
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


def without_arm_terms(design: Design, arms: list[str] | None = None) -> Design:
    """The design with the arm and arm x time columns of ``arms`` (default: every active arm) removed:
    the null model of the permutation test, whose variance components cannot depend on the arm labels."""
    arms = design.arms[1:] if arms is None else arms
    prefixes = tuple(arm_column(a) for a in arms)
    keep = [j for j, c in enumerate(design.columns) if not c.startswith(prefixes)]
    return replace(design, X=design.X[:, keep], columns=[design.columns[j] for j in keep])


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


def predictor_scale(obs: pd.DataFrame, name: str) -> float:
    """The SD a numeric predictor is divided by (ddof = 1): over participants (one value each) when it is
    constant within every participant, otherwise over the draws (samples)."""
    values = obs[name].astype(np.float64)
    by_person = values.groupby(obs["participant"].to_numpy(), sort=False)
    if bool((by_person.nunique(dropna=False) <= 1).all()):
        return float(np.std(by_person.first().to_numpy(), ddof=1))
    return float(np.std(values.to_numpy(), ddof=1))


def predictor_columns(obs: pd.DataFrame, name: str, standardize: bool) -> tuple[dict[str, np.ndarray], float]:
    """The design columns of one predictor and the SD it was divided by (``predictor_scale``; 1.0: per
    unit, or categorical)."""
    values = obs[name]
    if pd.api.types.is_numeric_dtype(values):
        x = values.to_numpy(np.float64)
        scale = predictor_scale(obs, name) if standardize else 1.0
        return {name: (x - x.mean()) / scale}, scale
    text = values.to_numpy(str)
    return {f"{name}[T.{level}]": (text == level).astype(np.float64) for level in list(dict.fromkeys(text))[1:]}, 1.0


def build_association_design(
    obs: pd.DataFrame,
    predictors: list[str],
    covariates: list[str],
    time: str | None = None,
    standardize: bool = False,
    extra: pd.DataFrame | None = None,
) -> Design:
    """Intercept, predictors, [time], covariates, [extra numeric columns (marker VST)]; a participant
    random intercept only when some participant has several draws. ``time`` (the draw's time column,
    canonical name ``time`` in obs) enters as a covariate."""
    columns: dict[str, np.ndarray] = {"Intercept": np.ones(len(obs))}
    tested: list[tuple[str, str]] = []
    scales: dict[str, float] = {}
    for name in predictors:
        added, scale = predictor_columns(obs, name, standardize)
        columns.update(added)
        tested += [(name, column) for column in added]
        if scale != 1.0:
            scales[name] = scale
    terms = list(predictors)
    add_covariate_columns(obs, (["time"] if time else []) + list(covariates), columns, terms, extra)
    participant = pd.factorize(obs["participant"], sort=True)[0]
    repeated = bool(np.bincount(participant).max() > 1)
    random = ["(1 | participant)"] if repeated else []
    formula = " + ".join(["score ~ " + terms[0], *terms[1:], *random])
    return Design(
        X=np.column_stack(list(columns.values())),
        columns=list(columns),
        participant=participant,
        components=[participant] if repeated else [],
        component_names=["participant"] if repeated else [],
        arms=[],
        times=[],
        formula=formula,
        arm_of_sample=np.full(len(obs), ""),
        time_of_sample=obs["time"].to_numpy(str) if time else np.full(len(obs), ""),
        kind="association",
        terms=tested,
        scales=scales,
    )


MIN_MARKER_RESIDUAL_DF = 20  # adjust_for_cell_markers: auto adds the markers only if this many df remain


def marker_decision(adata, usage: pd.DataFrame, settings: DesignSettings) -> tuple[list[str], str]:
    """The marker genes the main model adjusts for, and why none when the config allows them.

    ``adjust_for_cell_markers``: ``false`` never, ``true`` always, ``auto`` (default) only when the
    model keeps at least ``MIN_MARKER_RESIDUAL_DF`` residual df (samples - fixed effects) with them:
    in small trials eight marker slopes on top of arm x time make the mixed model's p-values reject
    about twice as often as they should (11 % at 5 per arm, 7.6 % at 8 per arm in simulation).
    """
    setting = settings.adjust_for_cell_markers
    markers = used_markers(usage)
    if setting is False or not markers:
        return [], ""
    if setting == "auto":
        without = settings_design(adata.obs, adata.uns["levels"], settings, list(settings.covariates))
        residual = adata.n_obs - without.X.shape[1] - len(markers)
        if residual < MIN_MARKER_RESIDUAL_DF:
            return [], (
                f"markers not adjusted for (adjust_for_cell_markers: auto): with them the model would keep "
                f"{residual} residual df, fewer than {MIN_MARKER_RESIDUAL_DF}; set it to true to force them"
            )
    return markers, ""


def settings_design(
    obs: pd.DataFrame,
    levels: dict,
    settings: DesignSettings,
    covariates: list[str],
    extra: pd.DataFrame | None = None,
) -> Design:
    """``build_design`` for a trial, ``ctra.models.association.build_association_design`` for an
    association study (its predictors and time from ``settings``)."""
    if not settings.association:
        return build_design(obs, levels, covariates, extra)
    return build_association_design(
        obs, list(settings.predictors), covariates, settings.time, settings.standardize_predictors, extra
    )


def study_design(
    adata, usage: pd.DataFrame, settings: DesignSettings, covariates: bool = True, markers: bool = True
) -> tuple[Design, list[str]]:
    """The study's fixed design (checked for full rank) and the marker genes it adjusts for; ``covariates``
    and ``markers`` False leave the configured covariates or markers out (the sensitivity refits)."""
    marker_genes = marker_decision(adata, usage, settings)[0] if markers else []
    extra = None
    if marker_genes:
        extra = pd.DataFrame(adata[:, marker_genes].layers["vst"], columns=marker_genes, index=adata.obs_names)
    design = settings_design(
        adata.obs, adata.uns["levels"], settings, list(settings.covariates) if covariates else [], extra
    )
    check_full_rank(design.X, design.columns, settings.source)
    return design, marker_genes
