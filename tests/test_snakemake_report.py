"""`snakemake --report report.zip` after a run: the per-study HTML report and the key tables, with captions."""

from __future__ import annotations

import re
import zipfile

from conftest import REPO, run_snakemake

MARKED = ("report.html", "scores.tsv", "genes_used.tsv", "contrasts.tsv", "genes.tsv")


def test_snakemake_report_zip_has_study_report_and_tables_with_captions(example_run):
    """After the shared example run (``conftest.example_run``), in its working directory."""
    workdir = example_run.parents[1]
    made = run_snakemake(workdir, "--report", "report.zip")
    assert made.returncode == 0, made.stderr[-4000:]

    with zipfile.ZipFile(workdir / "report.zip") as archive:
        names = archive.namelist()
        index = archive.read("report/report.html").decode()
        # each marked file is in the archive once, unchanged
        for name in MARKED:
            entries = [n for n in names if re.fullmatch(rf"report/data/raw/[^/]+/{re.escape(name)}", n)]
            assert len(entries) == 1, f"{name} not in report.zip: {names}"
            assert archive.read(entries[0]) == (example_run / name).read_bytes()
    # captions (workflow/report/*.rst), rendered with the study name
    assert "self-contained HTML report for study" in index
    assert "Which genes of the CTRA set and of the leukocyte marker set were used for study" in index
    assert "Arm x time contrasts for study" in index
    if re.search(r"^report:", (REPO / "workflow" / "Snakefile").read_text(), re.M):  # the workflow description
        assert "independently and in parallel on a cluster" in index
