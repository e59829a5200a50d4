#!/usr/bin/env bash
# Every command README.md shows a user, run the way a new user would: in a fresh copy of the repository (its
# tracked and new files, no results/ or .venv/), in a fresh venv made with the README's user install alone (no
# test extras); then the cluster section's `pip install -e ".[slurm]"` and its dry runs. Stops at the first
# command that fails, printing its output and naming it. 3-5 minutes on 2 cores (the install reaches PyPI).
#
#   bash .ci/user_commands.sh            (called by .ci/run)
#
# Not run here: the test commands (.ci/run runs them), submitting to Slurm (tests/cluster/run_slurm_test.sh does,
# through the same profile) and the benchmark itself (5-15 min; only its scripts' --help).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/ctra-user-commands.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
OUT=$TMP/output.log

say() { echo "user-commands: $*"; }
fail() { tail -n 40 "$OUT"; say "FAILED: $1"; exit 1; }
# run 'COMMAND' [TEXT]: run COMMAND in this shell; it fails if it exits non-zero or its output lacks TEXT
run() {
    say "\$ $1"
    eval "$1" >"$OUT" 2>&1 || fail "$1 (exit status $?)"
    [ -z "${2:-}" ] || grep -qF -- "$2" "$OUT" || fail "$1 (no '$2' in its output)"
}

CLONE=$TMP/ctra
mkdir "$CLONE"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard | tar --null -T - --ignore-failed-read -cf -) \
    | tar -xf - -C "$CLONE"
cd "$CLONE"

# --- Quick start: the user install, then the bundled example. The README's line is one chain; the dry runs
# --- and the linter come between its install and its run so that they see jobs to do.
INSTALL='python3 -m venv .venv && . .venv/bin/activate && pip install -e .'
grep -qxF "$INSTALL && snakemake --cores 2" README.md || { : >"$OUT"; fail "README's quick start line is not '$INSTALL && snakemake --cores 2' any more: update $0"; }
run "$INSTALL"
run "ctra --help" "usage: ctra"
commands=$(grep -o -m1 '{[a-z,]*}' "$OUT" | tr -d '{}' | tr , ' ')   # the subcommands, from ctra --help
[ -n "$commands" ] || fail "ctra --help (lists no subcommands)"
for command in $commands; do
    run "ctra $command --help" "usage: ctra $command"
done

# Snakemake exits 1 whenever it prints a lint. ctra's one lint is by design (README quick start): rules run in
# the environment ctra is installed in (no conda/container). Any other lint fails, as does a linter that does not
# get as far as linting (a broken workflow also exits 1).
say "\$ snakemake --lint"
status=0
snakemake --lint >"$OUT" 2>&1 || status=$?
grep -q -e '^Lints for' -e 'Congratulations' "$OUT" && [ "$status" -le 1 ] || fail "snakemake --lint (exit status $status)"
other=$(grep '^    \* ' "$OUT" | grep -v -e 'Specify a conda environment or container for each rule' || true)
[ -z "$other" ] || fail "snakemake --lint: new lints: $other"

run "snakemake --workflow-profile workflow/profiles/default -n" "rule normalize:"
run "snakemake --cores 2" "steps (100%) done"
[ -s results/example/report.html ] || fail "snakemake --cores 2 (no results/example/report.html)"
run "snakemake --report report.zip" "Report created"
python -c "import sys, zipfile; sys.exit('report/report.html' not in zipfile.ZipFile('report.zip').namelist())" \
    || fail "snakemake --report report.zip (no report/report.html in report.zip)"
run "snakemake --workflow-profile workflow/profiles/default" "Nothing to be done"

# --- Score your own cohort: a copied config, here and from another directory (paths relative to that directory).
cp config/config.yaml my_config.yaml
run "snakemake --cores 4 --configfile my_config.yaml" "Nothing to be done"
PROJECT=$TMP/project
mkdir -p "$PROJECT/data"
cp resources/example/counts.tsv.gz resources/example/samples.tsv "$PROJECT/data/"
sed 's|resources/example/|data/|' config/config.yaml >"$PROJECT/my_config.yaml"
grep -q 'data/counts.tsv.gz' "$PROJECT/my_config.yaml" || { : >"$OUT"; fail "the example config names no resources/example/counts.tsv.gz any more: update $0"; }
(cd "$PROJECT" && run "snakemake --cores 4 --snakefile $CLONE/Snakefile --directory $PROJECT --configfile my_config.yaml" \
    "steps (100%) done")
[ -s "$PROJECT/results/example/report.html" ] || fail "run from another directory (no $PROJECT/results/example/report.html)"
run "snakemake --unlock" "Unlocked working directory"
# --- Synthesis across studies (README Configuration and Methods): the example twice, pooling its kind_others arm
# --- (two active arms: `synthesis: true` would ask which); the
# --- power table the run writes and the two planning scripts.
python - <<'EOF'
import yaml
config = yaml.safe_load(open("config/config.yaml"))
config["studies"]["example_copy"] = dict(config["studies"]["example"])
config["synthesis"] = {"studies": [{"study": s, "arm": "kind_others"} for s in ("example", "example_copy")]}
yaml.safe_dump(config, open("synthesis_config.yaml", "w"))
EOF
run "snakemake --cores 2 results/synthesis/report.html --configfile synthesis_config.yaml" "steps (100%) done"
[ -s results/synthesis/meta.tsv ] && [ -s results/example/power.tsv ] || fail "synthesis run (no meta.tsv or power.tsv)"
run "python benchmarks/meta_calibration.py --quick" "Hartung-Knapp"
run "python benchmarks/power_check.py --help" "usage:"

# --- Performance: the benchmark's scripts start (the benchmark itself takes 5-15 minutes).
run "python benchmarks/make_cohort.py --help" "usage:"
run "python benchmarks/run.py --help" "usage:"

# --- Running on a cluster: the [slurm] extra in the same venv, then the dry runs on a clone with nothing run yet
# --- (as on a login node). Submitting needs a Slurm: tests/cluster/run_slurm_test.sh.
run 'pip install -e ".[slurm]"'
rm -rf results .snakemake report.zip
SLURM=workflow/profiles/slurm
run "snakemake --workflow-profile $SLURM -n" "cpus_per_task="
run "snakemake --workflow-profile $SLURM --default-resources slurm_account=mylab slurm_partition=short mem_mb=2000 runtime=30 cpus_per_task=threads -n" \
    "slurm_account=mylab"
cp -r "$SLURM" "$TMP/ctra-slurm"
sed -i 's/^default-resources:$/&\n  slurm_account: mylab\n  slurm_partition: short/' "$TMP/ctra-slurm/config.yaml"
run "snakemake --workflow-profile $TMP/ctra-slurm -n" "slurm_partition=short"
run "snakemake --workflow-profile $SLURM --slurm-no-account --slurm-status-command squeue --slurm-keep-successful-logs --set-resources normalize:mem_mb=64000 -n" \
    "mem_mb=64000"
say "all commands passed"
