#!/usr/bin/env bash
# A real single-node Slurm on this machine, for the Slurm executor's test and for trying `npm run study --
# <file> --executor slurm` without a cluster: Debian's slurm-wlm (slurmctld + slurmd + client) and munge,
# controller and node on 127.0.0.1 only (ports 6817/6818; nothing leaves the machine).
#
#   scripts/slurm-local.sh start    start munged, slurmctld and slurmd (idempotent); waits until the node is idle
#   scripts/slurm-local.sh stop     cancel jobs, stop the three daemons by their pid files (a no-op when none runs)
#   scripts/slurm-local.sh status   print whether it runs (exit 0) or not (exit 1)
#
# Needs root and the Debian packages slurmctld slurmd slurm-client munge (scripts/bootstrap.sh installs them).
# No systemd or cgroups needed: proctrack/linuxproc, task/none, no accounting (follow jobs with squeue and
# scontrol; sacct needs slurmdbd). State under /var/spool/slurm-local, logs under /var/log/slurm-local.
# Exit codes: 0 ok, 1 failed, 3 cannot run here (not root, packages missing): the message says which.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
STATE=/var/spool/slurm-local
LOGS=/var/log/slurm-local
RUN=/run/slurm-local
MUNGE_RUN=/run/munge
CTLD_PID="$RUN/slurmctld.pid"
SLURMD_PID="$RUN/slurmd.pid"
MUNGE_PID="$MUNGE_RUN/munged.pid"

say() { echo "slurm-local: $*" >&2; }
cannot() {
  say "$*"
  exit 3
}
fail() {
  say "$*"
  exit 1
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Stop the process in pid file $1 (name $2): SIGTERM, wait up to 15 s, then SIGKILL.
stop_pid() {
  local file="$1" name="$2" pid
  [ -f "$file" ] || return 0
  pid="$(cat "$file")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "$name (pid $pid) ignored SIGTERM for 15 s: SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$file"
}

check_can_run() {
  [ "$(id -u)" = 0 ] || cannot "needs root (munged runs as user munge, slurmd as root)"
  local missing=()
  for cmd in slurmctld slurmd sbatch squeue scontrol sinfo munged munge; do
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$cmd")
  done
  [ "${#missing[@]}" -eq 0 ] ||
    cannot "not installed (${missing[*]}): apt-get install slurmctld slurmd slurm-client munge (scripts/bootstrap.sh does)"
}

write_conf() {
  local host node_line
  host="$(hostname -s)"
  # CPUs, Boards, Sockets, Cores, Threads and RealMemory as slurmd detects them; on the loopback address.
  node_line="$(slurmd -C | head -1)"
  [ -n "$node_line" ] || fail "slurmd -C printed no node line"
  # Never overwrite a configuration this script did not write (a real cluster's).
  if [ -f "$CONF" ] && ! head -1 "$CONF" | grep -q '^# Written by scripts/slurm-local.sh'; then
    cannot "$CONF exists and was not written by this script: this machine has its own Slurm configuration"
  fi
  mkdir -p "$CONF_DIR" "$STATE/ctld" "$STATE/d" "$LOGS" "$RUN"
  cat >"$CONF" <<EOF
# Written by scripts/slurm-local.sh: a single-node cluster on 127.0.0.1 (no cgroups, no accounting).
ClusterName=local
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
MinJobAge=600
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  if pid_alive "$MUNGE_PID" && munge -n >/dev/null 2>&1; then return 0; fi
  mkdir -p "$MUNGE_RUN"
  chown munge:munge "$MUNGE_RUN"
  chmod 755 "$MUNGE_RUN"
  if [ ! -f /etc/munge/munge.key ]; then
    mungekey --create >/dev/null
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
  fi
  runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGE_PID" || fail "munged did not start (see /var/log/munge/munged.log)"
  for _ in $(seq 1 50); do
    munge -n >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  fail "munged started but munge -n fails"
}

running() { pid_alive "$CTLD_PID" && pid_alive "$SLURMD_PID" && timeout 5 scontrol ping >/dev/null 2>&1; }

cmd_start() {
  check_can_run
  if running; then
    say "already running"
    return 0
  fi
  start_munge
  stop_pid "$SLURMD_PID" slurmd
  stop_pid "$CTLD_PID" slurmctld
  write_conf
  slurmctld -c -i || fail "slurmctld did not start (see $LOGS/slurmctld.log)"
  for _ in $(seq 1 50); do
    pid_alive "$CTLD_PID" && break
    sleep 0.1
  done
  pid_alive "$CTLD_PID" || fail "slurmctld exited (see $LOGS/slurmctld.log)"
  slurmd || fail "slurmd did not start (see $LOGS/slurmd.log)"
  local state=""
  for _ in $(seq 1 60); do
    pid_alive "$CTLD_PID" || fail "slurmctld died while starting (see $LOGS/slurmctld.log)"
    state="$(timeout 5 sinfo -h -o %T 2>/dev/null | head -1 || true)"
    [ "$state" = idle ] && break
    sleep 0.5
  done
  [ "$state" = idle ] || fail "the node is '${state:-not listed}' after 30 s, not idle (see $LOGS/)"
  say "running: partition debug, node $(hostname -s) ($(timeout 5 sinfo -h -o '%c CPUs, %m MB' | head -1))"
}

cmd_stop() {
  if pid_alive "$CTLD_PID" && timeout 5 scontrol ping >/dev/null 2>&1; then
    timeout 5 scancel --full --quiet -u root 2>/dev/null || true
  fi
  stop_pid "$SLURMD_PID" slurmd
  stop_pid "$CTLD_PID" slurmctld
  stop_pid "$MUNGE_PID" munged
  say "stopped"
}

cmd_status() {
  if running; then
    echo "running: $(timeout 5 sinfo -h -o '%P %T %c CPUs' | head -1)"
    return 0
  fi
  echo "not running"
  return 1
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *)
    echo "usage: scripts/slurm-local.sh start|stop|status" >&2
    exit 2
    ;;
esac
