#!/usr/bin/env bash
# Measures this checkout's simulator side by side with an older revision's,
# on the same machine in one run: `sim/bench-against.sh REV [SECONDS] [ROUNDS]`.
# REV is built in a temporary git worktree (its own target dir), then both
# `paxsim bench` runs alternate ROUNDS times (default 3, 3 s per figure), so
# drift in the machine's speed hits both alike. Compare the best of each.
#
# With CAMPAIGN_SEEDS=N it times the main job instead: both builds' `paxsim
# campaign --all-scenarios --seeds N` alternate ROUNDS times, and it prints
# each wall time and the ratio of the best of each (old / new: above 1, this
# checkout is faster). CAMPAIGN_SCENARIO=NAME times that scenario's campaign
# instead of --all-scenarios, and NEW_ARGS adds flags to this checkout's
# campaign only (e.g. NEW_ARGS='--param scale_one_in=1').
set -euo pipefail
rev=${1:?usage: sim/bench-against.sh REV [SECONDS] [ROUNDS]}
secs=${2:-3}
rounds=${3:-3}
root=$(git rev-parse --show-toplevel)
old=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$old/src" >/dev/null 2>&1 || true; rm -rf "$old"' EXIT
git -C "$root" worktree add --detach "$old/src" "$rev" >/dev/null
(cd "$old/src" && CARGO_TARGET_DIR="$old/target" cargo build --release -q -p paxsim)
(cd "$root" && cargo build --release -q -p paxsim)

if [ -n "${CAMPAIGN_SEEDS:-}" ]; then
  campaign() {
    local start end
    start=$(date +%s.%N)
    local which=(--all-scenarios)
    [ -n "${CAMPAIGN_SCENARIO:-}" ] && which=(--scenario "$CAMPAIGN_SCENARIO")
    # shellcheck disable=SC2086 # NEW_ARGS is a list of flags
    (cd "$old" && "$1" campaign "${which[@]}" --seeds "$CAMPAIGN_SEEDS" --quiet \
      --repro-dir "$old/repros" ${2:-} >/dev/null) || true
    end=$(date +%s.%N)
    awk -v a="$end" -v b="$start" 'BEGIN { printf "%.2f", a - b }'
  }
  best_old=; best_new=
  for i in $(seq "$rounds"); do
    t_old=$(campaign "$old/target/release/paxsim")
    t_new=$(campaign "$root/target/release/paxsim" "${NEW_ARGS:-}")
    echo "round $i: $rev ${t_old} s, this checkout ${t_new} s"
    best_old=$(awk -v a="$t_old" -v b="${best_old:-$t_old}" 'BEGIN { print (a < b ? a : b) }')
    best_new=$(awk -v a="$t_new" -v b="${best_new:-$t_new}" 'BEGIN { print (a < b ? a : b) }')
  done
  what=${CAMPAIGN_SCENARIO:+--scenario $CAMPAIGN_SCENARIO}
  awk -v o="$best_old" -v n="$best_new" -v r="$rev" -v s="$CAMPAIGN_SEEDS" -v w="${what:---all-scenarios} ${NEW_ARGS:-}" 'BEGIN {
    printf "campaign %s --seeds %s, best of each: %s %.2f s, this checkout %.2f s: ratio %.3f (old/new)\n", w, s, r, o, n, o / n }'
  exit 0
fi

for i in $(seq "$rounds"); do
  echo "=== $rev, round $i"
  "$old/target/release/paxsim" bench --seconds "$secs" | grep -v '^ \|ops,\|linearizability'
  echo "=== this checkout, round $i"
  "$root/target/release/paxsim" bench --seconds "$secs" --no-linearizability | grep -v '^ '
done
