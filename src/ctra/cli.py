"""Command line: one subcommand per workflow stage, each parsed into one call of ``ctra.stages``.

Snakemake rules call these so that every stage can also be run (and debugged) by hand. Problems
with user input end the command with one message on stderr and in the log, exit status 1, and no
traceback; outputs are written to a temporary name and renamed only when complete (``ctra.results``).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Callable

from . import stages
from .errors import InputError

log = logging.getLogger("ctra")
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)
# parsed options that are not a stage function's arguments
NOT_ARGUMENTS = ("func", "command", "log", "study_config")


def _call(args: argparse.Namespace) -> None:
    """The stage's function with its settings (typed, ``ctra.config``; built once here) and its files."""
    options = {key: value for key, value in vars(args).items() if key not in NOT_ARGUMENTS}
    if args.command not in stages.SETTINGS:  # example: no study
        args.func(**options)
        return
    args.func(stages.SETTINGS[args.command].from_study(json.loads(args.study_config)), **options)


def _parser() -> argparse.ArgumentParser:
    option_help = {
        "study": "study name (its key under `studies:` in the config)",
        "study-config": "the study settings this stage reads, as JSON (ctra.config.STAGE_KEYS; the workflow passes them)",
        "gene-set": "gene set TSV (gene, group, direction, ...), e.g. resources/gene_sets/ctra53.tsv",
        "markers": "leukocyte marker set TSV, e.g. resources/gene_sets/leukocyte_markers.tsv",
        "samples-schema": "also check the sample sheet against this YAML schema (workflow/schemas/samples.schema.yaml)",
        "input": "the previous stage's .h5ad (validated.h5ad for normalize, else normalized.h5ad)",
        "scores": "scores.tsv (written by score, read by the later stages)",
        "genes-used": "genes_used.tsv (written by score, read by the later stages)",
        "model-contrasts": "work/model_contrasts.tsv: every model's contrasts before the resampling checks "
        "(model writes it, robustness and effect read it)",
        "genes": "per-gene contrasts TSV to write (genes.tsv)",
        "model-info": "model.json: formula, reference levels, variance components (model writes it, the others "
        "read it)",
        "contrasts": "contrasts.tsv to write, with the robustness columns",
        "effect": "work/primary_effect.json: the primary endpoint's fitted summary (the effect command writes it)",
        "meta": "meta.tsv to write: the studies, the pooled estimates and leave-one-out",
        "out": "the file to write (validated.h5ad, normalized.h5ad, a null chunk's TSV, work/outcome_contrasts.tsv, "
        "mediation.tsv or report.html)",
    }
    parser = argparse.ArgumentParser(
        prog="ctra",
        description=__doc__.splitlines()[0],
        epilog="Each stage reads and writes the files the workflow's rule of the same name does; `snakemake -n -p` "
        "prints the exact commands. `ctra <command> --help` lists a command's options.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def stage(name: str, func: Callable, summary: str, *options: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=summary, description=summary)
        p.set_defaults(func=func)
        p.add_argument("--log", help="also write messages to this file")
        for option in options:
            p.add_argument(
                f"--{option}", required=option not in ("samples-schema", "threads"), help=option_help[option]
            )
        return p

    stage(
        "validate",
        stages.validate,
        "check the count table, sample sheet and study config; write validated.h5ad",
        "study",
        "study-config",
        "gene-set",
        "markers",
        "samples-schema",
        "out",
    )
    stage(
        "normalize",
        stages.normalize,
        "size factors and blind VST; write normalized.h5ad",
        "study-config",
        "input",
        "out",
    ).add_argument("--threads", type=int, default=1, help="threads for normalization (default 1)")
    stage(
        "score",
        stages.score,
        "CTRA score and subscores per sample; write scores.tsv and genes_used.tsv",
        "study-config",
        "input",
        "gene-set",
        "markers",
        "scores",
        "genes-used",
    )
    stage(
        "model",
        stages.model,
        "fit the mixed models, gene-level GEE and sensitivity refits",
        "study-config",
        "input",
        "scores",
        "genes-used",
        "model-contrasts",
        "genes",
        "model-info",
    )
    stage(
        "null",
        stages.null,
        "one chunk of the permutation and random-gene-set null draws",
        "study-config",
        "input",
        "scores",
        "genes-used",
        "out",
    ).add_argument(
        "--chunk", type=int, default=0, help="which chunk of the draws (0 to robustness: chunks - 1; default 0)"
    )
    robustness = stage(
        "robustness",
        stages.robustness,
        "turn the null draws into p-values, add leave-one-out; write contrasts.tsv",
        "study-config",
        "input",
        "scores",
        "genes-used",
        "model-info",
        "model-contrasts",
        "contrasts",
    )
    robustness.add_argument(
        "--nulls", nargs="+", required=True, help="every chunk's null draws (the null command's outputs)"
    )
    robustness.add_argument(
        "--extra",
        nargs="*",
        default=[],
        help="further contrast rows to append (work/outcome_contrasts.tsv, for studies with `outcomes:` or `dose:`)",
    )
    stage(
        "outcomes",
        stages.outcomes,
        "trials with `outcomes:` / `dose:`: each outcome's arm x time model, within/between associations, dose "
        "moderation; write work/outcome_contrasts.tsv",
        "study-config",
        "input",
        "scores",
        "genes-used",
        "out",
    )
    stage(
        "mediation",
        stages.mediation,
        "trials with `mediation:`: the arm effect on each score's change split by each outcome's change (seeded "
        "bootstrap); write mediation.tsv",
        "study-config",
        "input",
        "scores",
        "out",
    )
    report = stage(
        "report",
        stages.report,
        "write the self-contained HTML report",
        "study",
        "study-config",
        "input",
        "scores",
        "genes-used",
        "contrasts",
        "genes",
        "model-info",
        "out",
    )
    report.add_argument(
        "--mediation", nargs="*", default=[], help="mediation.tsv (studies with `mediation:`), for its report section"
    )
    report.add_argument(
        "--power", nargs="*", default=[], help="power.tsv (studies with `power: enabled`), for its Power section"
    )
    stage(
        "effect",
        stages.effect,
        "the primary endpoint's fitted summary for power and synthesis; write work/primary_effect.json",
        "study-config",
        "input",
        "scores",
        "genes-used",
        "model-contrasts",
        "model-info",
        "out",
    )
    stage(
        "power",
        stages.power,
        "power curves and sample sizes for the next trial; write power.tsv",
        "study-config",
        "effect",
        "out",
    )
    stage(
        "synthesis",
        stages.synthesis,
        "random-effects meta-analysis of the studies' primary contrasts; write meta.tsv and the synthesis report",
        "study-config",
        "meta",
        "out",
    ).add_argument(
        "--effects",
        nargs="+",
        required=True,
        help="each pooled study's work/primary_effect.json, in the order of synthesis: studies",
    )
    example = sub.add_parser(
        "example",
        help="write the bundled example cohort",
        description="write the bundled example cohort (counts.tsv.gz, samples.tsv, truth.tsv)",
    )
    example.set_defaults(func=stages.example)
    example.add_argument("--out", default="resources/example", help="directory to write to (default %(default)s)")
    example.add_argument("--seed", type=int, default=20261122, help="random seed (default %(default)s)")
    return parser


def _setup_logging(log_path: str | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, format="ctra %(levelname)s: %(message)s", handlers=handlers, force=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(getattr(args, "log", None))
    try:
        _call(args)
    except InputError as err:
        log.error("%s", err)
        return 1
    except Exception as err:  # a bug of ours: short message on the terminal, traceback in the log
        if isinstance(err, OSError) and err.errno in WRITE_ERRNOS:  # disk full, read-only: the user's to fix
            log.error(
                "ctra %s could not write %s: %s; free space or fix permissions under results/ and rerun.",
                args.command,
                err.filename or "its outputs",
                os.strerror(err.errno),
            )
            return 1
        log.error(
            "internal error in 'ctra %s': %s: %s%s",
            args.command,
            type(err).__name__,
            err,
            f" (traceback in {args.log})" if getattr(args, "log", None) else "",
        )
        if getattr(args, "log", None):
            with open(args.log, "a") as handle:
                traceback.print_exc(file=handle)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
