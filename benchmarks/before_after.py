"""Whole-workflow time of the trial cohort before and after a change, beside PyDESeq2's VST, in one process.

    python benchmarks/before_after.py --before a2445e4 [--repeats 5]

Checks out ``--before`` in a temporary git worktree and runs the whole workflow (report and safeguards
included) on ``benchmarks/make_cohort.py``'s trial cohort alternately with that checkout and with this
one, ``--repeats`` times each (alternating, so that a change in the machine's speed hits both alike),
then times PyDESeq2's ``DeseqDataSet.vst()`` once on the same counts. Prints the medians, each stage's
median span and the ratios (the issue's aim: the whole workflow within a third of PyDESeq2's VST).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision to compare with (e.g. a2445e4)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-pydeseq2", action="store_true")
    args = parser.parse_args()
    cohort = run.ensure_cohort("trial")
    with tempfile.TemporaryDirectory() as scratch:
        before = Path(scratch) / "before"
        subprocess.run(
            ["git", "-C", str(run.REPO), "worktree", "add", "--detach", str(before), args.before], check=True
        )
        try:
            runs = {"before": [], "after": []}
            for _ in range(args.repeats):
                for label, repo in (("before", before), ("after", run.REPO)):
                    result = run.run_workflow(cohort, args.threads, None, repo=repo)
                    if not result["ok"]:
                        raise SystemExit(f"{label} run failed; see {result['log']}")
                    runs[label].append(result)
                    print(f"{label}: {result['wall_seconds']:.1f} s", flush=True)
        finally:
            subprocess.run(["git", "-C", str(run.REPO), "worktree", "remove", "--force", str(before)], check=True)
    summary = {label: _summary(results) for label, results in runs.items()}
    if not args.no_pydeseq2:
        (run.DATA / "scratch").mkdir(parents=True, exist_ok=True)
        vst = run.run_child("normalize", str(cohort / "counts.tsv.gz"), "pydeseq2-vst", str(args.threads))
        summary["pydeseq2_vst_seconds"] = vst["seconds"]
        for label in ("before", "after"):
            summary[label]["share_of_pydeseq2_vst"] = summary[label]["median_seconds"] / vst["seconds"]
    summary["after_over_before"] = summary["after"]["median_seconds"] / summary["before"]["median_seconds"]
    print(json.dumps(summary, indent=1))


def _summary(results: list[dict]) -> dict:
    """Median wall time, its range and each stage's median span over the repeats."""
    walls = [r["wall_seconds"] for r in results]
    stages = {name for r in results for name in r["stages"]}
    return {
        "median_seconds": statistics.median(walls),
        "range_seconds": [min(walls), max(walls)],
        "stage_median_seconds": {
            name: round(statistics.median(r["stages"][name]["seconds"] for r in results if name in r["stages"]), 2)
            for name in sorted(stages)
        },
    }


if __name__ == "__main__":
    main()
