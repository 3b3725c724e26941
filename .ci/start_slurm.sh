#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine (Debian's slurmctld, slurmd, munge), for the test that
# runs a sweep through hydra/launcher=slurm. Needs root and Debian's package registry. Idempotent:
# packages, key and config are made once, daemons started only when not running. Fails loudly.
# Stop it again with: .ci/start_slurm.sh stop
set -euo pipefail

PIDS=/run/nested-learning-slurm
if [[ "${1:-}" == stop ]]; then
    for pidfile in "$PIDS/slurmd.pid" "$PIDS/slurmctld.pid" /run/munge/munged.pid; do
        if [[ -f "$pidfile" ]] && kill "$(cat "$pidfile")" 2>/dev/null; then
            echo "stopped $(basename "$pidfile" .pid)"
        fi
        rm -f "$pidfile"
    done
    exit 0
fi

[[ $(id -u) == 0 ]] || { echo "start_slurm.sh: must run as root" >&2; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sinfo >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge
fi

mkdir -p "$PIDS" /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/lib/munge /var/log/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    mkdir -p /etc/munge
    head -c 1024 /dev/urandom > /etc/munge/munge.key
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 400 /etc/munge/munge.key

host=$(hostname)
memory_mib=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) * 8 / 10 / 1024 ))
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$PIDS/slurmctld.pid
SlurmdPidFile=$PIDS/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
NodeName=$host CPUs=$(nproc) RealMemory=$memory_mib State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

running() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
running /run/munge/munged.pid || runuser -u munge -- munged --force  # its pid file: /run/munge/munged.pid
running "$PIDS/slurmctld.pid" || slurmctld -i
running "$PIDS/slurmd.pid" || slurmd

for _ in $(seq 60); do
    if sinfo --noheader --format=%t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
        sinfo
        exit 0
    fi
    sleep 1
done
echo "start_slurm.sh: the node did not become idle within 60 s" >&2
sinfo >&2 || true
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
