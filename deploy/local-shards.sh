#!/usr/bin/env bash
# How sharding scales, measured on this machine in one run: the same seeds as
# one campaign (one worker, then one per core) and as SHARDS shard processes
# at once (one worker each), then `paxsim merge` of the shards, checked to
# print the same summary as the one campaign (apart from wall time).
#
#   deploy/local-shards.sh [SEEDS [SHARDS [SCENARIO]]]   (default: 2000 seeds of kv, one shard per core)
set -euo pipefail
cd "$(dirname "$0")/.."

seeds=${1:-2000}
shards=${2:-$(nproc)}
scenario=${3:-kv}
cargo build --release -q -p paxsim
paxsim=$PWD/target/release/paxsim
work=$(mktemp -d "${TMPDIR:-/tmp}/paxsim-local-shards.XXXXXX")
trap 'rm -rf "$work"' EXIT
args=(campaign --scenario "$scenario" --seeds "$seeds" --quiet)

now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.2f", a - b }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

t=$(now)
"$paxsim" "${args[@]}" --jobs 1 --repro-dir "$work/r1" >"$work/one-worker.txt" || true
single=$(since "$t")
t=$(now)
"$paxsim" "${args[@]}" --jobs "$(nproc)" --repro-dir "$work/r" >"$work/all-cores.txt" || true
multi=$(since "$t")
t=$(now)
pids=()
for i in $(seq 0 $((shards - 1))); do
    "$paxsim" "${args[@]}" --jobs 1 --shard "$i/$shards" --json "$work/shard-$i.json" \
        --repro-dir "$work/rs" >"$work/shard-$i.txt" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || true; done
"$paxsim" merge "$work"/shard-*.json --repro-dir "$work/r" >"$work/merged.txt" || true
sharded=$(since "$t")

summaries() { grep -v -e '^campaign: ' -e '^merged ' -e '^wall ' "$1"; }
if ! diff <(summaries "$work/all-cores.txt") <(summaries "$work/merged.txt"); then
    echo "local-shards: the merged shards differ from one campaign of the same seeds" >&2
    exit 1
fi
cat <<TABLE
$seeds seeds of $scenario on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')):
  one campaign, 1 worker                        ${single} s
  one campaign, $(nproc) workers                       ${multi} s
  $shards shard processes of 1 worker, then merge   ${sharded} s
  speedup of $shards shards over 1 worker:            $(ratio "$single" "$sharded")x
  $shards shards against one $(nproc)-worker campaign:     $(ratio "$multi" "$sharded")x
merged summary = the one campaign's (apart from wall time):
TABLE
summaries "$work/merged.txt" | sed 's/^/  /'
