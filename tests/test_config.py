"""ctra.config: each stage's settings are the keys it reads, and its typed settings build from them alone."""

from __future__ import annotations

import copy
from dataclasses import fields

import pytest
import yaml

from bad_inputs.cohort import CONFIG_SCHEMA as SCHEMA, validate_settings, with_defaults
from conftest import REPO
from ctra import config as cfg

TYPED = {
    "validate": cfg.ValidateSettings,
    "normalize": cfg.NormalizeSettings,
    "score": cfg.ScoreSettings,
    "model": cfg.ModelSettings,
    "null": cfg.NullSettings,
    "robustness": cfg.RobustnessSettings,
    "report": cfg.ReportSettings,
    "effect": cfg.EffectSettings,
    "power": cfg.PowerSettings,
}


@pytest.fixture(scope="module")
def study() -> dict:
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))  # fills the schema's defaults
    return config["studies"]["example"]


@pytest.mark.parametrize("stage", sorted(TYPED))
def test_typed_settings_build_from_the_stage_settings_alone(study, stage):
    settings = TYPED[stage].from_study(cfg.stage_settings(study, stage))
    assert settings == TYPED[stage].from_study(study)


def test_stage_settings_keep_only_what_the_stage_reads(study):
    assert cfg.stage_settings(study, "normalize") == {
        key: study[key] for key in ("input", "normalization", "expression_filter")
    }
    assert "chunks" not in cfg.stage_settings(study, "robustness")["robustness"]
    assert cfg.stage_settings(study, "null")["robustness"] == study["robustness"]
    assert not any("show_participant_ids" in cfg.stage_settings(study, s) for s in cfg.STAGE_KEYS if s != "report")
    assert "time_levels" not in cfg.stage_settings(study, "validate")  # optional, no default: left out


def test_typed_settings_are_frozen(study):
    settings = cfg.ModelSettings.from_study(study)
    assert settings.design.covariates == ("age", "sex", "bmi")
    with pytest.raises(AttributeError):
        settings.design = None


# a value for every setting the validate stage reads, none of them the schema's default
EVERY_VALIDATE_KEY = {
    "counts": "expression.tsv",
    "samples": "samples.xlsx",
    "design": "association",
    "predictors": ["stress", "group"],
    "standardize_predictors": True,
    "time": "visit",
    "primary": {"term": "group"},
    "columns": {"sample": "id", "participant": "pid", "arm": "condition", "time": "week", "period": "day"},
    "baseline": "pre",
    "control": "placebo",
    "time_levels": ["pre", "post"],
    "arm_levels": ["placebo", "kind"],
    "covariates": ["age"],
    "categorical": ["group"],
    "exclude_samples": ["s01"],
    "drop_incomplete_samples": True,
    "input": "log2_expression",
    "layout": "samples_by_genes",
    "sheet": {"samples": "design", "counts": 2},
    "non_integer_counts": "error",
    "outcomes": ["wellbeing"],
    "dose": "acts",
    "mediation": {"bootstrap": 500},
}


def _field(key: str) -> str:
    """The ValidateSettings field of a STAGE_KEYS entry ("primary.term" -> primary_term, "mediation?" -> mediation)."""
    return key.rstrip("?").replace(".", "_")


def _at(block: dict, key: str):
    """(the dict holding a STAGE_KEYS entry's setting, the setting's name)."""
    *parents, name = key.rstrip("?").split(".")
    for parent in parents:
        block = block[parent]
    return block, name


def test_validate_settings_read_every_key_of_the_stage():
    settings = validate_settings(EVERY_VALIDATE_KEY)
    keys = cfg.STAGE_KEYS["validate"]
    assert {f.name for f in fields(settings)} == {_field(key) for key in keys} | {"config"}
    for key in keys:
        block, name = _at(EVERY_VALIDATE_KEY, key)
        expected = tuple(block[name]) if isinstance(block[name], list) else block[name]
        if key == "columns":
            expected = cfg.SheetColumns(**block[name])
        if key.endswith("?"):  # whether it is set
            expected = True
        assert getattr(settings, _field(key)) == expected, key
    assert settings.config == cfg.stage_settings(with_defaults(EVERY_VALIDATE_KEY), "validate")


@pytest.mark.parametrize("design", ["association", "trial"])
def test_validate_settings_need_every_setting_the_schema_fills_or_requires(design):
    """A setting with a schema default (or one the schema requires) missing from the stage's settings is a KeyError
    naming it, never a default of ctra.config's; an optional one without a default is None, () or False."""
    study = cfg.stage_settings(with_defaults({**EVERY_VALIDATE_KEY, "design": design}), "validate")
    schema = yaml.safe_load(SCHEMA.read_text())["properties"]["studies"]["additionalProperties"]
    required = {*schema["required"], *schema["then" if design == "association" else "else"]["required"]}
    for key in cfg.STAGE_KEYS["validate"]:
        incomplete = copy.deepcopy(study)
        block, name = _at(incomplete, key)
        del block[name]
        entry, _ = _at(schema["properties"], key.replace(".", ".properties."))
        if "default" in entry[name] or key in required:
            with pytest.raises(KeyError) as missing:
                cfg.ValidateSettings.from_study(incomplete)
            assert missing.value.args == (name,), key
        else:
            assert getattr(cfg.ValidateSettings.from_study(incomplete), _field(key)) in (None, (), False), key
