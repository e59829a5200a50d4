"""The primary endpoint's roles and Holm adjustment, checked by hand and against statsmodels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctra.config import PrimarySettings
from ctra.endpoints import holm, mark_endpoints, primary_endpoint

CTRA_ARM_X_TIME = PrimarySettings(score="ctra", contrast="arm_x_time", term=None)


def test_holm_matches_hand_computed_values_and_statsmodels():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.uniform(size=rng.integers(1, 8)) ** 2
        assert holm(q) == pytest.approx(multipletests(q, method="holm")[1])


def test_holm_counts_a_test_that_could_not_be_computed():
    assert np.isnan(holm(np.array([np.nan, 0.02]))[0])
    assert holm(np.array([np.nan, 0.02]))[1] == pytest.approx(0.04)


def contrasts() -> pd.DataFrame:
    rows = []
    for model in ("lmm", "gee_genes", "per_gene_t"):
        for score in ("ctra", "inflammatory"):
            for contrast, arm in (("arm_x_time", "self"), ("arm_x_time", "others"), ("change", "control")):
                rows.append(
                    {
                        "score": score,
                        "model": model,
                        "contrast": contrast,
                        "arm": arm,
                        "time": "post",
                        "estimate": 0.1,
                        "p_value": {"self": 0.02, "others": 0.03, "control": 0.5}[arm],
                    }
                )
    return pd.DataFrame(rows)


def test_roles_and_family():
    table = mark_endpoints(contrasts(), primary_endpoint(CTRA_ARM_X_TIME, True))
    primary = table[table["role"] == "primary"]
    assert list(zip(primary["model"], primary["score"], primary["arm"])) == [
        ("lmm", "ctra", "self"),
        ("lmm", "ctra", "others"),
    ]
    assert primary["p_holm"].tolist() == pytest.approx([0.04, 0.04])
    assert table.loc[table["role"] != "primary", "p_holm"].isna().all()
    assert set(table.loc[table["model"] == "gee_genes", "role"]) == {"sensitivity"}
    # the as-published per-gene t is built to be anti-conservative: never a sensitivity check
    assert set(table.loc[table["model"] == "per_gene_t", "role"]) == {"as_published"}
    assert set(table.loc[(table["model"] == "lmm") & (table["score"] == "inflammatory"), "role"]) == {"exploratory"}
    assert list(table.columns[:4]) == ["score", "model", "role", "contrast"] and table.columns[-1] == "note"


def test_single_arm_study_uses_within_arm_change_and_another_score_can_be_primary():
    assert primary_endpoint(CTRA_ARM_X_TIME, has_control=False) == {
        "score": "ctra",
        "contrast": "change",
    }
    inflammatory = PrimarySettings(score="inflammatory", contrast="arm_x_time", term=None)
    table = mark_endpoints(contrasts(), primary_endpoint(inflammatory, True))
    assert set(table.loc[table["role"] == "primary", "score"]) == {"inflammatory"}
