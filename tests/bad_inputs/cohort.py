"""A tiny synthetic cohort and the helpers to run ctra on it the way the workflow does.

The cohort: 24 participants (12 control, 12 treat), blood drawn pre and post, 1,200 genes (all 53
CTRA genes, the 8 leukocyte markers and synthetic others), negative-binomial counts from a fixed
seed. Small enough that ``ctra validate`` runs in about a second and the whole workflow in ~10 s.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ctra.config import ValidateSettings, stage_settings

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "Snakefile"
GENE_SET_DIR = REPO / "resources" / "gene_sets"
CTRA53 = GENE_SET_DIR / "ctra53.tsv"
MARKERS = GENE_SET_DIR / "leukocyte_markers.tsv"
SAMPLES_SCHEMA = REPO / "workflow" / "schemas" / "samples.schema.yaml"
CONFIG_SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"

N_PER_ARM = 12
ARMS = ("control", "treat")
TIMES = ("pre", "post")
N_GENES = 1200
SEED = 20240611
TRACEBACK = "Traceback (most recent call last)"
# every output a stage writes; none of them may exist after a failed stage (or any later one)
STAGE_OUTPUTS = {
    "validate": ["validated.h5ad"],
    "normalize": ["normalized.h5ad"],
    "score": ["scores.tsv", "genes_used.tsv"],
    "model": ["contrasts.tsv", "genes.tsv", "model.json"],
    "report": ["report.html"],
}
TABLES = ("scores.tsv", "genes_used.tsv", "contrasts.tsv", "genes.tsv")


def gene_sets() -> tuple[pd.DataFrame, pd.DataFrame]:
    read = lambda p: pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False)  # noqa: E731
    return read(CTRA53), read(MARKERS)


def simulate(seed: int = SEED, n_per_arm: int = N_PER_ARM, n_genes: int = N_GENES) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(counts genes x samples with index name 'gene', sample sheet) as int / str frames."""
    rng = np.random.default_rng(seed)
    ctra, markers = gene_sets()
    named = list(ctra["gene"]) + [g for g in markers["gene"] if g not in set(ctra["gene"])]
    genes = named + [f"SYN{i:05d}" for i in range(1, n_genes - len(named) + 1)]
    rows = []
    for a, arm in enumerate(ARMS):
        for i in range(n_per_arm):
            pid = f"P{a * n_per_arm + i + 1:02d}"
            age = int(rng.integers(25, 70))
            sex = "F" if rng.random() < 0.5 else "M"
            for time in TIMES:
                rows.append(
                    {
                        "sample": f"{pid}_{time}",
                        "participant": pid,
                        "arm": arm,
                        "time": time,
                        "age": str(age),
                        "sex": sex,
                    }
                )
    sheet = pd.DataFrame(rows)
    # make sure both sexes occur in both arms (a categorical covariate must vary)
    sheet.loc[sheet["participant"].isin(["P01", f"P{n_per_arm + 1:02d}"]), "sex"] = "F"
    sheet.loc[sheet["participant"].isin(["P02", f"P{n_per_arm + 2:02d}"]), "sex"] = "M"
    means = np.exp(rng.normal(4.0, 1.8, len(genes)))
    means[: len(named)] = np.exp(rng.uniform(np.log(60), np.log(3000), len(named)))
    n_samples = len(sheet)
    participant = pd.factorize(sheet["participant"])[0]
    person = rng.normal(0, 0.25, (participant.max() + 1, len(genes)))[participant]
    log_mu = np.log(means)[None, :] + person + rng.normal(0, 0.2, (n_samples, len(genes)))
    library = np.exp(rng.normal(0, 0.2, n_samples))[:, None]
    mu = library * np.exp(log_mu)
    alpha = 0.05 + 1.0 / np.maximum(means, 1)[None, :]
    counts = rng.negative_binomial(1 / alpha, 1 / (1 + alpha * mu))
    table = pd.DataFrame(counts.T, index=pd.Index(genes, name="gene"), columns=sheet["sample"].tolist())
    return table, sheet


_CACHE: dict = {}


def base_cohort() -> tuple[pd.DataFrame, pd.DataFrame]:
    if "cohort" not in _CACHE:
        _CACHE["cohort"] = simulate()
    counts, sheet = _CACHE["cohort"]
    return counts.copy(), sheet.copy()


def study_block(counts: str = "data/counts.tsv", samples: str = "data/samples.tsv", **extra) -> dict:
    block = {
        "counts": counts,
        "samples": samples,
        "columns": {"sample": "sample", "participant": "participant", "arm": "arm", "time": "time"},
        "baseline": "pre",
        "control": "control",
        "covariates": ["age", "sex"],
    }
    block.update(extra)
    return block


def with_defaults(study: dict) -> dict:
    """The study block as the rules see it: schema defaults filled in (as the Snakefile's validate)."""
    from snakemake.utils import validate

    config = {"studies": {"s": copy.deepcopy(study)}}
    validate(config, str(CONFIG_SCHEMA))
    return config["studies"]["s"]


def validate_settings(study: dict) -> ValidateSettings:
    """The validate stage's settings of a study block as ``ctra validate`` builds them from the rule's JSON:
    schema defaults filled in, then the keys the stage reads (``ctra.config.stage_settings``)."""
    return ValidateSettings.from_study(stage_settings(with_defaults(study), "validate"))


def write_table(frame: pd.DataFrame, path: Path, sep: str = "\t", index: bool = True, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep=sep, index=index, lineterminator=kw.pop("lineterminator", "\n"), **kw)
    return path


@dataclass
class Workdir:
    """A tmp working directory with data/ inputs and a config; runs ctra there."""

    root: Path
    studies: dict = field(default_factory=dict)

    @property
    def results(self) -> Path:
        return self.root / "results"

    def write_cohort(
        self, counts: pd.DataFrame | None = None, sheet: pd.DataFrame | None = None, name: str = "s", **study_extra
    ) -> dict:
        base_counts, base_sheet = base_cohort()
        counts = base_counts if counts is None else counts
        sheet = base_sheet if sheet is None else sheet
        write_table(counts, self.root / "data" / f"{name}_counts.tsv")
        write_table(sheet, self.root / "data" / f"{name}_samples.tsv", index=False)
        study = study_block(f"data/{name}_counts.tsv", f"data/{name}_samples.tsv", **study_extra)
        self.studies[name] = study
        return study

    def write_config(self, config: dict | str | None = None) -> Path:
        path = self.root / "config.yaml"
        if config is None:
            config = {"studies": self.studies}
        path.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))
        return path

    def validate_cli(
        self, name: str = "s", study: dict | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        """``ctra validate`` with the arguments workflow/rules/validate.smk builds, cwd = root."""
        study = with_defaults(study if study is not None else self.studies[name])
        command = [
            sys.executable,
            "-m",
            "ctra.cli",
            "validate",
            "--study",
            name,
            "--study-config",
            json.dumps(study, sort_keys=True),
            "--gene-set",
            str(CTRA53),
            "--markers",
            str(MARKERS),
            "--samples-schema",
            str(SAMPLES_SCHEMA),
            "--out",
            f"results/{name}/validated.h5ad",
            "--log",
            f"results/{name}/logs/validate.log",
        ]
        return subprocess.run(command, cwd=self.root, capture_output=True, text=True, timeout=timeout)

    def snakemake_command(self, *targets: str, cores: int = 1, extra: tuple[str, ...] = ()) -> list[str]:
        return [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(SNAKEFILE),
            "--directory",
            str(self.root),
            "--configfile",
            str(self.root / "config.yaml"),
            "--cores",
            str(cores),
            *extra,
            *targets,
        ]

    def snakemake(
        self, *targets: str, cores: int = 1, extra: tuple[str, ...] = (), timeout: float = 300, env: dict | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.snakemake_command(*targets, cores=cores, extra=extra),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )

    def outputs(self) -> list[str]:
        """Stage outputs present under results/ (relative paths), logs and hidden temp files aside."""
        names = {n for outs in STAGE_OUTPUTS.values() for n in outs}
        if not self.results.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.results)) for p in self.results.rglob("*") if p.is_file() and p.name in names
        )


# ----------------------------------------------------------------------------------------------
# The cohort as core facilities deliver it (nf-core/rnaseq salmon and RSEM tables, GENCODE ids)
# ----------------------------------------------------------------------------------------------

FAKE_ENSEMBL_START = 99_000_000  # synthetic genes get ENSG ids far from any real one


def ensembl_ids(genes: list[str], versions: bool = True, renumbered: tuple[str, ...] = ()) -> list[str]:
    """A GENCODE-style id per gene: the gene set's Ensembl id (with a version suffix), a synthetic
    id for genes without one (IGLL3P, the SYN genes) and for ``renumbered`` genes (as if the id
    changed between annotation releases: only their symbol can find them)."""
    ctra, markers = gene_sets()
    known = {
        g: e.split(";")[0]
        for g, e in zip([*ctra["gene"], *markers["gene"]], [*ctra["ensembl_id"], *markers["ensembl_id"]])
        if e
    }
    ids = []
    for i, gene in enumerate(genes):
        base = known.get(gene) if gene not in renumbered else None
        base = base or f"ENSG{FAKE_ENSEMBL_START + i:011d}"
        ids.append(f"{base}.{1 + i % 19}" if versions else base)
    return ids


def estimated_counts(counts: pd.DataFrame, seed: int = 5) -> pd.DataFrame:
    """Salmon/RSEM-like expected counts: non-integer, about the integer counts, zeros kept."""
    rng = np.random.default_rng(seed)
    jitter = rng.uniform(-0.49, 0.49, counts.shape)
    return (counts + np.where(counts > 0, jitter, 0)).clip(lower=0).round(3)


def salmon_table(
    counts: pd.DataFrame, renumbered: tuple[str, ...] = ("CD3E",), aliases: dict | None = None, par_y: int = 0
) -> pd.DataFrame:
    """nf-core/rnaseq ``salmon.merged.gene_counts.tsv``: gene_id (GENCODE, versioned), gene_name, then
    one column of estimated counts per sample. ``aliases`` writes an old symbol in gene_name (e.g.
    IL8 for CXCL8); ``par_y`` appends that many ``_PAR_Y`` rows (chrY copies of the first genes,
    all zero but the first, which gets a few reads)."""
    genes = counts.index.tolist()
    frame = estimated_counts(counts)
    frame.insert(0, "gene_name", [(aliases or {}).get(g, g) for g in genes])
    frame.insert(0, "gene_id", ensembl_ids(genes, renumbered=renumbered))
    if par_y:
        par = frame.iloc[:par_y].copy()
        par["gene_id"] = par["gene_id"] + "_PAR_Y"
        par.iloc[:, 2:] = 0.0
        par.iloc[0, 2:] = 2.0
        frame = pd.concat([frame, par])
    return frame.reset_index(drop=True)


def rsem_table(counts: pd.DataFrame) -> pd.DataFrame:
    """nf-core/rnaseq ``rsem.merged.gene_counts.tsv``: gene_id, transcript_id(s), expected counts."""
    genes = counts.index.tolist()
    frame = estimated_counts(counts, seed=6).round(2)
    frame.insert(
        0,
        "transcript_id(s)",
        [",".join(f"ENST{90_000_000 + 3 * i + k:011d}.1" for k in range(1 + i % 3)) for i in range(len(genes))],
    )
    frame.insert(0, "gene_id", ensembl_ids(genes, versions=False))
    return frame.reset_index(drop=True)


def write_xlsx(
    frame: pd.DataFrame,
    path: Path,
    sheet: str = "Sheet1",
    before: dict | None = None,
    number_formats: dict | None = None,
    index: bool = False,
) -> Path:
    """A workbook with ``frame`` on worksheet ``sheet`` (after the worksheets in ``before``: name ->
    rows). Cells are written as Excel holds them: numbers as numbers, text as text;
    ``number_formats`` maps (row, column) of ``frame`` (0-based, header excluded) to
    (number, format) to write that cell as a formatted number (e.g. (7, "000"): shows 007)."""
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for name, rows in (before or {}).items():
        other = workbook.create_sheet(name)
        for row in rows:
            other.append(row)
    sheet_ = workbook.create_sheet(sheet)
    frame = frame.reset_index() if index else frame
    sheet_.append([str(c) for c in frame.columns])
    for r, row in enumerate(frame.itertuples(index=False)):
        cells = []
        for value in row:
            if isinstance(value, (np.integer, np.floating)):
                value = value.item()
            cells.append(value)
        sheet_.append(cells)
        for c in range(len(cells)):
            if (r, c) in (number_formats or {}):
                number, fmt = number_formats[(r, c)]
                cell = sheet_.cell(row=r + 2, column=c + 1, value=number)
                cell.number_format = fmt
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(path)
    return path
