#!/usr/bin/env bash
# Real Slurm test of workflow/profiles/slurm: as root on Debian, install slurm-wlm + munge from apt, start a
# private one-node cluster (own munge key and socket, own ports, state under a temp dir), run the bundled
# example plus two copies of it as other studies through the profile (on a snapshot of the checkout), and check
# that
#   - every non-local job went through Slurm (job ids in Snakemake's log, Slurm's per-job logs, Slurm's own
#     job records via `scontrol show job` and the jobcomp/filetxt completion log), all COMPLETED;
#   - normalize asked Slurm for cpus-per-task = its threads and ran with OMP/OPENBLAS_NUM_THREADS bounded to it;
#   - jobs of different studies ran at the same time (fan-out);
#   - scores.tsv, genes_used.tsv, contrasts.tsv, genes.tsv are byte-identical to a local run.
# Job status is polled with `squeue` (--slurm-status-command squeue; no slurmdbd, MinJobAge=600), every 2 s.
# Daemons started here are stopped by pid on exit. Exit status: 0 pass, 77 skipped (not root / no apt), else fail.
#
#   sudo bash tests/cluster/run_slurm_test.sh        # CTRA_SLURM_TEST_KEEP=1 keeps the temp dir
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${PYTHON:-python3}
KEEP=${CTRA_SLURM_TEST_KEEP:-0}
RUN_TIMEOUT=${CTRA_SLURM_RUN_TIMEOUT:-480}   # seconds for each Snakemake run (killed with SIGKILL after)
STUDIES=(example example_copy2 example_copy3)

say() { printf '[slurm-test %3ds] %s\n' "$SECONDS" "$*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

[ "$(id -u)" = 0 ] || skip "needs root (installs slurm-wlm and munge with apt, runs slurmctld/slurmd)"
{ [ -f /etc/debian_version ] && command -v apt-get >/dev/null; } || skip "needs Debian with apt-get"
command -v timeout >/dev/null || skip "needs coreutils timeout"

# The plugin's job step strips SLURM_CONF before `srun`, so inside a job Slurm reads /etc/slurm/slurm.conf (as on
# a real cluster): the test writes its config there, only if that file is absent or its own leftover, and removes
# it on exit. A lock keeps two runs of this test from sharing that file.
ETC_CONF=/etc/slurm/slurm.conf
MARKER="# one-node test cluster written by ctra tests/cluster/run_slurm_test.sh"
LOCK=/run/lock/ctra-slurm-test.lock
[ -d /run/lock ] && [ -w /run/lock ] || LOCK=/tmp/ctra-slurm-test.lock
exec 9>"$LOCK"
flock -w 600 9 || skip "another run of this test held the lock for 10 minutes"
if [ -e "$ETC_CONF" ] && ! head -1 "$ETC_CONF" | grep -qxF "$MARKER"; then
    skip "$ETC_CONF exists (a real Slurm setup?); not replacing it"
fi
W=$(mktemp -d /tmp/ctra-slurm-test.XXXXXX)
chmod 755 "$W"
MUNGED_PID="" CTLD_PID="" SLURMD_PID="" LOCAL_PID="" POLL_PID="" WROTE_ETC_CONF=0

stop_pid() {  # stop one process we started: TERM, wait up to 10 s, then KILL
    local pid=$1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    set +e
    stop_pid "$POLL_PID"
    stop_pid "$LOCAL_PID"
    if [ -n "$CTLD_PID" ] && kill -0 "$CTLD_PID" 2>/dev/null; then
        # jobs left on our private cluster (only after a failure): cancel them by id
        local ids
        ids=$(timeout 10 squeue -h -o %i 2>/dev/null | tr '\n' ' ')
        [ -n "${ids// /}" ] && { say "cancelling leftover Slurm jobs: $ids"; timeout 10 scancel $ids; sleep 1; }
    fi
    stop_pid "$SLURMD_PID"
    stop_pid "$CTLD_PID"
    stop_pid "$MUNGED_PID"
    [ "$WROTE_ETC_CONF" = 1 ] && rm -f "$ETC_CONF"
    if [ "$rc" = 77 ] || { [ "$rc" = 0 ] && [ "$KEEP" = 0 ]; }; then
        rm -rf "$W"
    else
        say "kept $W (snakemake logs: $W/local.log $W/slurm.log; slurm: $W/slurm-state/*.log)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --------------------------------------------------------------------------------------------------
# Test configs (absolute input paths; the copies are the example under other study names)
# --------------------------------------------------------------------------------------------------
# Both runs use a snapshot of the checkout (workflow, package source, example data), so edits made to the
# checkout while the test runs cannot make the two runs differ; jobs see it through PYTHONPATH (sbatch --export=ALL).
CHECKOUT=$REPO
REPO=$W/repo
mkdir -p "$REPO" "$W/local" "$W/slurm"
(cd "$CHECKOUT" && cp -r Snakefile pyproject.toml config workflow src resources "$REPO"/)
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
"$PY" - "$REPO" "$W" "${STUDIES[@]}" <<'EOF'
import sys
from pathlib import Path
import yaml
repo, work, studies = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
example = yaml.safe_load((repo / "config" / "config.yaml").read_text())["studies"]["example"]
for key in ("counts", "samples"):
    example[key] = str((repo / example[key]).resolve())
(work / "local" / "config.yaml").write_text(yaml.safe_dump({"studies": {"example": example}}))
(work / "slurm" / "config.yaml").write_text(yaml.safe_dump({"studies": {s: example for s in studies}}))
EOF

SMK=("$PY" -m snakemake --snakefile "$REPO/Snakefile")

# Reference: the example, run locally, in the background (while apt, the daemons and the cluster run go on).
say "local reference run -> $W/local"
timeout -s KILL "$RUN_TIMEOUT" "${SMK[@]}" --directory "$W/local" --configfile "$W/local/config.yaml" \
    --cores 2 >"$W/local.log" 2>&1 9>&- &
LOCAL_PID=$!

# --------------------------------------------------------------------------------------------------
# Software: slurm-wlm + munge from apt, the Slurm executor plugin (the project's `slurm` extra)
# --------------------------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    say "apt-get install slurm-wlm munge"
    export DEBIAN_FRONTEND=noninteractive
    { timeout -s KILL 240 apt-get update -qq && \
      timeout -s KILL 300 apt-get install -y -qq --no-install-recommends slurm-wlm munge; } >"$W/apt.log" 2>&1 \
        || { tail -5 "$W/apt.log"; skip "apt-get could not install slurm-wlm munge (offline?); see above"; }
fi
say "$(slurmctld -V), $(munged -V 2>&1 | head -1)"
if ! "$PY" -c "import snakemake_executor_plugin_slurm" 2>/dev/null; then
    mapfile -t SLURM_EXTRA < <("$PY" -c "import tomllib,sys; print('\n'.join(tomllib.load(open(sys.argv[1],'rb'))['project']['optional-dependencies']['slurm']))" "$REPO/pyproject.toml")
    say "pip install ${SLURM_EXTRA[*]} (the project's slurm extra)"
    timeout -s KILL 300 "$PY" -m pip install -q "${SLURM_EXTRA[@]}" >"$W/pip.log" 2>&1 || { cat "$W/pip.log"; fail "pip install of the slurm extra failed"; }
fi
say "$("$PY" -c 'import importlib.metadata as m; print(*(f"{p} {m.version(p)}" for p in ("snakemake", "snakemake-executor-plugin-slurm")), sep=", ")')"

# --------------------------------------------------------------------------------------------------
# munge (own key and socket) and a one-node Slurm (own ports and state under $W/slurm-state)
# --------------------------------------------------------------------------------------------------
M=$W/munge
mkdir -p "$M"
head -c 1024 /dev/urandom >"$M/munge.key"
chown -R munge:munge "$M"
chmod 755 "$M"   # munged wants the socket directory traversable by all
chmod 400 "$M/munge.key"
setpriv --reuid=munge --regid=munge --clear-groups /usr/sbin/munged --foreground --socket="$M/munge.socket" \
    --key-file="$M/munge.key" --log-file="$M/munged.log" --pid-file="$M/munged.pid" --seed-file="$M/munged.seed" \
    >"$M/munged.out" 2>&1 9>&- &
MUNGED_PID=$!
for _ in $(seq 50); do
    munge -n -S "$M/munge.socket" 2>/dev/null | unmunge -S "$M/munge.socket" >/dev/null 2>&1 && break
    kill -0 "$MUNGED_PID" 2>/dev/null || { cat "$M/munged.out" "$M/munged.log" 2>/dev/null; fail "munged exited"; }
    sleep 0.2
done
munge -n -S "$M/munge.socket" | unmunge -S "$M/munge.socket" >/dev/null || fail "munge does not answer on $M/munge.socket"
say "munged up (pid $MUNGED_PID)"

S=$W/slurm-state
mkdir -p "$S/ctld" "$S/d"
HOST=$(hostname -s)
# Slurm slots: twice the cores (SlurmdParameters=config_overrides lets slurmd accept that). Each job is mostly a
# single-threaded Python start-up, so on a 2-core runner this lets the three studies overlap instead of queueing
# behind normalize's 2-CPU jobs; cpus-per-task and the thread limits are still checked per job.
NCPU=$(( $(nproc) * 2 ))
MEM=$(( $(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo) * 9 / 10 ))
read -r CTLD_PORT SLURMD_PORT < <("$PY" -c "
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(('127.0.0.1', 0))
print(*[s.getsockname()[1] for s in socks])")
mkdir -p "$(dirname "$ETC_CONF")"
WROTE_ETC_CONF=1
cat >"$ETC_CONF" <<EOF
$MARKER
ClusterName=ctratest
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$M/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$S/ctld
SlurmdSpoolDir=$S/d
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/slurmctld.log
SlurmdLogFile=$S/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$S/jobcomp.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=600
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$MEM State=UNKNOWN
PartitionName=ctra Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
cp "$ETC_CONF" "$S/slurm.conf"   # for the record
slurmctld -D -c >"$S/slurmctld.out" 2>&1 9>&- &
CTLD_PID=$!
slurmd -D -N "$HOST" >"$S/slurmd.out" 2>&1 9>&- &
SLURMD_PID=$!
state=""
for _ in $(seq 150); do
    state=$(timeout 5 sinfo -h -N -o %t 2>/dev/null || true)
    [ "$state" = idle ] && break
    kill -0 "$CTLD_PID" 2>/dev/null || { tail -20 "$S/slurmctld.out" "$S/slurmctld.log"; fail "slurmctld exited"; }
    kill -0 "$SLURMD_PID" 2>/dev/null || { tail -20 "$S/slurmd.out" "$S/slurmd.log"; fail "slurmd exited"; }
    sleep 0.2
done
[ "$state" = idle ] || { tail -20 "$S/slurmctld.log" "$S/slurmd.log"; fail "node not idle after 30 s (state '$state')"; }
say "Slurm up: node $HOST idle, $NCPU CPUs, ${MEM} MB (slurmctld pid $CTLD_PID, slurmd pid $SLURMD_PID, ports $CTLD_PORT/$SLURMD_PORT)"

# --------------------------------------------------------------------------------------------------
# The cluster run, with a poller recording the queue and the BLAS environment of running normalize steps
# --------------------------------------------------------------------------------------------------
poll() {
    trap - EXIT INT TERM
    while true; do
        echo "T $(date +%s.%N) $(timeout 5 squeue -h -t RUNNING -o '%i:%j' 2>/dev/null | tr '\n' ' ')"
        for pid in $(pgrep -f 'ctra.cli normalize' || true); do
            env=$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null || true)
            grep -qx "SLURM_CLUSTER_NAME=ctratest" <<<"$env" || continue
            echo "E $pid $(grep -E '^(SLURM_JOB_ID|SLURM_CPUS_PER_TASK|OMP_NUM_THREADS|OPENBLAS_NUM_THREADS|MKL_NUM_THREADS)=' <<<"$env" | sort | tr '\n' ' ')"
        done
        sleep 0.5
    done
}
poll >"$W/poll.log" 2>&1 9>&- &
POLL_PID=$!

say "cluster run of ${#STUDIES[@]} studies through workflow/profiles/slurm -> $W/slurm"
start=$SECONDS
rc=0
timeout -s KILL "$RUN_TIMEOUT" "${SMK[@]}" --directory "$W/slurm" --configfile "$W/slurm/config.yaml" \
    --workflow-profile "$REPO/workflow/profiles/slurm" \
    --slurm-status-command squeue --slurm-init-seconds-before-status-checks 2 --seconds-between-status-checks 2 \
    --slurm-keep-successful-logs --slurm-no-account --latency-wait 5 >"$W/slurm.log" 2>&1 9>&- || rc=$?
took=$(( SECONDS - start ))
stop_pid "$POLL_PID"; POLL_PID=""
[ "$rc" = 0 ] || { tail -40 "$W/slurm.log"; fail "snakemake with the Slurm profile exited with $rc after ${took}s"; }
say "cluster run finished in ${took}s"
wait "$LOCAL_PID" || { tail -30 "$W/local.log"; fail "local reference run failed"; }
LOCAL_PID=""
say "local reference run done"

# --------------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------------
"$PY" - "$W" "$REPO" "${STUDIES[@]}" <<'EOF'
import re, subprocess, sys
from pathlib import Path

work, repo, studies = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
log = (work / "slurm.log").read_text()
problems = []

# 1. Snakemake's log: which rules ran locally and which went to Slurm, with their job ids.
local_rules = re.findall(r"^localrule (\w+):", log, re.M)
remote_rules = re.findall(r"^rule (\w+):", log, re.M)
blocks = {}  # Snakemake job id -> (rule, study), from the job blocks ("rule x:" ... "jobid: n" ... "wildcards:")
rule = jobid = None
for line in log.splitlines():
    if m := re.match(r"(local)?rule (\w+):$", line):
        rule, jobid = m.group(2), None
    elif m := re.match(r"\s+jobid: (\d+)$", line):
        jobid = int(m.group(1))
        blocks.setdefault(jobid, (rule, None))
    elif (m := re.match(r"\s+wildcards: .*?\bstudy=([^,\s]+)", line)) and jobid is not None:
        blocks[jobid] = (blocks[jobid][0], m.group(1))
by_id = {int(slurm): blocks.get(int(job), ("?", "?"))  # Slurm job id -> (rule, study)
         for job, slurm in re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log)}
ids = list(by_id)
print(f"Snakemake: {len(remote_rules)} jobs submitted to Slurm (ids {ids}); local: {sorted(set(local_rules))}")
if len(ids) != len(remote_rules) or len(set(ids)) != len(ids):
    problems.append(f"{len(remote_rules)} non-local jobs but {len(set(ids))} Slurm job ids in the log")
for rule in ("normalize", "model"):
    for study in studies:
        if (rule, study) not in by_id.values():
            problems.append(f"no Slurm job for rule {rule} of {study}")
for rule in ("normalize", "model"):
    if rule in local_rules:
        problems.append(f"rule {rule} ran locally")

# 2. Slurm's side: per-job logs written by the jobs, scontrol records (MinJobAge), the completion log.
def scontrol(jobid):
    out = subprocess.run(["scontrol", "show", "job", "-o", str(jobid)], capture_output=True, text=True, timeout=10)
    return dict(kv.split("=", 1) for kv in out.stdout.split() if "=" in kv)
jobs = {}
for jobid in ids:
    rec = scontrol(jobid)
    jobs[jobid] = rec
    rule, wc = by_id[jobid]
    print(f"  slurm job {jobid}: rule {rule} ({wc}) state {rec.get('JobState')} cpus {rec.get('NumCPUs')} "
          f"mem {rec.get('MinMemoryNode') or rec.get('MinMemoryCPU')} {rec.get('StartTime')} -> {rec.get('EndTime')}")
    if rec.get("JobState") != "COMPLETED":
        problems.append(f"Slurm job {jobid} ({rule}) is {rec.get('JobState')!r}, not COMPLETED")
    slurm_log = next((work / "slurm").glob(f".snakemake/slurm_logs/rule_{rule}/*/{jobid}.log"), None)
    if slurm_log is None or slurm_log.stat().st_size == 0:
        problems.append(f"no Slurm log .snakemake/slurm_logs/rule_{rule}/*/{jobid}.log")
    if rule == "normalize" and rec.get("NumCPUs") != "2":
        problems.append(f"normalize job {jobid} got {rec.get('NumCPUs')} CPUs, expected its threads (2)")
comp = (work / "slurm-state" / "jobcomp.log").read_text()
done = {int(m.group(1)) for m in re.finditer(r"JobId=(\d+) .*?JobState=COMPLETED", comp)}
if not set(ids) <= done:
    problems.append(f"jobs missing from Slurm's completion log: {sorted(set(ids) - done)}")
print(f"Slurm completion log: {len(done)} COMPLETED jobs")

# 3. Fan-out: jobs of different studies running at the same time (queue snapshots every 0.5 s).
poll = (work / "poll.log").read_text().splitlines()
max_running, max_studies = 0, 0
for line in poll:
    if line.startswith("T "):
        running = [int(tok.split(":")[0]) for tok in line.split()[2:]]
        running = [j for j in running if j in by_id]
        max_running = max(max_running, len(running))
        max_studies = max(max_studies, len({by_id[j][1] for j in running}))
print(f"fan-out: up to {max_running} Slurm jobs running at once, from up to {max_studies} studies")
if max_studies < 2:
    problems.append("never saw jobs of two studies running at the same time")

# 4. Threads: the normalize step inside the allocation has BLAS/OpenMP bounded to its cpus-per-task.
envs = [line for line in poll if line.startswith("E ")]
print(f"normalize environments seen: {sorted(set(' '.join(l.split()[2:]) for l in envs))}")
if not envs:
    problems.append("never caught a running normalize step to check its thread environment")
for line in envs:
    env = dict(kv.split("=", 1) for kv in line.split()[2:])
    cpus = env.get("SLURM_CPUS_PER_TASK")
    if not cpus or any(env.get(k) != cpus for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")):
        problems.append(f"normalize thread environment not bounded to cpus-per-task: {env}")
        break

# 5. Results: byte-identical to the local run, and a report per study.
for study in studies:
    for table in ("scores.tsv", "genes_used.tsv", "contrasts.tsv", "genes.tsv"):
        a = work / "local" / "results" / "example" / table
        b = work / "slurm" / "results" / study / table
        if not b.exists() or a.read_bytes() != b.read_bytes():
            problems.append(f"{study}/{table} differs from the local run (or is missing)")
    if not (work / "slurm" / "results" / study / "report.html").exists():
        problems.append(f"{study}/report.html missing")
print("tables byte-identical to the local run: " + ("no" if any("differs" in p for p in problems) else "yes"))

if problems:
    print("PROBLEMS:\n  " + "\n  ".join(problems))
    sys.exit(1)
EOF
say "PASS"
