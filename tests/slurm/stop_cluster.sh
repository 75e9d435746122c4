#!/usr/bin/env bash
# Stop the test cluster started by start_cluster.sh DIR: cancel its jobs, then stop slurmd,
# slurmctld and munged by the pids in their pid files (nothing else is touched).
set -uo pipefail
dir=$(realpath -m "${1:?usage: stop_cluster.sh DIR}")
export SLURM_CONF="$dir/etc/slurm.conf"
[ -f "$SLURM_CONF" ] && timeout 10 scancel --quiet --user "$(id -un)" 2>/dev/null
stop() {  # pidfile
  [ -f "$1" ] || return 0
  local pid
  pid=$(cat "$1")
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null
}
stop "$dir/slurmd.pid"
stop "$dir/slurmctld.pid"
stop "$dir/munge/munged.pid"
# remove the system-path link start_cluster.sh made, only if it still points into DIR
if [ -L /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$SLURM_CONF" ]; then
  rm -f /etc/slurm/slurm.conf
fi
exit 0
