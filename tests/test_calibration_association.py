"""The association design's p-values on simulated null cohorts (benchmarks/calibration_association.py).

The default suite runs one cohort per design through the same code; the slow test runs 200 null cohorts
per design and asserts that the honest columns' rejection-rate 95 % CIs overlap [2.5 %, 7.5 %], and
that ``per_gene_t`` (genes treated as independent) and the refit without the confounding covariates
reject more often: they are shown for what they are.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "calibration_association.py"


def load():
    spec = importlib.util.spec_from_file_location("calibration_association", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["calibration_association"] = module  # multiprocessing looks the module up by name
    spec.loader.exec_module(module)
    return module


calibration = load()
HONEST = ("p_value", "perm_p", "geneset_p", "gee_p")


@pytest.mark.parametrize("design", list(calibration.DESIGNS))
def test_one_cohort_per_design_gives_every_p_value(design):
    row = calibration.one_cohort((design, 1))
    for column in calibration.COLUMNS:
        assert 0 < row[column] <= 1, (column, row[column])


@pytest.mark.slow
def test_association_p_values_hold_their_size():
    results = calibration.run(list(calibration.DESIGNS), cohorts=200, processes=2)
    summary = calibration.summarise(results)
    print(calibration.markdown(summary))
    rates = summary[summary["column"].isin(HONEST)]
    outside = rates[(rates["ci_high"] < 0.025) | (rates["ci_low"] > 0.075)]
    assert outside.empty, outside.to_string()
    inflated = summary[summary["column"] == "per_gene_p"]
    assert (inflated["rate"] > 0.10).all(), inflated.to_string()
