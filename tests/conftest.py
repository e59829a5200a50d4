"""Shared test helpers: repo paths, the real cohort's location, and a small simulated cohort."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_COHORT = REPO.parent / "shared" / "data" / "real" / "lemay2019_wholeblood_highfat_meal"
GENE_SETS = REPO / "resources" / "gene_sets"

requires_real_cohort = pytest.mark.skipif(
    not (REAL_COHORT / "fixed_combinedCounts.txt.gz").exists(),
    reason=f"real whole-blood cohort not found at {REAL_COHORT} (../shared is absent on this machine)",
)
