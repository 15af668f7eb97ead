#!/usr/bin/env bash
# Measures this checkout's simulator side by side with an older revision's,
# on the same machine in one run: `sim/bench-against.sh REV [SECONDS] [ROUNDS]`.
# REV is built in a temporary git worktree (its own target dir), then both
# `paxsim bench` runs alternate ROUNDS times (default 3, 3 s per figure), so
# drift in the machine's speed hits both alike. Compare the best of each.
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
for i in $(seq "$rounds"); do
  echo "=== $rev, round $i"
  "$old/target/release/paxsim" bench --seconds "$secs" | grep -v '^ \|ops,\|linearizability'
  echo "=== this checkout, round $i"
  "$root/target/release/paxsim" bench --seconds "$secs" --no-linearizability | grep -v '^ '
done
