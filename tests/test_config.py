"""ctra.config: each stage's settings are the keys it reads, and its typed settings build from them alone."""

from __future__ import annotations

import pytest
import yaml

from conftest import REPO
from ctra import config as cfg

TYPED = {
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
