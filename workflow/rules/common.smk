# Helpers shared by the rules: ctra's own files, config checks, study lookup, gene-set paths and the ctra command.
#
# The checks below run when the workflow is parsed, so that a bad config, an unknown study on the
# command line or an unusable results/ directory stop the run with one message (WorkflowError,
# shown by Snakemake without a Python traceback) before any job starts. They also run when another
# workflow imports ctra as a module (`module ctra: ...`), except the command-line one (_check_targets).
import difflib
import json
import os
import re
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.sourcecache import LocalSourceFile

from ctra.config import stage_settings, synthesis_studies
from ctra.errors import InputError

# Files shipped with ctra (schemas, gene sets) are found relative to this file (ctra's workflow/rules/), never
# through workflow.basedir: that is the main Snakefile's directory, the user's own one when ctra is a module.
RULES_DIR = workflow.current_basedir  # only valid while this file is parsed, hence kept


def shipped_file(relative):
    """Local path of a file shipped with ctra, given relative to ctra's repository root.

    From a checkout (a clone, `--snakefile /path/to/ctra/Snakefile`, or a module imported by a local path): the
    file itself, so the path is the same in every run and Snakemake's params/input tracking sees no change. From
    a module imported from a git repository (`github(...)`, `gitlab(...)`, `gitfile(...)`): Snakemake's local copy
    (`workflow.source_path`; kept across runs for a tag or commit, which snakedeploy always sets)."""
    if isinstance(RULES_DIR, LocalSourceFile):
        return os.path.normpath(os.path.join(RULES_DIR.get_path_or_uri(secret_free=False), "..", "..", relative))
    return workflow.source_path(f"../../{relative}")


CONFIG_SCHEMA = Path(shipped_file("workflow/schemas/config.schema.yaml"))
# the name of the `module` statement that imports ctra into another workflow; None when ctra is the main workflow
MODULE = getattr(workflow.modifier, "namespace", None)
# study names become directory names under results/: never '..', '/', or a leading dot
STUDY_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
# command-line options after which the results/ directory is not written to
NO_WRITE_OPTIONS = {
    "-n",
    "--dry-run",
    "--dryrun",
    "--unlock",
    "--lint",
    "-l",
    "--list",
    "--list-rules",
    "--list-target-rules",
    "--summary",
    "-S",
    "--detailed-summary",
    "-D",
    "--dag",
    "--rulegraph",
    "--filegraph",
    "--cleanup-metadata",
    "--print-compilation",
}


def _config_files():
    files = [str(f) for f in getattr(workflow, "configfiles", [])]
    return ", ".join(files) if files else "the config"


def _config_problems(config):
    """Schema violations as short sentences (the key path, the offending key or value, the fix)."""
    import jsonschema

    schema = yaml.safe_load(CONFIG_SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path]):
        where = " -> ".join(str(p) for p in error.absolute_path) or "top level"
        if error.validator == "additionalProperties":
            allowed = list(error.schema.get("properties", {}))
            for key in sorted(set(error.instance) - set(allowed), key=str):
                near = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"; did you mean '{near[0]}'?" if near else f"; allowed keys: {', '.join(allowed)}"
                problems.append(f"{where}: '{key}' was unexpected (not a ctra setting{hint})")
        elif "propertyNames" in error.schema_path:
            problems.append(_bad_study_name(error.instance))
        else:
            problems.append(f"{where}: {error.message}")
    return problems


def _bad_study_name(name):
    return (
        f"studies: study name {name!r} is not allowed: study names become directories under results/, "
        "so use letters, digits, '_', '.' and '-', starting with a letter or digit"
    )


def _check_config(config):
    problems = _config_problems(config)
    studies = config.get("studies") if isinstance(config, dict) else None
    if isinstance(studies, dict):
        for name in studies:
            if not isinstance(name, str) or not re.fullmatch(STUDY_NAME, name):
                problems.append(_bad_study_name(name))
    problems = list(dict.fromkeys(problems))
    if problems:
        listed = "\n".join(f"  - {p}." for p in problems)
        raise WorkflowError(f"{_config_files()}: the config has {len(problems)} problem(s):\n{listed}")
    # fill in the schema's defaults (as snakemake.utils.validate does; a no-op if already filled)
    from snakemake.utils import validate as _fill_defaults

    _fill_defaults(config, str(CONFIG_SCHEMA))


# options whose value is a path, not a target
PATH_OPTIONS = {
    "--configfile",
    "--configfiles",
    "--snakefile",
    "-s",
    "--directory",
    "-d",
    "--profile",
    "--workflow-profile",
    "--report",
    "--report-stylesheet",
    "--conda-prefix",
    "--apptainer-prefix",
    "--singularity-prefix",
    "--shadow-prefix",
    "--log-handler-script",
    "--cluster-config",
}


def _requested_studies():
    """Study names in command-line targets of the form results/<study>/... (Snakemake does not
    expose its targets while parsing, so the command line is read; anything else is ignored)."""
    names = []
    tokens = sys.argv[1:]
    for position, token in enumerate(tokens):
        if token.startswith("-") or "/" not in token:
            continue
        if position and tokens[position - 1] in PATH_OPTIONS:
            continue
        try:
            relative = Path(os.path.relpath(os.path.abspath(token)))
        except ValueError:
            continue
        parts = relative.parts
        if len(parts) >= 3 and parts[0] == "results":
            names.append((parts[1], token))
    return names


def _check_targets():
    # Skipped when ctra is a module: the importing workflow's own targets (say results/qc/multiqc.html) cannot be
    # told from ctra's while ctra is parsed. An unknown study in a ctra target still stops the run, with the same
    # message, when Snakemake builds the DAG (study_config, called by the rules' input functions).
    if MODULE is not None:
        return
    for name, token in _requested_studies():
        if name == "synthesis" and not config.get("synthesis"):
            raise WorkflowError(
                f"the requested target '{token}' is the synthesis across studies, which this config does not ask "
                "for: add `synthesis: true` (every trial study with the same primary score) or "
                "`synthesis: {studies: [...]}` to the config."
            )
        if name not in config["studies"] and name != "synthesis":
            raise WorkflowError(_unknown_study(name, f" in the requested target '{token}'"))


def _unknown_study(name, where=""):
    defined = ", ".join(f"'{s}'" for s in STUDIES)
    return (
        f"unknown study '{name}'{where}: the config ({_config_files()}) defines {defined}. Outputs are "
        "results/<study>/..., with <study> one of the names under `studies:`."
    )


def _check_results_dir():
    """results/ must be a writable directory (or creatable here) before any job starts (ctra as a module, too,
    writes under the working directory's results/)."""
    if NO_WRITE_OPTIONS.intersection(sys.argv[1:]):
        return
    results = Path("results")
    if results.is_symlink() and not results.exists():
        raise WorkflowError(
            f"'{results.absolute()}' is a broken symbolic link; ctra writes every output under "
            "results/<study>/: fix or remove the link."
        )
    if results.exists() and not results.is_dir():
        raise WorkflowError(
            f"'{results.absolute()}' exists but is not a directory; ctra writes every output "
            "under results/<study>/: move or rename that file, or run in another directory."
        )
    directories = (
        [results, *[results / s for s in STUDIES if (results / s).is_dir()]] if results.exists() else [Path(".")]
    )
    for directory in directories:
        if not os.access(directory, os.W_OK | os.X_OK):
            raise WorkflowError(
                f"'{directory.absolute()}' is not writable (permissions, a read-only file system "
                "or an immutable flag); ctra writes every output under results/<study>/: make it "
                "writable or run in another directory."
            )


_check_config(config)
STUDIES = sorted(config["studies"])
_check_targets()
_check_results_dir()
# an input of validate (not a param), so that from a git repository Snakemake tracks the file, not its cached copy
SAMPLES_SCHEMA = shipped_file("workflow/schemas/samples.schema.yaml")
# The rules run `"$CTRA_PYTHON" -m ctra.cli <stage>`: the interpreter running Snakemake, so the installed ctra is
# used even without an activated venv. It reaches the shell through the environment (set here, in every Snakemake
# process that parses the workflow, cluster jobs included), not as a Snakemake variable: a module's globals are
# not seen when Snakemake formats its rules' shell commands (snakemake issue #2499), and as a param or in the
# command text the path (`.venv/bin/python` under `python -m snakemake`, `python3` under `snakemake`) would make
# Snakemake rerun every job whenever it differs. (Set here, never read from the user's environment: not a case for
# the `envvars:` directive, which `snakemake --lint` suggests for `os.environ[...]`.)
os.environ.update(CTRA_PYTHON=sys.executable)


wildcard_constraints:
    # results/synthesis/ is the synthesis across studies (synthesis.smk), never a study
    study=f"(?!synthesis/){STUDY_NAME}",
    chunk="[0-9]+",


def study_config(wildcards):
    """The study's config block (schema defaults filled in); a clear error for unknown names."""
    if wildcards.study not in config["studies"]:
        raise WorkflowError(_unknown_study(wildcards.study))
    return config["studies"][wildcards.study]


def normalize_memory_factor(wildcards):
    """MB of memory per MB of validated.h5ad that the normalize stage needs (see normalize.smk)."""
    return 20 if study_config(wildcards)["normalization"] == "pydeseq2" else 3


def stage_json(stage):
    """Params function: the settings the stage reads (ctra.config.STAGE_KEYS) as JSON, so that Snakemake reruns a
    job only when a setting of its own stage changes."""
    return lambda wildcards: json.dumps(stage_settings(study_config(wildcards), stage), sort_keys=True)


def gene_set_path(name):
    """A bare name is a file in ctra's resources/gene_sets/; anything else is a path."""
    if Path(name).name != name or name.endswith(".tsv"):  # a directory part: a path
        return name
    try:
        return shipped_file(f"resources/gene_sets/{name}.tsv")
    except Exception as error:  # a module from a git repository that has no such file
        raise WorkflowError(
            f"gene set '{name}': ctra has no resources/gene_sets/{name}.tsv ({error}); give a "
            "bundled name (ctra53, leukocyte_markers) or a path to a TSV of the same format."
        )


def gene_set_file(wildcards):
    return gene_set_path(study_config(wildcards)["gene_set"])


def marker_file(wildcards):
    return gene_set_path(study_config(wildcards)["marker_set"])


def null_chunk_files(wildcards):
    """The study's null-draw chunks, in chunk order (so gathering is deterministic)."""
    chunks = study_config(wildcards)["robustness"]["chunks"]
    return [f"results/{wildcards.study}/work/null_{k}.tsv" for k in range(chunks)]


def has_outcome_rows(study):
    """Trials with `outcomes:` or `dose:` get the outcomes rule's rows in contrasts.tsv."""
    return bool(study.get("outcomes") or study.get("dose"))


def outcome_contrast_files(wildcards):
    """work/outcome_contrasts.tsv for a study with `outcomes:` or `dose:`, else nothing (the rule does not run)."""
    if has_outcome_rows(study_config(wildcards)):
        return [f"results/{wildcards.study}/work/outcome_contrasts.tsv"]
    return []


def mediation_files(wildcards):
    """mediation.tsv for a study with `mediation:` (the report shows it), else nothing."""
    if study_config(wildcards).get("mediation") is not None:
        return [f"results/{wildcards.study}/mediation.tsv"]
    return []


# ---------------------------------------------------------------- power (power.smk) and synthesis (synthesis.smk)


def power_file(wildcards):
    """The study's power.tsv when `power: enabled` (the report's Power section reads it), else nothing. Trial
    studies only: the planning model is the arm x time contrast (an association study has no arm or baseline)."""
    study = study_config(wildcards)
    return [f"results/{wildcards.study}/power.tsv"] if study["power"]["enabled"] and study["design"] == "trial" else []


def _synthesis_plan():
    try:
        return synthesis_studies(config)
    except InputError as error:
        listed = "\n".join(f"  - {p}." for p in error.problems)
        raise WorkflowError(f"{_config_files()}: the synthesis cannot run:\n{listed}")


SYNTHESIS = _synthesis_plan()
