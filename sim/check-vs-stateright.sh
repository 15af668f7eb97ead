#!/usr/bin/env bash
# Measures `paxsim check` side by side with stateright's own Paxos example, on
# this machine in one run: `sim/check-vs-stateright.sh`.
#
# stateright is one of paxsim's dependencies, so cargo's registry holds its
# published source, examples included. The example is copied to a temporary
# directory and built there (outside this workspace, so without its cfg flags).
# Both checkers then explore on one core (`taskset -c 0`; the example sizes its
# thread pool by the cores it may use), and stateright once more on every
# core, as its README runs it. paxsim visits as many states as stateright's
# whole exploration (`--max-states`), so both figures cover the same amount of
# work. Its states are bigger: every node's memory, every disk, the messages
# in flight and the checker.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release -q -p paxsim
cargo fetch -q
registry=${CARGO_HOME:-$HOME/.cargo}/registry/src
src=$(ls -d "$registry"/*/stateright-0.30.* | sort -V | tail -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$src" "$work/stateright"
echo "building stateright's Paxos example from $src ..."
if ! (cd "$work/stateright" && RUSTFLAGS= CARGO_TARGET_DIR="$work/target" \
  cargo build -q --release --example paxos) 2>"$work/build.log"; then
  cat "$work/build.log"
  exit 1
fi
example=$work/target/release/examples/paxos

# Prints `seconds` for the command, its output in $work/out.
timed() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >"$work/out" 2>&1 || true
  t1=$(date +%s.%N)
  echo "$t0 $t1" | awk '{printf "%.2f", $2 - $1}'
}

# Prints one result line: `report WHAT VISITED UNIQUE SECONDS`.
report() {
  echo "$1: $2 visited, $3 unique in ${4}s:" \
    "$(awk -v v="$2" -v s="$4" 'BEGIN{printf "%.0f", v/s}') visited/s," \
    "$(awk -v u="$3" -v s="$4" 'BEGIN{printf "%.0f", u/s}') unique/s"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
for cpus in "1 core" "all $(nproc) cores"; do
  if [ "$cpus" = "1 core" ]; then run=(taskset -c 0 "$example"); else run=("$example"); fi
  secs=$(timed "${run[@]}" check-bfs 3)
  done_line=$(grep '^Done' "$work/out")
  visited=$(echo "$done_line" | sed -E 's/.*states=([0-9]+).*/\1/')
  unique=$(echo "$done_line" | sed -E 's/.*unique=([0-9]+).*/\1/')
  report "stateright paxos example (3 servers, 3 clients), $cpus" "$visited" "$unique" "$secs"
done
secs=$(timed taskset -c 0 target/release/paxsim check --scenario basic --nodes 3 --clients 2 \
  --timers 0 --max-states "$visited")
line=$(grep 'unique states' "$work/out")
p_unique=$(echo "$line" | sed -E 's/^([0-9]+) unique states.*/\1/')
p_visited=$(echo "$line" | sed -E 's/.*\(([0-9]+) visited.*/\1/')
report "paxsim check basic (3 nodes, 2 proposers), 1 core" "$p_visited" "$p_unique" "$secs"
