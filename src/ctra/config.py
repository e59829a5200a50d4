"""The study config, as each stage of the workflow reads it.

The workflow checks a study's config block against ``workflow/schemas/config.schema.yaml`` and
fills in the schema's defaults once, when it is parsed. Each rule then passes its stage only the
settings that stage reads (``stage_settings``), so that Snakemake's params tracking reruns exactly
the jobs a change affects: ``show_participant_ids`` reruns the report alone, ``robustness.chunks``
the null draws and what gathers them, and a covariate every model fit but not normalization.

``STAGE_KEYS`` is the one list of which setting each stage reads; a key ``"a.b"`` is the setting
``b`` inside ``a`` (``robustness.seed``). This module imports nothing heavy: the workflow imports it
while it is parsed.
"""

from __future__ import annotations

# the settings that decide a study's design (the model, the null draws and the robustness checks fit it)
_DESIGN = ("samples", "covariates", "adjust_for_cell_markers")

STAGE_KEYS: dict[str, tuple[str, ...]] = {
    "validate": ("counts", "samples", "columns", "baseline", "control", "time_levels", "arm_levels", "covariates",
                 "categorical", "exclude_samples", "drop_incomplete_samples", "input"),
    "normalize": ("input", "normalization", "expression_filter"),
    "score": ("counts", "expression_filter"),
    "model": (*_DESIGN, "primary"),
    # robustness.chunks: how the draws are split, which decides each chunk's share (not any number)
    "null": (*_DESIGN, "robustness.permutations", "robustness.gene_sets", "robustness.seed", "robustness.chunks"),
    "robustness": (*_DESIGN, "robustness.gene_sets", "robustness.seed"),
    "report": ("input", "normalization", "baseline", "control", "adjust_for_cell_markers", "gene_set", "marker_set",
               "drop_incomplete_samples", "exclude_samples", "expression_filter", "show_participant_ids"),
}


def stage_settings(study: dict, stage: str) -> dict:
    """The part of a study's config block (defaults filled in) that ``stage`` reads, nested as in the
    config. Optional settings without a default (``time_levels``) are left out when not given."""
    out: dict = {}
    for key in STAGE_KEYS[stage]:
        *parents, name = key.split(".")
        source, target = study, out
        for parent in parents:
            source = source.get(parent, {})
            target = target.setdefault(parent, {})
        if name in source:
            target[name] = source[name]
    return out
