"""Write the simulated trial that tests/reference/make_outcome_fixtures.R fits (fixtures/outcomes/cohort.tsv).

python tests/reference/make_outcome_cohort.py && Rscript tests/reference/make_outcome_fixtures.R
"""

from pathlib import Path

from ctra.simulate_outcomes import simulate_trial

OUT = Path(__file__).parent / "fixtures" / "outcomes" / "cohort.tsv"
# three arms x 20, a mediated effect, a dose effect and 10 % of post outcomes missing
SETTINGS = dict(n_per_arm=20, arms=("control", "kind", "self"), dose_slope=0.03, missing=0.1, seed=11)

if __name__ == "__main__":
    obs, scores = simulate_trial(**SETTINGS)
    table = obs.join(scores).rename_axis("sample").reset_index()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT, sep="\t", index=False, float_format="%.10g", na_rep="NA", lineterminator="\n")
