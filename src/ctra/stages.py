"""The workflow's stages, one function each: read the stage's inputs, call the library, write its outputs.

Data flows counts -> ``validate`` (validated.h5ad) -> ``normalize`` (normalized.h5ad) -> ``score``
(scores.tsv, genes_used.tsv) -> ``model`` (every model fit) and ``null`` (the safeguards' draws, in
chunks) -> ``robustness`` (contrasts.tsv) -> ``report``; trials with ``outcomes:`` / ``dose:`` add ``outcomes``
(work/outcome_contrasts.tsv, appended by ``robustness``) and with ``mediation:`` ``mediation`` (mediation.tsv,
read by ``report``). ``ctra.cli`` parses a command line into
one of these calls; each function takes the stage's settings (``ctra.config``) and its files by the
names of the command's options, and imports only what its stage needs (start-up time is most of a
small study's run time).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .config import (
    EffectSettings,
    MediationSettings,
    ModelSettings,
    NormalizeSettings,
    NullSettings,
    OutcomeSettings,
    PowerSettings,
    ReportSettings,
    RobustnessSettings,
    ScoreSettings,
    SynthesisSettings,
    ValidateSettings,
)
from .errors import InputError
from .results import read_json, read_normalized, read_table, read_var, write_h5ad, write_json, write_tsv

log = logging.getLogger("ctra")


def validate(
    settings: ValidateSettings, *, study: str, gene_set: str, markers: str, samples_schema: str | None, out: str
) -> None:
    from .genesets import load_gene_set
    from .validate import validate_sample_schema, validate_study

    gene_table = load_gene_set(gene_set)
    marker_table = load_gene_set(markers, allowed_groups=("marker",))
    adata = validate_study(study, settings, gene_table, marker_table)
    for warning in adata.uns["covariate_warnings"]:
        log.warning("%s", warning)
    if samples_schema and settings.design == "trial":  # the schema is of a trial's columns
        validate_sample_schema(adata.obs, samples_schema, settings.samples)
    checksums = json.loads(adata.uns["input_checksums"])
    checksums.update({gene_set: _sha(gene_set), markers: _sha(markers)})
    adata.uns["input_checksums"] = json.dumps(checksums)
    log.info(
        "validated %d samples x %d genes (%s ids); excluded: %s; dropped for missing covariates: %s; merged rows: %s",
        adata.n_obs,
        adata.n_vars,
        adata.uns["id_kind"],
        adata.uns["excluded_samples"] or "none",
        adata.uns["dropped_incomplete"] or "none",
        adata.uns["merged_genes"] or "none",
    )
    write_h5ad(adata, out)


def _sha(path: str) -> str:
    from .io import sha256sum

    return sha256sum(path)


def normalize(settings: NormalizeSettings, *, input: str, out: str, threads: int = 1) -> None:
    import anndata as ad

    from .normalize import normalize as normalize_values
    from .scoring import gene_summaries

    adata = normalize_values(
        ad.read_h5ad(input), input_kind=settings.input, method=settings.normalization, n_cpus=threads
    )
    rule = settings.expression_filter
    summaries = gene_summaries(adata, min_count=rule.min_count, min_fraction=rule.min_fraction)
    adata.var[summaries.columns] = summaries
    log.info(
        "normalization: %s; %d of %d genes expressed",
        adata.uns["normalization"],
        int(summaries["expressed"].sum()),
        adata.n_vars,
    )
    write_h5ad(adata, out)


def score(settings: ScoreSettings, *, input: str, gene_set: str, markers: str, scores: str, genes_used: str) -> None:
    from .genesets import MARKER_GROUP, load_gene_set, set_genes
    from .scoring import score_study, usage_table

    genes = pd.concat([load_gene_set(gene_set), load_gene_set(markers, allowed_groups=("marker",))], ignore_index=True)
    genes = genes.drop_duplicates("gene")
    adata = read_normalized(input, genes["gene"], layers=("vst", "counts"))
    rule = settings.expression_filter
    usage = usage_table(adata, genes, min_count=rule.min_count, min_fraction=rule.min_fraction)
    used = set_genes(usage)
    if len(used) == 0:
        raise InputError(f"{settings.counts}: no gene of the gene set passes the expression rule; see genes_used.tsv.")
    table = score_study(adata, usage, settings.score_method)
    log.info(
        "scored %d samples with %d genes (%d of the set not used)",
        len(table),
        len(used),
        int((usage["group"] != MARKER_GROUP).sum()) - len(used),
    )
    write_tsv(usage, genes_used)
    write_tsv(table, scores)


def model(
    settings: ModelSettings,
    *,
    input: str,
    scores: str,
    genes_used: str,
    model_contrasts: str,
    genes: str,
    model_info: str,
) -> None:
    """Every model fit: the main mixed model (per score and per gene), the gene-level GEE and the
    sensitivity refits; the resampling checks come after, in ``robustness``."""
    from .models import fit_other_models
    from .models.mixed import fit_study

    adata, score_table, usage = _model_inputs(input, scores, genes_used)
    contrasts, gene_table, info = fit_study(adata, score_table.rename_axis("sample").reset_index(), usage, settings)
    contrasts = pd.concat([contrasts, fit_other_models(adata, score_table, usage, settings.design)], ignore_index=True)
    write_tsv(gene_table, genes)
    write_json(info, model_info)
    write_tsv(contrasts, model_contrasts)


def _set_and_used_genes(usage: pd.DataFrame) -> Callable[[pd.DataFrame], np.ndarray]:
    """Genes a model stage needs: the used genes of the set and the used markers."""
    used = set(usage.loc[usage["used"].astype(bool), "gene"])
    return lambda var: var.index.isin(list(used))


def _model_inputs(input: str, scores: str, genes_used: str, pool: bool = False) -> tuple:
    """normalized AnnData (the used genes and markers; with ``pool``, also every expressed gene, for
    random gene sets), scores in its sample order, and genes_used."""
    usage = read_table(genes_used)
    needed = _set_and_used_genes(usage)
    adata = read_normalized(input, (lambda var: needed(var) | var["expressed"].to_numpy(bool)) if pool else needed)
    score_table = read_table(scores).set_index("sample").loc[adata.obs_names]
    return adata, score_table, usage


def null(settings: NullSettings, *, input: str, scores: str, genes_used: str, chunk: int, out: str) -> None:
    from .safeguards import null_draws

    adata, score_table, usage = _model_inputs(input, scores, genes_used, pool=True)
    draws = null_draws(adata, score_table, usage, settings, chunk)
    write_tsv(draws, out)


def robustness(
    settings: RobustnessSettings,
    *,
    input: str,
    scores: str,
    genes_used: str,
    model_info: str,
    model_contrasts: str,
    nulls: list[str],
    contrasts: str,
    extra: list[str] | None = None,
) -> None:
    from .endpoints import append_rows, mark_endpoints
    from .safeguards import robustness_table

    adata, score_table, usage = _model_inputs(input, scores, genes_used)
    info = read_json(model_info)
    draws = pd.concat([read_table(path) for path in nulls], ignore_index=True)
    table = robustness_table(
        adata,
        score_table,
        usage,
        settings,
        read_table(model_contrasts),
        info["relative_variances"],
        draws,
        var=read_var(input),
    )
    table = mark_endpoints(table, info["primary"])
    if extra:  # the outcome and dose rows (ctra.models.outcomes), exploratory, after every score's
        table = append_rows(table, [read_table(path) for path in extra])
    log.info("contrasts: %d rows over models %s", len(table), sorted(set(table["model"])))
    write_tsv(table, contrasts)


def outcomes(settings: OutcomeSettings, *, input: str, scores: str, genes_used: str, out: str) -> None:
    """The rows `outcomes:` and `dose:` add to contrasts.tsv (each outcome's arm x time model, within/between
    associations, the dose's moderation of the change within the active arms); the robustness stage appends them."""
    from .models.outcomes import fit_outcomes

    adata, score_table, usage = _model_inputs(input, scores, genes_used)
    for note in adata.uns.get("outcome_notes", []):
        log.info("%s", note)
    table = fit_outcomes(adata, score_table, usage, settings)
    log.info("outcome and dose rows: %d (%s)", len(table), ", ".join(sorted(set(table["contrast"]))))
    write_tsv(table, out)


def mediation(settings: MediationSettings, *, input: str, scores: str, out: str) -> None:
    """mediation.tsv: the arm effect on each score's change split by each outcome's change (both orderings)."""
    from .mediation import mediation_table

    adata = read_normalized(input, lambda var: np.zeros(len(var), dtype=bool))
    obs, levels = adata.obs, adata.uns["levels"]
    score_table = read_table(scores).set_index("sample").loc[obs.index]
    table = mediation_table(obs, levels, score_table, settings)
    log.info("mediation: %d rows, %d bootstrap resamples, seed %d", len(table), settings.bootstrap, settings.seed)
    write_tsv(table, out)


def report(
    settings: ReportSettings,
    *,
    study: str,
    input: str,
    scores: str,
    genes_used: str,
    contrasts: str,
    genes: str,
    model_info: str,
    out: str,
    power: list[str] | None = None,
    mediation: list[str] | None = None,
) -> None:
    from .report import PCA_GENES, normalization_text, parameter_text, write_report
    from .versions import package_versions

    used = _set_and_used_genes(read_table(genes_used))
    adata = read_normalized(input, lambda var: used(var) | _most_variable(var, PCA_GENES))
    info = read_json(model_info)
    methods = {
        **info,
        "normalization": normalization_text(info["normalization"], settings),
        "parameters": parameter_text(settings),
        "package_versions": package_versions(),
        "input_checksums": {Path(k).name: v for k, v in json.loads(adata.uns["input_checksums"]).items()},
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    write_report(
        out,
        study=study,
        adata=adata,
        scores=read_table(scores),
        contrasts=read_table(contrasts),
        genes=read_table(genes),
        genes_used=read_table(genes_used),
        methods=methods,
        show_participant_ids=settings.show_participant_ids,
        power=read_table(power[0]) if power else None,
        mediation=read_table(mediation[0]) if mediation else None,
    )


def _most_variable(var: pd.DataFrame, n: int) -> np.ndarray:
    """Mask of the ``n`` genes with the largest VST variance (ties by position), for the report's PCA."""
    order = np.argsort(-var["vst_var"].to_numpy(float), kind="stable")
    mask = np.zeros(len(var), dtype=bool)
    mask[order[:n]] = True
    return mask


def effect(
    settings: EffectSettings,
    *,
    input: str,
    scores: str,
    genes_used: str,
    model_contrasts: str,
    model_info: str,
    out: str,
) -> None:
    """The primary endpoint's summary for planning and synthesis (work/primary_effect.json)."""
    from .power import primary_effect

    adata, _, usage = _model_inputs(input, scores, genes_used)
    summary = primary_effect(
        adata, read_table(scores), usage, read_table(model_contrasts), read_json(model_info), settings
    )
    log.info(
        "primary score %s: sigma^2 %.4g, participant variance %.4g, baseline SD %.4g, %d primary row(s)",
        summary["score"],
        summary["sigma2"],
        summary["sigma2_participant"],
        summary["score_sd"],
        len(summary["primary_rows"]),
    )
    write_json(summary, out)


def power(settings: PowerSettings, *, effect: str, out: str) -> None:
    """power.tsv: power curves and sample sizes for the next trial (ctra.power)."""
    from .power import power_table

    summary = read_json(effect)
    table = power_table(summary, settings)
    if summary.get("unsupported"):
        log.warning("power not computed: %s", summary["unsupported"])
    log.info("power: %d rows", len(table))
    write_tsv(table, out)


def synthesis(settings: SynthesisSettings, *, effects: list[str], meta: str, out: str) -> None:
    """meta.tsv and the synthesis report across studies (ctra.synthesis)."""
    from .synthesis import meta_table, study_effect
    from .planning_report import write_synthesis_report
    from .versions import package_versions

    if len(effects) != len(settings.studies):
        raise InputError(f"synthesis: {len(settings.studies)} studies configured but {len(effects)} effect files given")
    rows = [
        study_effect(name, read_json(path), arm, time) for (name, arm, time), path in zip(settings.studies, effects)
    ]
    table = meta_table(rows)
    pooled = table[table["analysis"] == "random_effects_reml_hk"].iloc[0]
    log.info(
        "synthesis of %d studies: %.4g SD (%.4g to %.4g), tau^2 %.4g",
        len(rows),
        pooled["estimate"],
        pooled["ci_low"],
        pooled["ci_high"],
        pooled["tau2"],
    )
    write_tsv(table, meta)
    write_synthesis_report(
        out,
        table=table,
        versions=package_versions(),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


def example(*, out: str, seed: int) -> None:
    from .example import write_example

    write_example(out, seed=seed)


# the typed settings each stage takes
SETTINGS: dict[str, type] = {
    "validate": ValidateSettings,
    "normalize": NormalizeSettings,
    "score": ScoreSettings,
    "model": ModelSettings,
    "null": NullSettings,
    "robustness": RobustnessSettings,
    "report": ReportSettings,
    "effect": EffectSettings,
    "power": PowerSettings,
    "synthesis": SynthesisSettings,
    "outcomes": OutcomeSettings,
    "mediation": MediationSettings,
}
