#!/usr/bin/env bash
# etcd vs paxkv, side by side (issue 12, section 4): a benchmark, not a test.
#
# Starts a 3-node etcd cluster and a 3-node paxkv cluster on 127.0.0.1, one
# at a time (the other is stopped while one is measured), each with its data
# under one directory on the repository's disk and fsync on (etcd's default;
# paxkv always), and drives both with the same closed-loop load: 1, 16 and 64
# clients, 100-byte values over 1,000 keys, puts, then linearizable gets.
# Each cell is a warm-up and a measuring window; `bench/kvbench` reports
# throughput, p50/p99/p99.9 latency and each process's CPU (utime + stime
# from /proc over the window) as JSON lines, and prints one table: the median
# of each figure over the runs. Every process it starts is stopped when it
# exits, fails or is interrupted.
#
#   bench/etcd-vs-paxkv.sh                          # the README's figures (~10 min)
#   bench/etcd-vs-paxkv.sh --secs 2 --warmup 1 --runs 1   # a quick look (~1 min)
#   bench/etcd-vs-paxkv.sh --paxkv-base HEAD~1      # etcd, paxkv and paxkv@<HEAD~1>
#   bench/etcd-vs-paxkv.sh --peer-tls on            # peer TLS on in both only
#
# --peer-tls on,off (the default: both, side by side) runs every system
# with mutual TLS between its peers (etcd: https peer URLs with
# --peer-client-cert-auth; paxkv: its --peer-*-file flags), labelled
# `<system>+tls`, and with plain TCP between peers (paxkv's
# --insecure-plaintext-peers), labelled as the system. One throwaway CA made
# by `paxkv certs` serves both systems. Clients talk plain TCP to both.
#
# Options: --secs N (measuring window per cell, default 10), --warmup N
# (default 3), --runs N (default 3), --clients 1,16,64, --systems etcd,paxkv,
# --peer-tls on,off, --data-dir DIR (default: target/etcd-vs-paxkv/ in the repository, which is
# on the disk the repository is on; not /tmp, which may be a tmpfs that makes
# fsync free), --keep (keep the data directories and logs), --paxkv-base REV.
#
# --paxkv-base REV (a git revision: 6e57de4, HEAD~3, a branch) measures a
# third system beside the two: paxkv as built at REV, labelled paxkv@<short
# hash> in the results and the table (paxkv is the working tree, uncommitted
# changes included), to show whether a change moved paxkv against etcd. REV
# is exported with `git archive` (no worktree to register or remove) to
# DATA/paxkv-base/<full hash>/src and built there into its own target
# directory beside it, never the repository's target/; a later run at the
# same commit reuses that build. It runs with the same flags and ports as
# paxkv, and the load generator is the working tree's (so REV must speak the
# same client protocol). It is added to the end of --systems, or where
# --systems names it `base`. The systems take turns going first: run r
# starts at the r-th of the list and wraps around (with two, the order
# flips every run). The table then ends with each paxkv row's ops/s and p99
# as a multiple of etcd's in the same cell.
#
# Needs: etcd (Debian's etcd-server, 3.4) and protoc (protobuf-compiler, to
# build the etcd-client crate); installed with apt-get if missing. The load
# generator is its own cargo project (bench/kvbench, outside the main
# workspace, so the main build never compiles tonic and prost). The
# repository's .cargo/config.toml adds `--cfg madsim` to every build under
# it; paxkv, tokio and the etcd client ignore that cfg, so nothing here needs
# other flags. Builds use CARGO_BUILD_JOBS if set (default 2).

set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SECS=10
WARMUP=3
RUNS=3
CLIENTS=1,16,64
SYSTEMS=etcd,paxkv
DATA=
KEEP=0
BASE_REV=
PEER_TLS=on,off
while [ $# -gt 0 ]; do
    case "$1" in
        --secs) SECS=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --clients) CLIENTS=$2; shift 2 ;;
        --systems) SYSTEMS=$2; shift 2 ;;
        --data-dir) DATA=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --paxkv-base) BASE_REV=$2; shift 2 ;;
        --peer-tls) PEER_TLS=$2; shift 2 ;;
        # The header: every comment line from line 2 up to the first line
        # that is not one.
        -h|--help) sed -n '2,${/^#/!q;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
die() { say "error: $*"; exit 1; }

# --- what it needs --------------------------------------------------------
missing=()
command -v etcd >/dev/null || missing+=(etcd-server)
command -v protoc >/dev/null || missing+=(protobuf-compiler)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "needs ${missing[*]} (apt-get install ${missing[*]}, as root)"
    say "installing ${missing[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
DATA=${DATA:-$REPO/target/etcd-vs-paxkv}
IFS=, read -ra SYSTEM_LIST <<<"$SYSTEMS"
IFS=, read -ra TLS_LIST <<<"$PEER_TLS"
for t in "${TLS_LIST[@]}"; do
    case $t in on|off) ;; *) die "--peer-tls: '$t' is neither on nor off" ;; esac
done
BASE_LABEL=
if [ -n "$BASE_REV" ]; then
    BASE_COMMIT=$(git -C "$REPO" rev-parse --verify --quiet "$BASE_REV^{commit}") \
        || die "--paxkv-base: unknown revision '$BASE_REV' (not a commit in $REPO)"
    BASE_LABEL=paxkv@$(git -C "$REPO" rev-parse --short "$BASE_COMMIT")
    # `base` in --systems is where it goes; else it goes last.
    found=0
    for k in "${!SYSTEM_LIST[@]}"; do
        if [ "${SYSTEM_LIST[$k]}" = base ]; then SYSTEM_LIST[k]=$BASE_LABEL; found=1; fi
    done
    [ $found = 1 ] || SYSTEM_LIST+=("$BASE_LABEL")
else
    for sys in "${SYSTEM_LIST[@]}"; do
        [ "$sys" != base ] || die "--systems names base, but no --paxkv-base REV was given"
    done
fi
say "building paxkv and kvbench (release)"
(cd "$REPO" && cargo build --release -q -p paxkv)
cargo build --release -q --manifest-path "$REPO/bench/kvbench/Cargo.toml"
PAXKV=$REPO/target/release/paxkv
if [ -n "$BASE_REV" ]; then
    # REV's tree, exported (git archive registers nothing in the
    # repository) and built apart, both keyed by the full commit hash, so a
    # later run at the same commit finds it built. The export is complete
    # once renamed into place; cargo then rebuilds only what is missing.
    mkdir -p "$DATA/paxkv-base"
    BASE_DIR=$(cd "$DATA/paxkv-base" && pwd)/$BASE_COMMIT
    if [ ! -d "$BASE_DIR/src" ]; then
        say "exporting $BASE_REV ($BASE_COMMIT) to $BASE_DIR/src"
        rm -rf "$BASE_DIR/src.partial"
        mkdir -p "$BASE_DIR/src.partial"
        git -C "$REPO" archive "$BASE_COMMIT" | tar -x -C "$BASE_DIR/src.partial"
        mv "$BASE_DIR/src.partial" "$BASE_DIR/src"
    fi
    say "building $BASE_LABEL (release, into $BASE_DIR/target; the first time takes minutes)"
    (cd "$BASE_DIR/src" && CARGO_TARGET_DIR=$BASE_DIR/target cargo build --release -q -p paxkv) \
        || die "building paxkv at $BASE_REV failed (in $BASE_DIR/src)"
    PAXKV_BASE=$BASE_DIR/target/release/paxkv
fi
KVBENCH=$REPO/bench/kvbench/target/release/kvbench
CLK_TCK=$(getconf CLK_TCK)
export CLK_TCK

# --- processes: every one started is stopped on exit ------------------------
PIDS=()
stop_all() {
    [ ${#PIDS[@]} -gt 0 ] || return 0
    kill -TERM "${PIDS[@]}" 2>/dev/null || true
    for _ in $(seq 50); do
        local alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    kill -KILL "${PIDS[@]}" 2>/dev/null || true
    wait "${PIDS[@]}" 2>/dev/null || true
    PIDS=()
}
cleanup() {
    local rc=$?
    stop_all
    if [ -n "${RUNDIR:-}" ] && [ $KEEP = 0 ] && [ $rc = 0 ]; then
        rm -rf "$RUNDIR"/etcd* "$RUNDIR"/paxkv*
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# Runs a long command in the background and waits for it, so that a signal
# to this script (kill -INT or -TERM of its pid, not only Ctrl-C to the
# whole process group) runs the traps at once instead of after the command:
# bash defers traps while a foreground command runs.
run_fg() {
    "$@" &
    local p=$! rc=0 q keep=()
    PIDS+=("$p")
    wait "$p" || rc=$?
    for q in "${PIDS[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
    PIDS=("${keep[@]}")
    return $rc
}

port_free() { ! ss -Htln "sport = :$1" | grep -q .; }
ETCD_CLIENT=(23791 23792 23793)
ETCD_PEER=(23801 23802 23803)
PAXKV_PORT=(24001 24002 24003)
PAXKV_PEER=(24101 24102 24103)
for p in "${ETCD_CLIENT[@]}" "${ETCD_PEER[@]}" "${PAXKV_PORT[@]}" "${PAXKV_PEER[@]}"; do
    port_free "$p" || die "port $p is in use (another benchmark running?)"
done

mkdir -p "$DATA"
RUNDIR=$(mktemp -d "$DATA/run-$(date +%Y%m%d-%H%M%S)-XXXX")
RESULTS=$RUNDIR/results.jsonl
: > "$RESULTS"
# One throwaway CA for both systems' peers: each replica's certificate names
# 127.0.0.1 (etcd checks that) and paxkv's replica name.
CERTS=$RUNDIR/certs
"$PAXKV" certs --cluster-id 1 --nodes 3 --dir "$CERTS" --ip 127.0.0.1 >/dev/null

machine() {
    local src fstype disk model
    read -r src fstype < <(findmnt -no SOURCE,FSTYPE --target "$RUNDIR")
    disk=$(lsblk -no PKNAME "$src" 2>/dev/null | head -1)
    disk=${disk:-$(basename "$src")}
    model=$(lsblk -dno MODEL "/dev/$disk" 2>/dev/null | sed 's/ *$//')
    echo "machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), $(free -g | awk '/^Mem:/{print $2}') GiB RAM"
    echo "disk: $src ($fstype; ${model:-no model name}, $(cat "/sys/block/$disk/queue/rotational" 2>/dev/null | sed 's/1/rotational flag set/; s/0/non-rotational/'))"
    echo "versions: $(etcd --version | head -1 | sed 's/etcd Version: /etcd /'); paxkv at $(cd "$REPO" && git rev-parse --short HEAD)$(cd "$REPO" && git diff --quiet HEAD || echo ' with uncommitted changes')${BASE_LABEL:+; $BASE_LABEL at $BASE_COMMIT ($BASE_REV)}"
}

join() { local IFS=,; echo "$*"; }

# start_etcd DIR TLS (on|off)
start_etcd() {
    local d=$1 tls=$2 cluster=() i scheme=http tls_flags=()
    [ "$tls" = on ] && scheme=https
    for i in 0 1 2; do cluster+=("e$i=$scheme://127.0.0.1:${ETCD_PEER[$i]}"); done
    ENDPOINTS=() MEMBERS=()
    for i in 0 1 2; do
        tls_flags=()
        [ "$tls" = on ] && tls_flags=(--peer-cert-file "$CERTS/replica-$i.pem"
            --peer-key-file "$CERTS/replica-$i.key" --peer-trusted-ca-file "$CERTS/ca.pem"
            --peer-client-cert-auth)
        etcd --name "e$i" --data-dir "$d/etcd$i" \
            --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT[$i]}" \
            --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT[$i]}" \
            --listen-peer-urls "$scheme://127.0.0.1:${ETCD_PEER[$i]}" \
            --initial-advertise-peer-urls "$scheme://127.0.0.1:${ETCD_PEER[$i]}" \
            --initial-cluster "$(join "${cluster[@]}")" \
            --initial-cluster-token kvbench --initial-cluster-state new \
            "${tls_flags[@]}" >"$d/etcd$i.log" 2>&1 &
        PIDS+=($!) MEMBERS+=($!)
        ENDPOINTS+=("127.0.0.1:${ETCD_CLIENT[$i]}")
    done
}

# paxkv, from the binary given (the working tree's or the base's): the same
# flags and ports for both. start_paxkv DIR BINARY TLS (on|off). A binary
# from before separate peer addresses (no --endpoints) takes its client
# addresses as --peers and has no TLS.
start_paxkv() {
    local d=$1 bin=$2 tls=$3 clients=() peers=() i tls_flags=()
    for i in 0 1 2; do
        clients+=("127.0.0.1:${PAXKV_PORT[$i]}")
        peers+=("127.0.0.1:${PAXKV_PEER[$i]}")
    done
    ENDPOINTS=("${clients[@]}") MEMBERS=()
    local split=0
    "$bin" server --help | grep -q -- --insecure-plaintext-peers && split=1
    for i in 0 1 2; do
        if [ $split = 1 ]; then
            tls_flags=(--insecure-plaintext-peers)
            [ "$tls" = on ] && tls_flags=(--peer-cert-file "$CERTS/replica-$i.pem"
                --peer-key-file "$CERTS/replica-$i.key" --peer-trusted-ca-file "$CERTS/ca.pem")
            "$bin" server --id "$i" --endpoints "$(join "${clients[@]}")" --peers "$(join "${peers[@]}")" \
                "${tls_flags[@]}" --data-dir "$d/paxkv$i" --cluster-id 1 >"$d/paxkv$i.log" 2>&1 &
        else
            [ "$tls" = off ] || die "$bin has no peer TLS"
            "$bin" server --id "$i" --peers "$(join "${clients[@]}")" \
                --data-dir "$d/paxkv$i" --cluster-id 1 >"$d/paxkv$i.log" 2>&1 &
        fi
        PIDS+=($!) MEMBERS+=($!)
    done
}

IFS=, read -ra CLIENT_LIST <<<"$CLIENTS"
machine | tee "$RUNDIR/machine.txt" >&2
# The disk's fsync latency moves a lot on a shared machine; the table is
# read against it (measured again after the runs).
# So is the load others put on a shared machine: the 1-minute load average.
echo "before: $("$KVBENCH" fsync-probe "$RUNDIR"); load average $(cut -d' ' -f1 /proc/loadavg)" | tee "$RUNDIR/fsync.txt" >&2
say "$RUNS run(s) of ${SYSTEM_LIST[*]} x peer TLS {${TLS_LIST[*]}} x {put, get} x {${CLIENT_LIST[*]}} clients, ${WARMUP}s warm-up + ${SECS}s per cell; results in $RESULTS"
for run in $(seq "$RUNS"); do
    # Rotate which system goes first, so none always runs on a warmer (or
    # more tired) machine: run r starts at the r-th system and wraps
    # around (with two systems, the order flips every run).
    n=${#SYSTEM_LIST[@]}
    order=()
    for ((k=0; k<n; k++)); do order+=("${SYSTEM_LIST[$(((run - 1 + k) % n))]}"); done
    for sys in "${order[@]}"; do
      for tls in "${TLS_LIST[@]}"; do
        label=$sys
        [ "$tls" = on ] && label=$sys+tls
        # A base build from before peer TLS runs plain TCP only.
        if [ "$tls" = on ] && [ "$sys" = "$BASE_LABEL" ] \
            && ! "$PAXKV_BASE" server --help | grep -q -- --insecure-plaintext-peers; then
            say "run $run: $label skipped: $BASE_LABEL has no peer TLS"
            continue
        fi
        d=$RUNDIR/$label-run$run
        mkdir -p "$d"
        # kind: the CLI kvbench drives (--system); label: the row.
        case $sys in
            etcd) kind=etcd; start_etcd "$d" "$tls" ;;
            paxkv) kind=paxkv; start_paxkv "$d" "$PAXKV" "$tls" ;;
            *)
                [ -n "$BASE_LABEL" ] && [ "$sys" = "$BASE_LABEL" ] || die "unknown system $sys"
                kind=paxkv; start_paxkv "$d" "$PAXKV_BASE" "$tls" ;;
        esac
        run_fg "$KVBENCH" wait --system "$kind" --endpoints "$(join "${ENDPOINTS[@]}")" --timeout-secs 30 \
            || die "$label did not come up; logs in $d"
        sleep 1
        for op in put get; do
            for c in "${CLIENT_LIST[@]}"; do
                say "run $run: $label $op, $c clients"
                run_fg "$KVBENCH" run --system "$kind" --label "$label" --endpoints "$(join "${ENDPOINTS[@]}")" \
                    --pids "$(join "${MEMBERS[@]}")" --op "$op" --clients "$c" \
                    --warmup-secs "$WARMUP" --secs "$SECS" --run "$run" >>"$RESULTS" \
                    || die "kvbench failed on $label $op $c; logs in $d"
            done
        done
        stop_all
        # What the data directories hold after the run (fsync'd bytes).
        say "$label: $(du -sh "$d" | cut -f1) on disk"
      done
    done
done

echo "after: $("$KVBENCH" fsync-probe "$RUNDIR"); load average $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$RUNDIR/fsync.txt" >&2
echo
cat "$RUNDIR/machine.txt" "$RUNDIR/fsync.txt"
echo "window ${SECS}s after a ${WARMUP}s warm-up per cell; median of $RUNS run(s); CPU in cores (1.00 = one core busy)"
echo
"$KVBENCH" table "$RESULTS"
say "raw results: $RESULTS"
