"""ctra as a Snakemake module of another workflow, deployed the way `snakedeploy deploy-workflow` does it.

A parent workflow in a temporary directory (its own `workflow/Snakefile` and `config/config.yaml`, as snakedeploy
writes them) imports ctra with `module ctra: snakefile: <ctra>/workflow/Snakefile; config: config` and
`use rule * from ctra as ctra_*`, and has a rule of its own that also writes under `results/`. Its config is ctra's
example config with the counts and sample sheet given by absolute path (the example's relative paths are relative
to ctra's clone, not to the parent's directory). The tables it writes into the parent's `results/` must be byte
for byte those of a direct run (the top-level Snakefile with `--snakefile/--directory`, as tests/test_workflow.py
runs it), with the same config; few permutation and random-gene-set draws keep both runs short.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from conftest import run_example
from test_workflow import TABLES

pytestmark = pytest.mark.slow  # two full Snakemake runs (~45 s): in the slow suite, which CI runs

FAST = {"permutations": 200, "gene_sets": 50}
PARENT_TARGETS = ("results/example/report.html", "results/notes/hello.txt")
LOCAL_RULES = [
    "ctra_effect",
    "ctra_mediation",
    "ctra_outcomes",
    "ctra_power",
    "ctra_report",
    "ctra_score",
    "ctra_validate",
]

PARENT_SNAKEFILE = """\
configfile: "config/config.yaml"


module ctra:
    snakefile:
        {snakefile!r}
    config:
        config


use rule * from ctra as ctra_*


rule all:
    default_target: True
    input:
        rules.ctra_all.input,
        "results/notes/hello.txt",


rule hello:  # the parent's own rule, writing under results/ as well
    output:
        "results/notes/hello.txt",
    shell:
        "echo hello > {{output}}"
"""

# Which rules the parsed parent workflow runs locally (not on a cluster). Snakemake has no command-line view of
# this (a dry run does not say), so the workflow is parsed through its Python API; `_localrules` is internal.
LIST_LOCAL_RULES = """\
import json
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import OutputSettings, ResourceSettings
with SnakemakeApi(OutputSettings()) as api:
    parsed = api.workflow(snakefile=Path("workflow/Snakefile"), resource_settings=ResourceSettings(),
                          workdir=Path("."))
    print(json.dumps(sorted(parsed._workflow._localrules)))
"""


def example_config() -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    study = config["studies"]["example"]
    for key in ("counts", "samples"):
        study[key] = str(REPO / study[key])
    study["robustness"] = dict(FAST)
    return config


def parent_snakemake(parent: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`snakemake` in the parent's directory, which finds the parent's workflow/Snakefile by itself."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=parent, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    config = example_config()
    direct = tmp_path_factory.mktemp("direct")
    result = run_example(direct, config)
    assert result.returncode == 0, result.stderr[-3000:]

    parent = tmp_path_factory.mktemp("parent")
    (parent / "workflow").mkdir()
    (parent / "workflow" / "Snakefile").write_text(
        PARENT_SNAKEFILE.format(snakefile=str(REPO / "workflow" / "Snakefile"))
    )
    (parent / "config").mkdir()
    (parent / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    # the parent's own target on the command line: outside ctra's studies, under results/ all the same
    module_run = parent_snakemake(parent, "--cores", "2", *PARENT_TARGETS)
    assert module_run.returncode == 0, module_run.stderr[-3000:]
    return {"direct": direct, "parent": parent, "module_run": module_run}


def test_module_tables_byte_identical_to_direct_run(runs):
    direct, parent = runs["direct"] / "results" / "example", runs["parent"] / "results" / "example"
    for name in TABLES:
        assert (parent / name).read_bytes() == (direct / name).read_bytes(), name
    assert (parent / "report.html").stat().st_size > 0
    assert (runs["parent"] / "results" / "notes" / "hello.txt").read_text() == "hello\n"
    output = runs["module_run"].stdout + runs["module_run"].stderr
    assert "ctra_normalize" in output  # the prefix is applied


def test_workflow_snakefile_is_the_same_workflow_as_the_top_level_one(runs):
    """After the direct run (top-level Snakefile), workflow/Snakefile sees nothing to redo: same rules, same
    params, same shell commands, same input files."""
    dry = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "workflow" / "Snakefile"),
            "--directory",
            str(runs["direct"]),
            "--configfile",
            str(runs["direct"] / "config.yaml"),
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "Nothing to be done" in dry.stdout + dry.stderr, (dry.stdout + dry.stderr)[-3000:]


def test_prefixed_local_rules(runs):
    listed = subprocess.run(
        [sys.executable, "-c", LIST_LOCAL_RULES], cwd=runs["parent"], capture_output=True, text=True, timeout=300
    )
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert json.loads(listed.stdout.strip().splitlines()[-1]) == LOCAL_RULES
    assert "localrules directive specifies rules that are not present" not in runs["module_run"].stderr


def test_report_zip_has_the_captions_under_the_prefix(runs):
    made = parent_snakemake(runs["parent"], "--report", "report.zip", timeout=300)
    assert made.returncode == 0, made.stderr[-3000:]
    with zipfile.ZipFile(runs["parent"] / "report.zip") as archive:
        index = archive.read("report/report.html").decode()
        names = archive.namelist()
    for name in (*TABLES, "report.html"):
        assert any(n.startswith("report/data/raw/") and n.endswith(f"/{name}") for n in names), name
    assert "Arm x time contrasts for study" in index  # a rule's caption (workflow/report/contrasts.rst)
    assert "independently and in parallel on a cluster" in index  # ctra's workflow description


def test_unknown_study_in_a_module_target_is_named(runs):
    """The command-line check is skipped in a module; the rules' input functions still name the study."""
    dry = parent_snakemake(runs["parent"], "--dry-run", "results/nosuch/report.html", timeout=300)
    assert dry.returncode != 0
    output = dry.stdout + dry.stderr
    assert "unknown study 'nosuch'" in output and "defines 'example'" in output, output[-3000:]
