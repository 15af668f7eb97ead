#!/usr/bin/env bash
# Campaign speed of this checkout against another revision, side by side in
# one run on the same machine: `multi` and `kv` on the same seeds, each
# binary in turn (three rounds, interleaved, best of three), runs per second from
# the campaign's own wall clock.
#
#   bench/campaign-speed.sh [BASE_REV] [SEEDS]
#
# BASE_REV defaults to 266d1d6 (before membership changes, issue 23);
# SEEDS to 2000. The base is built in a worktree under target/.
set -euo pipefail
base=${1:-266d1d6}
seeds=${2:-2000}
root=$(cd "$(dirname "$0")/.." && pwd)
wt="$root/target/speed-base-$base"
cd "$root"
if [ ! -d "$wt" ]; then
    git worktree add -f "$wt" "$base" >/dev/null
fi
(cd "$wt" && CARGO_TARGET_DIR="$root/target/speed-base-target" cargo build --release -q -p paxsim)
cargo build --release -q -p paxsim
old="$root/target/speed-base-target/release/paxsim"
new="$root/target/release/paxsim"
rate() { # binary scenario -> runs per second (the campaign's wall clock)
    "$1" campaign --scenario "$2" --seeds "$seeds" --quiet 2>/dev/null |
        sed -n 's/.*(\([0-9.]*\) runs\/s.*/\1/p' | head -1
}
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b ? a : b) }'; }
printf '%-6s %14s %14s %8s\n' scenario "base runs/s" "this runs/s" change
for s in multi kv; do
    o=0; n=0
    # Three rounds, the binaries interleaved (a machine's drift hits both).
    for _ in 1 2 3; do
        o=$(max "$o" "$(rate "$old" "$s")")
        n=$(max "$n" "$(rate "$new" "$s")")
    done
    awk -v s="$s" -v o="$o" -v n="$n" \
        'BEGIN { printf "%-6s %14.1f %14.1f %+7.1f%%\n", s, o, n, (n / o - 1) * 100 }'
done
