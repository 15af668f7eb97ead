#!/usr/bin/env bash
# A real Slurm array campaign on this machine, end to end: starts a
# single-node Slurm (local-slurm.sh), submits deploy/slurm/campaign.sbatch as
# an array of SHARDS tasks, waits for them, merges their results with
# `paxsim merge`, and checks that the merge prints the same summaries as one
# unsharded campaign of the same seeds (apart from wall time). Stops the
# daemons it started on the way out. .ci/run runs it.
#
#   deploy/slurm/run-local.sh [SEEDS [SHARDS]]   (default: 200 seeds of every scenario, 4 shards)
#
# PAXSIM names a paxsim binary to use; otherwise the release build is built.
set -euo pipefail
cd "$(dirname "$0")/../.."

seeds=${1:-200}
shards=${2:-4}
here=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/paxsim-slurm-run.XXXXXX")

started=
cleanup() {
    if [ -n "$started" ]; then
        scancel --quiet "$started" 2>/dev/null || true
    fi
    deploy/slurm/local-slurm.sh stop
}
trap cleanup EXIT

if [ -z "${PAXSIM:-}" ]; then
    cargo build --release -q -p paxsim
    PAXSIM=$here/target/release/paxsim
fi
export PAXSIM
export PAXSIM_ARGS="--all-scenarios --seeds $seeds"
export PAXSIM_RESULTS=$work/results

deploy/slurm/local-slurm.sh start

job=$(cd "$work" && sbatch --parsable --array="0-$((shards - 1))" --cpus-per-task=1 \
    "$here/deploy/slurm/campaign.sbatch")
job=${job%%;*}
started=$job
echo "run-local: submitted array job $job ($shards tasks: $PAXSIM_ARGS)"

# `sbatch --wait` returns tens of seconds after the job ends: poll instead.
deadline=$((SECONDS + 1800))
while squeue -h -j "$job" 2>/dev/null | grep -q .; do
    if [ $SECONDS -gt $deadline ]; then
        echo "run-local: the array did not finish in 30 minutes" >&2
        exit 1
    fi
    sleep 1
done
started=

# Without slurmdbd there is no sacct, but scontrol keeps a finished job's
# tasks and exit codes for a few minutes.
echo "run-local: tasks ended:"
scontrol -o show job "$job" | awk '{
    line = "  ";
    for (i = 1; i <= NF; i++) if ($i ~ /^(ArrayTaskId|JobState|ExitCode)=/) line = line " " $i;
    print line }' | sort || true
for i in $(seq 0 $((shards - 1))); do
    if [ ! -s "$PAXSIM_RESULTS/shard-$i.json" ]; then
        echo "run-local: task $i wrote no results; its output:" >&2
        cat "$work"/paxsim-campaign-*_"$i".out >&2 || true
        exit 1
    fi
done

files=()
for i in $(seq 0 $((shards - 1))); do files+=("$PAXSIM_RESULTS/shard-$i.json"); done
set +e
"$PAXSIM" merge "${files[@]}" --repro-dir "$work/repros" >"$work/merged.txt"
merged=$?
"$PAXSIM" campaign $PAXSIM_ARGS --quiet --repro-dir "$work/repros" >"$work/whole.txt"
whole=$?
set -e
cat "$work/merged.txt"
summaries() { grep -v -e '^campaign: ' -e '^merged ' -e '^wall ' "$1"; }
if ! diff <(summaries "$work/whole.txt") <(summaries "$work/merged.txt") >"$work/diff.txt"; then
    echo "run-local: the merged shards differ from one campaign of the same seeds:" >&2
    cat "$work/diff.txt" >&2
    exit 1
fi
if [ "$merged" != "$whole" ]; then
    echo "run-local: merge exited $merged but the whole campaign $whole" >&2
    exit 1
fi
echo "run-local: $shards Slurm array tasks merged = one campaign of the same seeds (exit $merged); files in $work"
exit "$merged"
