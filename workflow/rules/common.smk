# Helpers shared by the rules: study lookup, gene-set paths and the ctra command.
import json
import sys
from pathlib import Path

STUDIES = sorted(config["studies"])
GENE_SET_DIR = Path(workflow.basedir) / "resources" / "gene_sets"
SAMPLES_SCHEMA = str(Path(workflow.basedir) / "workflow" / "schemas" / "samples.schema.yaml")
# Same interpreter as Snakemake, so the installed ctra is used even without an activated venv.
CTRA = f"{sys.executable} -m ctra.cli"


wildcard_constraints:
    study="[A-Za-z0-9][A-Za-z0-9_.-]*",


def study_config(wildcards):
    """The study's config block (schema defaults filled in); a clear error for unknown names."""
    if wildcards.study not in config["studies"]:
        raise ValueError(
            f"unknown study '{wildcards.study}'; the config defines: {', '.join(STUDIES)}"
        )
    return config["studies"][wildcards.study]


def study_json(wildcards):
    return json.dumps(study_config(wildcards), sort_keys=True)


def gene_set_path(name):
    """A bare name is a file in resources/gene_sets/; anything else is a path."""
    bundled = GENE_SET_DIR / f"{name}.tsv"
    return str(bundled) if "/" not in name and not name.endswith(".tsv") else name


def gene_set_file(wildcards):
    return gene_set_path(study_config(wildcards)["gene_set"])


def marker_file(wildcards):
    return gene_set_path(study_config(wildcards)["marker_set"])
