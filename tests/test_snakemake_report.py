"""`snakemake --report report.zip` after a run: the per-study HTML report and the key tables, with captions."""

from __future__ import annotations

import re
import zipfile

import yaml

from conftest import REPO, run_snakemake

MARKED = ("report.html", "scores.tsv", "genes_used.tsv", "contrasts.tsv", "genes.tsv")


def test_snakemake_report_zip_has_study_report_and_tables_with_captions(tmp_path):
    example = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["studies"]["example"]
    for key in ("counts", "samples"):  # relative paths resolve against --directory, so make them absolute
        example[key] = str((REPO / example[key]).resolve())
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"studies": {"example": example}}))

    run = run_snakemake(tmp_path, "--cores", "2")
    assert run.returncode == 0, run.stderr[-4000:]
    made = run_snakemake(tmp_path, "--report", "report.zip")
    assert made.returncode == 0, made.stderr[-4000:]

    with zipfile.ZipFile(tmp_path / "report.zip") as archive:
        names = archive.namelist()
        index = archive.read("report/report.html").decode()
        # each marked file is in the archive once, unchanged
        for name in MARKED:
            entries = [n for n in names if re.fullmatch(rf"report/data/raw/[^/]+/{re.escape(name)}", n)]
            assert len(entries) == 1, f"{name} not in report.zip: {names}"
            assert archive.read(entries[0]) == (tmp_path / "results" / "example" / name).read_bytes()
    # captions (workflow/report/*.rst), rendered with the study name
    assert "self-contained HTML report for study" in index
    assert "Which genes of the CTRA set and of the leukocyte marker set were used for study" in index
    assert "Arm x time contrasts for study" in index
    if re.search(r"^report:", (REPO / "workflow" / "Snakefile").read_text(), re.M):  # the workflow description
        assert "independently and in parallel on a cluster" in index
