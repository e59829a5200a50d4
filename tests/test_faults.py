"""Faults: runs killed with SIGKILL in every stage resume to byte-identical tables; one bad study
among several does not stop the good ones under ``--keep-going``.

Both tests share one uninterrupted reference run (module fixture): a config with a good study and a
bad one (negative counts), run with ``--keep-going``. The good study's tables are the reference the
killed-and-resumed runs must reproduce byte for byte.

How a killed run is resumed: SIGKILL leaves Snakemake's lock in ``.snakemake/locks``, so the rerun
needs ``snakemake --unlock`` first (Snakemake says so itself); then the same command. ctra writes
every output under a temporary name and renames it when complete, so a killed job leaves no
partial output; ``--rerun-incomplete`` is only needed when a kill lands between the renames of a
multi-output job (e.g. genes_used.tsv written, scores.tsv not yet). The test adds it only when
Snakemake asks for it and records which remedies each stage needed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from bad_inputs.cohort import CONFIG_SCHEMA, TABLES, TRACEBACK, Workdir, simulate

pytestmark = pytest.mark.slow

STUDY = "good"
CORES = 2
TARGETS = tuple(f"results/{STUDY}/{name}" for name in ("contrasts.tsv", "genes.tsv"))
# stages in DAG order, as named by their log files; stages a checkout lacks are skipped
STAGES = ("validate", "normalize", "score", "model", "null_0", "robustness")
STAGE_OUTPUTS = {
    "validate": ["validated.h5ad"],
    "normalize": ["normalized.h5ad"],
    "score": ["scores.tsv", "genes_used.tsv"],
    "model": ["work/model_contrasts.tsv", "genes.tsv", "model.json"],
    "null_0": ["work/null_0.tsv"],
    "robustness": ["contrasts.tsv"],
}
KILL_DELAY = 0.3  # seconds after the stage's log appears: the job is importing or computing
STAGE_TIMEOUT = 180


def _small_study() -> tuple:
    counts, sheet = simulate(n_per_arm=8, n_genes=600)
    schema = yaml.safe_load(CONFIG_SCHEMA.read_text())
    study_schema = schema["properties"]["studies"]["additionalProperties"]["properties"]
    extra = {}
    if "robustness" in study_schema:  # few permutation / random-set draws keep the run short
        extra["robustness"] = {"permutations": 20, "gene_sets": 10}
    return counts, sheet, extra


def _write_good(w: Workdir) -> None:
    counts, sheet, extra = _small_study()
    w.write_cohort(counts=counts, sheet=sheet, name=STUDY, **extra)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """Uninterrupted run of a good and a bad study with --keep-going (also the keep-going test)."""
    w = Workdir(tmp_path_factory.mktemp("reference"))
    _write_good(w)
    counts, sheet, extra = _small_study()
    counts.loc["TNF", "P02_post"] = -7  # a negative count
    w.write_cohort(counts=counts, sheet=sheet, name="bad", **extra)
    w.write_config()
    started = time.monotonic()
    result = w.snakemake(
        *TARGETS,
        "results/bad/contrasts.tsv",
        "results/bad/genes.tsv",
        cores=CORES,
        extra=("--keep-going",),
        timeout=600,
    )
    return {
        "workdir": w,
        "result": result,
        "seconds": time.monotonic() - started,
        "tables": {
            name: (w.results / STUDY / name).read_bytes() for name in TABLES if (w.results / STUDY / name).exists()
        },
    }


def test_keep_going_finishes_the_good_study_and_reports_the_bad_one(reference):
    w, result = reference["workdir"], reference["result"]
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert sorted(reference["tables"]) == sorted(TABLES), output
    assert "bad_counts.tsv" in output and "negative count" in output and "'TNF'" in output, output
    assert "Error in rule validate" in output and "study=bad" in output, output
    assert TRACEBACK not in output, output
    bad = w.results / "bad"
    left = sorted(str(p.relative_to(bad)) for p in bad.rglob("*") if p.is_file() and "logs" not in p.parts)
    assert left == [], left  # nothing of the bad study looks finished


def _wait_for(path: Path, process: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        if process.poll() is not None:
            return path.exists()
        time.sleep(0.02)
    return False


def _snakemake(w: Workdir, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        w.snakemake_command(*TARGETS, cores=CORES, extra=extra), cwd=w.root, capture_output=True, text=True, timeout=600
    )


def _resume(w: Workdir, stage: str | None, remedies: list[str]) -> subprocess.Popen | subprocess.CompletedProcess:
    """Start the same command again (and, for a stage, return it once that stage runs).

    Applies, and records in ``remedies``, what Snakemake asks for after a SIGKILL: ``--unlock`` for
    the stale lock, ``--rerun-incomplete`` for outputs of a job that was killed. Anything else fails.
    """
    extra: tuple[str, ...] = ()
    for _ in range(3):
        if stage is None:
            result = _snakemake(w, extra)
            text = result.stdout + result.stderr
            if "LockException" not in text and "IncompleteFilesException" not in text:
                return result
        else:
            err_path = w.root / f"snakemake_{stage}.err"
            with open(err_path, "w") as err:
                process = subprocess.Popen(
                    w.snakemake_command(*TARGETS, cores=CORES, extra=extra),
                    cwd=w.root,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    start_new_session=True,
                )
            log = w.results / STUDY / "logs" / f"{stage}.log"
            if _wait_for(log, process, STAGE_TIMEOUT):
                return process
            process.wait(timeout=60)
            text = err_path.read_text()
        if "LockException" in text:
            remedies.append("--unlock")
            unlock = _snakemake(w, ("--unlock",))
            assert unlock.returncode == 0, unlock.stderr[-2000:]
        elif "IncompleteFilesException" in text:
            remedies.append("--rerun-incomplete")
            extra = ("--rerun-incomplete",)
        else:
            raise AssertionError(f"stage {stage} never started:\n{text[-4000:]}")
    raise AssertionError(f"could not resume before {stage or 'the final run'}: {remedies}")


def test_sigkill_in_every_stage_then_rerun_gives_identical_tables(reference, tmp_path):
    """Chain: kill in stage 1; rerun (same command) and kill in stage 2; ...; the last rerun completes.

    Every rerun starts from the state an independent kill in that stage would leave: the earlier
    stages complete, the killed stage's outputs absent. The final tables must equal the reference.
    """
    assert sorted(reference["tables"]) == sorted(TABLES), "the reference run did not finish"
    stages = [s for s in STAGES if (reference["workdir"].results / STUDY / "logs" / f"{s}.log").exists()]
    assert stages[:4] == ["validate", "normalize", "score", "model"]
    w = Workdir(tmp_path)
    _write_good(w)
    w.write_config()
    remedies: dict[str, list[str]] = {}
    previous = "start"
    for stage in stages:
        remedies[f"after kill in {previous}"] = needed = []
        process = _resume(w, stage, needed)
        time.sleep(KILL_DELAY)
        assert process.poll() is None, f"snakemake ended before the kill in {stage}"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        finished = [o for o in STAGE_OUTPUTS[stage] if (w.results / STUDY / o).exists()]
        assert len(finished) < len(STAGE_OUTPUTS[stage]), f"{stage} had finished before the kill"
        previous = stage
    remedies[f"after kill in {previous}"] = needed = []
    started = time.monotonic()
    final = _resume(w, None, needed)
    output = final.stdout + final.stderr
    assert final.returncode == 0, output[-5000:]
    assert TRACEBACK not in output
    for name in TABLES:
        produced = (w.results / STUDY / name).read_bytes()
        assert produced == reference["tables"][name], f"{name} differs from the uninterrupted run"
    summary = {
        "stages_killed": stages,
        "remedies": remedies,
        "final_rerun_seconds": round(time.monotonic() - started, 1),
        "reference_seconds": round(reference["seconds"], 1),
    }
    print(json.dumps(summary))
    if os.environ.get("CTRA_FAULT_SUMMARY"):
        Path(os.environ["CTRA_FAULT_SUMMARY"]).write_text(json.dumps(summary, indent=1))
    assert all(set(r) <= {"--unlock", "--rerun-incomplete"} for r in remedies.values())
