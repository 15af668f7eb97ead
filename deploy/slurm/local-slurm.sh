#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for running and testing
# paxsim's array campaigns (deploy/slurm/campaign.sbatch) where no cluster is
# at hand: installs Debian's slurm-wlm and munge if missing, writes a
# one-node config, and starts munged, slurmctld and slurmd.
#
#   deploy/slurm/local-slurm.sh start    # install if needed, configure, start
#   deploy/slurm/local-slurm.sh stop     # stop the daemons this script started
#
# Needs root (apt-get, the daemons). It works without systemd: the daemons
# run in the background with their state under $SLURM_LOCAL (default
# /tmp/paxsim-slurm). Facts it relies on (Debian 12: slurm-wlm 22.05.8,
# munge 0.5.15): munged needs /run/munge owned by munge; no cgroups here, so
# proctrack/linuxproc and task/none; the node is `hostname -s` at 127.0.0.1.
set -euo pipefail

state=${SLURM_LOCAL:-/tmp/paxsim-slurm}
conf_dir=/etc/slurm

install() {
    if command -v slurmctld >/dev/null && command -v munged >/dev/null && command -v sbatch >/dev/null; then
        return
    fi
    echo "local-slurm: installing slurm-wlm and munge from Debian" >&2
    if [ "$(id -u)" != 0 ]; then
        echo "local-slurm: installing needs root (apt-get)" >&2
        exit 2
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

configure() {
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    # Leave the OS some memory; Slurm refuses a node claiming more than it has.
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
    mkdir -p "$state"/{ctld,slurmd,log} "$conf_dir"
    cat >"$conf_dir/slurm.conf" <<CONF
# Written by paxsim's deploy/slurm/local-slurm.sh: one node, no accounting.
ClusterName=paxsim-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/slurmd
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MaxArraySize=10001
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=paxsim Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
    printf 'ConstrainCores=no\nConstrainRAMSpace=no\n' >"$conf_dir/cgroup.conf"
}

start_munge() {
    if pgrep -x munged >/dev/null; then
        return
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        # Debian's postinst makes one; a container image may lack it.
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    su -s /bin/sh munge -c "munged --force" || munged --force
    echo started >"$state/munged.started"
}

start() {
    install
    configure
    start_munge
    if ! pgrep -x slurmctld >/dev/null; then
        slurmctld -c -i  # -c: a clean start, no saved state
    fi
    if ! pgrep -x slurmd >/dev/null; then
        slurmd -c
    fi
    # The node registers within a second or two.
    for _ in $(seq 1 100); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            echo "local-slurm: up: $(sinfo -h -o '%P %D node(s) %c cpus %T')" >&2
            return
        fi
        sleep 0.2
    done
    echo "local-slurm: the node did not come up; logs:" >&2
    tail -n 20 "$state"/log/*.log >&2 || true
    exit 1
}

stop() {
    for d in slurmd slurmctld; do
        pkill -x "$d" 2>/dev/null || true
    done
    if [ -f "$state/munged.started" ]; then
        pkill -x munged 2>/dev/null || true
        rm -f "$state/munged.started"
    fi
    for _ in $(seq 1 50); do
        pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || return 0
        sleep 0.1
    done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
