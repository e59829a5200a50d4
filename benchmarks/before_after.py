"""Whole-workflow time of the trial cohort before and after a change, beside PyDESeq2's VST, in one process.

    python benchmarks/before_after.py --before 6527953 [--after dfcaff1] [--repeats 5]

Checks out ``--before`` (and ``--after``; default: this checkout as it is) in temporary git worktrees and
runs the whole workflow (report and safeguards included) on ``benchmarks/make_cohort.py``'s trial cohort
alternately with the two, ``--repeats`` times each (alternating, so that a change in the machine's speed hits both alike),
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
    parser.add_argument("--before", required=True, help="git revision to compare with (e.g. 6527953)")
    parser.add_argument("--after", help="git revision to compare it with (default: this checkout, as it is)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-pydeseq2", action="store_true")
    args = parser.parse_args()
    cohort = run.ensure_cohort("trial")
    with tempfile.TemporaryDirectory() as scratch:
        checkouts = {"before": _worktree(Path(scratch) / "before", args.before)}
        checkouts["after"] = _worktree(Path(scratch) / "after", args.after) if args.after else run.REPO
        try:
            runs = {"before": [], "after": []}
            for _ in range(args.repeats):
                for label, repo in checkouts.items():
                    result = run.run_workflow(cohort, args.threads, None, repo=repo)
                    if not result["ok"]:
                        raise SystemExit(f"{label} run failed; see {result['log']}")
                    runs[label].append(result)
                    print(f"{label}: {result['wall_seconds']:.1f} s", flush=True)
        finally:
            for repo in checkouts.values():
                if repo != run.REPO:
                    subprocess.run(["git", "-C", str(run.REPO), "worktree", "remove", "--force", str(repo)], check=True)
    summary = {"before_revision": args.before, "after_revision": args.after or "this checkout"}
    summary |= {label: _summary(results) for label, results in runs.items()}
    if not args.no_pydeseq2:
        (run.DATA / "scratch").mkdir(parents=True, exist_ok=True)
        vst = run.run_child("normalize", str(cohort / "counts.tsv.gz"), "pydeseq2-vst", str(args.threads))
        summary["pydeseq2_vst_seconds"] = vst["seconds"]
        for label in ("before", "after"):
            summary[label]["share_of_pydeseq2_vst"] = summary[label]["median_seconds"] / vst["seconds"]
    summary["after_over_before"] = summary["after"]["median_seconds"] / summary["before"]["median_seconds"]
    print(json.dumps(summary, indent=1))


def _worktree(path: Path, revision: str) -> Path:
    subprocess.run(["git", "-C", str(run.REPO), "worktree", "add", "--detach", str(path), revision], check=True)
    return path


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
