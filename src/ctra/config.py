"""The study config, as each stage of the workflow reads it.

The workflow checks a study's config block against ``workflow/schemas/config.schema.yaml`` and
fills in the schema's defaults once, when it is parsed. Each rule then passes its stage only the
settings that stage reads (``stage_settings``), so that Snakemake's params tracking reruns exactly
the jobs a change affects: ``show_participant_ids`` reruns the report alone, ``robustness.chunks``
the null draws and what gathers them, and a covariate every model fit but not normalization.

``STAGE_KEYS`` is the one list of which setting each stage reads; a key ``"a.b"`` is the setting
``b`` inside ``a`` (``robustness.seed``), and ``"a?"`` only whether ``a`` is given (``True``, or left out). This module imports nothing heavy: the workflow imports it
while it is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# the settings the report lists in its methods, in this order
REPORTED_PARAMETERS = (
    "design",
    "predictors",
    "standardize_predictors",
    "time",
    "input",
    "normalization",
    "baseline",
    "control",
    "adjust_for_cell_markers",
    "gene_set",
    "marker_set",
    "drop_incomplete_samples",
    "exclude_samples",
)
# the settings that decide a study's design (the model, the null draws and the robustness checks fit it)
_DESIGN = (
    "samples",
    "design",
    "predictors",
    "standardize_predictors",
    "time",
    "covariates",
    "adjust_for_cell_markers",
)

STAGE_KEYS: dict[str, tuple[str, ...]] = {
    "validate": (
        "counts",
        "samples",
        "design",
        "predictors",
        "standardize_predictors",  # refused in a trial
        "time",
        "primary.term",  # an association study's primary term must be one of its predictors
        "columns",
        "baseline",
        "control",
        "time_levels",
        "arm_levels",
        "covariates",
        "categorical",
        "exclude_samples",
        "drop_incomplete_samples",
        "input",
        "layout",
        "sheet",
        "non_integer_counts",
        "outcomes",
        "dose",
        "mediation?",  # only whether it is set (its bootstrap settings rerun the mediation rule alone)
    ),
    "normalize": ("input", "normalization", "expression_filter"),
    "score": ("counts", "expression_filter", "score_method"),
    "model": (*_DESIGN, "primary"),
    # robustness.chunks: how the draws are split, which decides each chunk's share (not any number)
    "null": (
        *_DESIGN,
        "score_method",  # the random gene sets are scored as the real set
        "robustness.permutations",
        "robustness.gene_sets",
        "robustness.seed",
        "robustness.chunks",
    ),
    "robustness": (*_DESIGN, "robustness.gene_sets", "robustness.seed"),
    "report": (*REPORTED_PARAMETERS, "expression_filter", "show_participant_ids"),
    # the fitted primary endpoint's summary for planning and synthesis (work/primary_effect.json)
    "effect": (*_DESIGN, "input"),
    "power": (
        "power.effects",
        "power.alpha",
        "power.targets",
        "power.attrition",
        "power.max_per_arm",
        "power.arms",
    ),
    # trials with `outcomes:` / `dose:` (ctra.models.outcomes) and `mediation:` (ctra.mediation); the rules run
    # only for studies that set them, and the keys are optional (no default), so other studies' params are unchanged
    "outcomes": (*_DESIGN, "outcomes", "dose"),
    "mediation": ("samples", "covariates", "outcomes", "mediation.bootstrap", "mediation.seed"),
}


def stage_settings(study: dict, stage: str) -> dict:
    """The part of a study's config block (defaults filled in) that ``stage`` reads, nested as in the
    config. Optional settings without a default (``time_levels``) are left out when not given."""
    out: dict = {}
    for key in STAGE_KEYS[stage]:
        if key.endswith("?"):  # whether the setting is given, not its value
            if study.get(key[:-1]) is not None:
                out[key[:-1]] = True
            continue
        *parents, name = key.split(".")
        source, target = study, out
        for parent in parents:
            source = source.get(parent)
            if source is None:  # an optional group not given (``mediation``): left out, as a plain key is
                break
            target = target.setdefault(parent, {})
        if source is not None and name in source:
            target[name] = source[name]
    return out


# ----------------------------------------------------------------------------------------------
# Typed settings: built once per stage from its (schema-checked, defaults-filled) settings
# ----------------------------------------------------------------------------------------------
# The schema is the one source of defaults: these classes have none, and ``from_study`` reads every
# setting of its stage (a missing one is a KeyError naming it, never a silent default).


@dataclass(frozen=True)
class ExpressionFilter:
    """A gene is expressed if its normalized count is >= ``min_count`` in >= ``min_fraction`` of samples."""

    min_count: float
    min_fraction: float

    @classmethod
    def from_study(cls, study: dict) -> ExpressionFilter:
        rule = study["expression_filter"]
        return cls(min_count=rule["min_count"], min_fraction=rule["min_fraction"])


@dataclass(frozen=True)
class DesignSettings:
    """What decides a study's fixed design besides the sample sheet: covariates and whether the used
    leukocyte markers are adjusted for; ``source`` (the sample sheet) names the study in design errors."""

    source: str
    covariates: tuple[str, ...]
    adjust_for_cell_markers: bool | str  # true, false or "auto" (markers only if 20 residual df remain)
    design: str = "trial"  # or "association" (score ~ predictors + covariates [+ markers])
    predictors: tuple[str, ...] = ()  # association studies
    standardize_predictors: bool = False  # association studies: numeric predictors per SD
    time: str | None = None  # association studies: the draw's time column (a covariate), if given

    @classmethod
    def from_study(cls, study: dict) -> DesignSettings:
        return cls(
            source=study["samples"],
            covariates=tuple(study["covariates"]),
            adjust_for_cell_markers=study["adjust_for_cell_markers"],
            design=study["design"],
            predictors=tuple(study.get("predictors", ())),  # optional: trials have none
            standardize_predictors=study["standardize_predictors"],
            time=study.get("time"),  # optional
        )

    @property
    def association(self) -> bool:
        return self.design == "association"


@dataclass(frozen=True)
class SheetColumns:
    """The sample sheet's column of each design role; ``period`` only in a crossover trial (else None)."""

    sample: str
    participant: str
    arm: str
    time: str
    period: str | None

    @classmethod
    def from_study(cls, study: dict) -> SheetColumns:
        return cls(**{role: study["columns"][role] for role in ("sample", "participant", "arm", "time", "period")})

    def named(self) -> dict[str, str]:
        """Role -> sheet column, for the roles that have one (no period: a parallel-arm trial)."""
        return {role: column for role, column in vars(self).items() if column}


@dataclass(frozen=True)
class ValidateSettings:
    """The validate stage (``ctra.validate``): the input files and how to read them, the design the sample sheet
    must fit, and the trial keys (``outcomes``, ``dose``, whether ``mediation`` is set) checked against it.
    Optional settings without a default are None (or ``()`` for ``predictors`` and ``outcomes``) when not given.

    ``config``: the settings as the stage received them, which validated.h5ad keeps (``uns["study_config"]``)."""

    counts: str
    samples: str
    input: str  # counts or log2_expression
    layout: str  # auto, genes_by_samples or samples_by_genes
    sheet: str | int | dict | None  # the .xlsx worksheet: one for both files, or {samples: ..., counts: ...}
    non_integer_counts: str  # round or error
    design: str  # trial or association
    columns: SheetColumns
    covariates: tuple[str, ...]
    categorical: tuple[str, ...]
    exclude_samples: tuple[str, ...]
    drop_incomplete_samples: bool
    baseline: str | None  # trials
    control: str | None  # trials; None: a single arm
    time_levels: tuple[str, ...] | None  # None: the order of first appearance
    arm_levels: tuple[str, ...] | None
    predictors: tuple[str, ...]  # association studies
    standardize_predictors: bool  # refused in a trial
    time: str | None  # association studies: the draw's time column
    primary_term: str | None  # association studies: must be one of the predictors
    outcomes: tuple[str, ...]  # trials
    dose: str | None
    mediation: bool  # whether `mediation` is set
    config: dict = field(compare=False, repr=False)

    @classmethod
    def from_study(cls, study: dict) -> ValidateSettings:
        trial = study["design"] == "trial"

        def optional(key: str) -> tuple[str, ...] | None:
            return tuple(study[key]) if key in study else None

        return cls(
            counts=study["counts"],
            samples=study["samples"],
            input=study["input"],
            layout=study["layout"],
            sheet=study.get("sheet"),
            non_integer_counts=study["non_integer_counts"],
            design=study["design"],
            columns=SheetColumns.from_study(study),
            covariates=tuple(study["covariates"]),
            categorical=tuple(study["categorical"]),
            exclude_samples=tuple(study["exclude_samples"]),
            drop_incomplete_samples=study["drop_incomplete_samples"],
            # the schema requires a trial's baseline and an association study's predictors
            baseline=study["baseline"] if trial else study.get("baseline"),
            control=study["control"],
            time_levels=optional("time_levels"),
            arm_levels=optional("arm_levels"),
            predictors=tuple(study.get("predictors", ()) if trial else study["predictors"]),
            standardize_predictors=study["standardize_predictors"],
            time=study.get("time"),
            primary_term=study["primary"].get("term"),
            outcomes=tuple(study.get("outcomes", ())),
            dose=study.get("dose"),
            mediation=study.get("mediation") is not None,
            config=study,
        )


@dataclass(frozen=True)
class NormalizeSettings:
    input: str
    normalization: str
    expression_filter: ExpressionFilter

    @classmethod
    def from_study(cls, study: dict) -> NormalizeSettings:
        return cls(
            input=study["input"],
            normalization=study["normalization"],
            expression_filter=ExpressionFilter.from_study(study),
        )


@dataclass(frozen=True)
class ScoreSettings:
    counts: str  # named in the error when no gene of the set is used
    expression_filter: ExpressionFilter
    score_method: str  # a name in ctra.scoring.SCORE_METHODS

    @classmethod
    def from_study(cls, study: dict) -> ScoreSettings:
        return cls(
            counts=study["counts"],
            expression_filter=ExpressionFilter.from_study(study),
            score_method=study["score_method"],
        )


@dataclass(frozen=True)
class PrimarySettings:
    """The pre-specified primary endpoint (``ctra.endpoints``): its score, its contrast (a trial's; a single-arm
    study's is ``change`` and an association study's ``association`` whatever is set) and an association study's
    primary term (None: its first predictor)."""

    score: str
    contrast: str
    term: str | None

    @classmethod
    def from_study(cls, study: dict) -> PrimarySettings:
        primary = study["primary"]
        return cls(score=primary["score"], contrast=primary["contrast"], term=primary.get("term"))  # term: optional


@dataclass(frozen=True)
class ModelSettings:
    design: DesignSettings
    primary: PrimarySettings

    @classmethod
    def from_study(cls, study: dict) -> ModelSettings:
        return cls(design=DesignSettings.from_study(study), primary=PrimarySettings.from_study(study))


@dataclass(frozen=True)
class RobustnessSettings:
    """The robustness stage: the random-gene-set draws' count and seed (for the reason when there is no pool)."""

    design: DesignSettings
    gene_sets: int
    seed: int

    @classmethod
    def from_study(cls, study: dict) -> RobustnessSettings:
        draws = study["robustness"]
        return cls(design=DesignSettings.from_study(study), gene_sets=draws["gene_sets"], seed=draws["seed"])


@dataclass(frozen=True)
class NullSettings(RobustnessSettings):
    """The null draws: also the permutations and how the draws are split into chunks."""

    permutations: int = field(kw_only=True)
    chunks: int = field(kw_only=True)
    score_method: str = field(kw_only=True)  # the random gene sets are scored as the real set

    @classmethod
    def from_study(cls, study: dict) -> NullSettings:
        draws = study["robustness"]
        return cls(
            design=DesignSettings.from_study(study),
            gene_sets=draws["gene_sets"],
            seed=draws["seed"],
            permutations=draws["permutations"],
            chunks=draws["chunks"],
            score_method=study["score_method"],
        )


@dataclass(frozen=True)
class ReportSettings:
    input: str
    expression_filter: ExpressionFilter
    show_participant_ids: bool
    parameters: dict  # REPORTED_PARAMETERS -> value, as configured

    @classmethod
    def from_study(cls, study: dict) -> ReportSettings:
        return cls(
            input=study["input"],
            expression_filter=ExpressionFilter.from_study(study),
            show_participant_ids=bool(study["show_participant_ids"]),
            # optional settings without a default (an association study's predictors) only when given
            parameters={key: study[key] for key in REPORTED_PARAMETERS if key in study},
        )


@dataclass(frozen=True)
class EffectSettings:
    """The primary endpoint's summary for power and synthesis: the design (to refit the primary score's main
    model for its variance components) and the input kind (which the synthesis reports per study)."""

    design: DesignSettings
    input: str

    @classmethod
    def from_study(cls, study: dict) -> EffectSettings:
        return cls(design=DesignSettings.from_study(study), input=study["input"])


@dataclass(frozen=True)
class PowerSettings:
    """Power and sample size of the planned trial (``ctra.power``); effects in baseline SD (the SD of the
    primary score over the fitted study's baseline draws; ``ctra.power.planning_effects`` puts them in score units)."""

    effects: tuple[float, ...]
    alpha: float
    targets: tuple[float, ...]
    attrition: float
    max_per_arm: int
    arms: int

    @classmethod
    def from_study(cls, study: dict) -> PowerSettings:
        block = study["power"]
        return cls(
            effects=tuple(float(e) for e in block["effects"]),
            alpha=float(block["alpha"]),
            targets=tuple(float(t) for t in block["targets"]),
            attrition=float(block["attrition"]),
            max_per_arm=int(block["max_per_arm"]),
            arms=int(block["arms"]),
        )


@dataclass(frozen=True)
class OutcomeSettings:
    """The outcome and dose models: the study's design (markers apply to the scores, never to an outcome),
    the outcome columns (may be empty) and the dose column (None: no dose model)."""

    design: DesignSettings
    outcomes: tuple[str, ...]
    dose: str | None

    @classmethod
    def from_study(cls, study: dict) -> OutcomeSettings:
        # optional keys without a default: absent means none
        return cls(
            design=DesignSettings.from_study(study),
            outcomes=tuple(study.get("outcomes", ())),
            dose=study.get("dose"),
        )


@dataclass(frozen=True)
class SynthesisSettings:
    """The synthesis across studies (``ctra.synthesis``): which primary row of each study is pooled.

    ``studies``: (study, arm, time) with arm and time None where the study's one primary row is meant."""

    studies: tuple[tuple[str, str | None, str | None], ...]

    @classmethod
    def from_study(cls, block: dict) -> SynthesisSettings:  # the synthesis block (the name every stage uses)
        return cls(studies=tuple((s["study"], s.get("arm"), s.get("time")) for s in block["studies"]))


def synthesis_studies(config: dict) -> list[dict]:
    """The studies the ``synthesis:`` block pools, as ``{study, arm, time}`` (arm and time None: the study's
    one primary row), or an InputError naming each study that cannot be pooled and why. Reads only the
    config (schema-checked, defaults filled): it runs when the workflow is parsed."""
    from .errors import InputError

    block = config.get("synthesis")
    studies = config["studies"]
    problems = []
    if "synthesis" in studies:
        problems.append(
            "studies: a study named 'synthesis' would write to results/synthesis/, where the synthesis across "
            "studies writes: rename the study"
        )
    if not block:
        if problems:
            raise InputError(problems)
        return []

    def is_trial(name: str) -> bool:
        return studies[name].get("control") is not None

    if block is True:
        chosen = [{"study": name, "arm": None, "time": None} for name in sorted(studies) if is_trial(name)]
        scores = {studies[c["study"]]["primary"]["score"] for c in chosen}
        if len(scores) > 1:
            listed = ", ".join(f"'{c['study']}' ({studies[c['study']]['primary']['score']})" for c in chosen)
            problems.append(
                f"synthesis: true pools every trial study with the same primary score, but the trial studies have "
                f"different ones: {listed}; list the studies to pool under synthesis: studies"
            )
    else:
        chosen = [
            {"study": s, "arm": None, "time": None} if isinstance(s, str) else {"arm": None, "time": None, **s}
            for s in block["studies"]
        ]
        for item in chosen:
            name = item["study"]
            if name not in studies:
                defined = ", ".join(f"'{s}'" for s in sorted(studies))
                problems.append(f"synthesis: study '{name}' is not defined under studies: (defined: {defined})")
            elif not is_trial(name):
                problems.append(
                    f"synthesis: study '{name}' is not a trial (no control arm): it has no arm x time contrast to pool"
                )
            elif studies[name]["primary"]["contrast"] != "arm_x_time":
                problems.append(
                    f"synthesis: study '{name}' has primary contrast '{studies[name]['primary']['contrast']}'; "
                    "the synthesis pools arm x time contrasts"
                )
        known = [c for c in chosen if c["study"] in studies and is_trial(c["study"])]
        scores: dict[str, list[str]] = {}
        for item in known:
            scores.setdefault(studies[item["study"]]["primary"]["score"], []).append(item["study"])
        if len(scores) > 1:
            first = studies[known[0]["study"]]["primary"]["score"]
            for item in known:
                score = studies[item["study"]]["primary"]["score"]
                if score != first:
                    problems.append(
                        f"synthesis: study '{item['study']}' has primary score '{score}', but '{known[0]['study']}' "
                        f"has '{first}': only studies with the same primary score can be pooled"
                    )
        names = [c["study"] for c in chosen]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"synthesis: study '{name}' is listed more than once")
    for item in chosen:  # several active arms, known from the config: ask now rather than after the studies ran
        levels = studies.get(item["study"], {}).get("arm_levels") or []
        if item["arm"] is None and len(levels) > 2 and is_trial(item["study"]):
            problems.append(
                f"synthesis: study '{item['study']}' has {len(levels) - 1} active arms (arm_levels): name the one "
                f"to pool as {{study: {item['study']}, arm: ...}}"
            )
    if not problems and len(chosen) < 2:
        which = f" (only '{chosen[0]['study']}')" if chosen else ""
        problems.append(
            f"synthesis: a meta-analysis needs two or more trial studies with the same primary score{which}"
        )
    if problems:
        raise InputError(problems)
    return chosen


@dataclass(frozen=True)
class MediationSettings:
    """Mediation of the arm effect on the score change by each outcome's change: the bootstrap's size and seed."""

    source: str  # the sample sheet, named in errors
    covariates: tuple[str, ...]
    outcomes: tuple[str, ...]
    bootstrap: int
    seed: int

    @classmethod
    def from_study(cls, study: dict) -> MediationSettings:
        draws = study["mediation"]
        return cls(
            source=study["samples"],
            covariates=tuple(study["covariates"]),
            outcomes=tuple(study["outcomes"]),
            bootstrap=draws["bootstrap"],
            seed=draws["seed"],
        )
