"""Analytic power (ctra.power.power) against seeded Monte-Carlo fits of whole cohorts (ctra.power.simulate_power:
scores simulated from the fitted variance components, fitted by ctra's REML with Satterthwaite df).

    python benchmarks/power_check.py [--cohorts 2000] [--effect results/example/work/primary_effect.json]

The design is the bundled example's fitted one (gamma, sigma^2, the share of participants without their post
draw), from its work/primary_effect.json when given, else the values fitted at the commit of the README table.
Prints the README's Power table (markdown); asserts nothing (tests/test_power.py does).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ctra import power as pw  # noqa: E402

# the bundled example's primary score (ctra), main model: sigma^2, gamma, 57 of 60 participants with both draws
EXAMPLE = {"sigma2": 0.06471, "gamma": 4.3119, "patterns": ((0, 1), (0,)), "shares": (0.95, 0.05)}
GRID = ((8, 0.70), (16, 0.4457), (30, 0.2), (60, 0.2), (20, 0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohorts", type=int, default=2000)
    parser.add_argument("--effect", help="a study's work/primary_effect.json (default: the example's fitted values)")
    args = parser.parse_args()
    values = dict(EXAMPLE)
    if args.effect:
        effect = json.loads(Path(args.effect).read_text())
        values = {
            "sigma2": effect["sigma2"],
            "gamma": effect["gamma"],
            "patterns": tuple(tuple(p) for p in effect["patterns"]),
            "shares": tuple(effect["pattern_shares"]),
        }
    design = pw.PlannedDesign(
        times=("pre", "post"),
        patterns=values["patterns"],
        shares=values["shares"],
        gamma=values["gamma"],
        sigma2=values["sigma2"],
        q_within=0,
        markers=0,
        marker_rule=False,
        p_between=1,
        arms=2,
    )
    print("| per arm | effect (score units) | analytic power | Monte-Carlo (95 % CI) | difference / simulation SE |")
    print("|---|---|---|---|---|")
    for per_arm, effect in GRID:
        analytic = float(pw.power(design, "post", effect, per_arm, 0.05))
        share, low, high = pw.simulate_power(design, "post", effect, per_arm, 0.05, args.cohorts, seed=per_arm)
        se = math.sqrt(analytic * (1 - analytic) / args.cohorts)
        print(
            f"| {per_arm} | {effect:.2f} | {100 * analytic:.1f} % | {100 * share:.1f} % ({100 * low:.1f}-{100 * high:.1f}) "
            f"| {(share - analytic) / se:+.1f} |"
        )


if __name__ == "__main__":
    main()
