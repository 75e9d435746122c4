#!/usr/bin/env bash
# Start a one-node SLURM cluster on 127.0.0.1 for tests: munged, slurmctld and slurmd, all confined
# to one directory (config, state, spool, logs, munge socket and key). No slurmdbd: the Snakemake
# SLURM plugin is told to query job states with squeue (status_command), and MinJobAge keeps
# finished jobs visible to squeue / scontrol for 10 minutes.
#   tests/slurm/start_cluster.sh DIR [CTLD_PORT SLURMD_PORT]
# Prints the SLURM_CONF path on success. Stop with tests/slurm/stop_cluster.sh DIR.
set -euo pipefail
dir=$(realpath -m "${1:?usage: start_cluster.sh DIR [CTLD_PORT SLURMD_PORT]}")
ctld_port=${2:-16817}
slurmd_port=${3:-16818}
for exe in munged slurmctld slurmd sinfo; do
  command -v "$exe" >/dev/null || { echo "start_cluster.sh: $exe not found (apt-get install slurm-wlm munge)" >&2; exit 2; }
done
mkdir -p "$dir"/{munge,state,spool,log,etc}
chmod 700 "$dir/munge"
node=$(hostname -s)
cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
user=$(id -un)

# munge: a private key and socket, so the test never touches a system munged
dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge/munge.key"
munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
  --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed"

cat > "$dir/etc/slurm.conf" <<CONF
ClusterName=diffmdtest
SlurmctldHost=${node}(127.0.0.1)
SlurmctldPort=${ctld_port}
SlurmdPort=${slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${dir}/munge/munge.socket
SlurmUser=${user}
SlurmdUser=root
StateSaveLocation=${dir}/state
SlurmdSpoolDir=${dir}/spool
SlurmctldPidFile=${dir}/slurmctld.pid
SlurmdPidFile=${dir}/slurmd.pid
SlurmctldLogFile=${dir}/log/slurmctld.log
SlurmdLogFile=${dir}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=600
GresTypes=gpu
NodeName=${node} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mb} Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP
CONF
# one schedulable GPU "slot" (no device file): lets GPU rules' --gpus=1 be scheduled on a CPU box
echo "NodeName=${node} Name=gpu File=/dev/null Count=1" > "$dir/etc/gres.conf"

export SLURM_CONF="$dir/etc/slurm.conf"
# The plugin's job step drops SLURM_CONF before calling srun inside the job, so srun must find the
# configuration at the system path: link it there (removed again by stop_cluster.sh), but never
# replace a real cluster's configuration.
sys_conf=/etc/slurm/slurm.conf
if [ -L "$sys_conf" ] && [ ! -e "$sys_conf" ]; then
  rm -f "$sys_conf"  # dangling link left by an earlier, killed test run
fi
if [ -e "$sys_conf" ] || [ -L "$sys_conf" ]; then
  if [ "$(readlink "$sys_conf")" != "$SLURM_CONF" ]; then
    echo "start_cluster.sh: $sys_conf already exists (a real SLURM install?); not replacing it" >&2
    exit 3
  fi
fi
mkdir -p /etc/slurm
ln -sfn "$SLURM_CONF" "$sys_conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 1 30); do
  if ! kill -0 "$(cat "$dir/slurmctld.pid" 2>/dev/null)" 2>/dev/null; then
    echo "start_cluster.sh: slurmctld exited" >&2
    break
  fi
  if timeout 5 sinfo -h -N -o '%t' 2>/dev/null | grep -Eq '^(idle|mix|alloc)'; then
    echo "$SLURM_CONF"
    exit 0
  fi
  sleep 0.5
done
echo "start_cluster.sh: node did not become idle; logs in $dir/log" >&2
timeout 5 sinfo -N -l >&2 || true
tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
exit 1
