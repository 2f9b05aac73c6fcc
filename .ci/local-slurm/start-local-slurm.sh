#!/usr/bin/env bash
# start-local-slurm.sh - bring up a real single-node SLURM cluster (munged + slurmctld + slurmd)
# on loopback WITHOUT systemd (Debian 12 / slurm-wlm 22.05). Idempotent: safe to run repeatedly;
# reuses daemons that are already running (from this script's PID files, or a munged that
# already answers), and only (re)starts what is missing.
#
# Environment knobs (all optional):
#   SLURM_LOCAL_DIR       base dir for config/state/logs/pids   (default ${TMPDIR:-/tmp}/lh-slurm)
#   SLURM_LOCAL_NODENAME  node name                              (default: hostname -s)
#   SLURM_LOCAL_CPUS      CPUs advertised for the node           (default: nproc; > nproc => oversubscribe
#                                                                 via SlurmdParameters=config_overrides)
#   SLURM_LOCAL_MEM_MB    RealMemory of the node in MB           (default: 90% of MemTotal)
#   SLURM_LOCAL_CTLD_PORT / SLURM_LOCAL_SLURMD_PORT              (default 6817 / 6818)
#   SLURM_LOCAL_TIMEOUT   seconds to wait for each readiness step (default 60)
#   SLURM_LOCAL_CLEAN=1   wipe saved slurmctld state (old jobs) before starting a fresh slurmctld
#   SLURM_LOCAL_KILL_INVALID_DEPEND=1  cancel a job whose afterok dependency failed (default: leave it
#                         pending with Reason=DependencyNeverSatisfied, as many real clusters do, so that
#                         lh-host's detection of such a dependency is what the tests exercise)
#
# Adapted for lh-host's CI from ../shared/tools/local-slurm/ (the kill_invalid_depend knob).
# After it succeeds:   export SLURM_CONF=$SLURM_LOCAL_DIR/slurm.conf   (or: source $SLURM_LOCAL_DIR/env.sh)
set -euo pipefail

BASE=${SLURM_LOCAL_DIR:-${TMPDIR:-/tmp}/lh-slurm}
CONF=$BASE/slurm.conf
RUN=$BASE/run
LOG=$BASE/log
STATE=$BASE/state
# SlurmctldHost must equal the short hostname (slurmctld: "This host (x) not a valid controller")
# or literally "localhost" (accepted by slurmctld 22.05 on any host).
NODE=${SLURM_LOCAL_NODENAME:-$(hostname -s 2>/dev/null || uname -n | cut -d. -f1)}
NODE=${NODE:-localhost}
REAL_CPUS=$(nproc)
CPUS=${SLURM_LOCAL_CPUS:-$REAL_CPUS}
MEM_TOTAL_MB=$(awk '/^MemTotal:/ {print int($2/1024)}' /proc/meminfo)
MEM=${SLURM_LOCAL_MEM_MB:-$(( MEM_TOTAL_MB * 9 / 10 ))}
CTLD_PORT=${SLURM_LOCAL_CTLD_PORT:-6817}
SLURMD_PORT=${SLURM_LOCAL_SLURMD_PORT:-6818}
TIMEOUT=${SLURM_LOCAL_TIMEOUT:-60}
DEPEND_PARAMS="# a job whose afterok dependency failed stays pending (DependencyNeverSatisfied)"
if [ "${SLURM_LOCAL_KILL_INVALID_DEPEND:-0}" = 1 ]; then
  DEPEND_PARAMS="DependencyParameters=kill_invalid_depend"
fi

T0=$(date +%s.%N)
log() { printf '[start-local-slurm %6.2fs] %s\n' "$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (apt-get, munge key, slurmd must run as root)"

# alive PIDFILE NAME: pid file exists, process exists, is not a zombie, and its comm starts with NAME
# (guards against stale pid files and PID reuse).
alive() {
  local f=$1 name=$2 p st comm
  [ -s "$f" ] || return 1
  p=$(tr -dc 0-9 < "$f"); [ -n "$p" ] || return 1
  [ -r "/proc/$p/stat" ] || return 1
  st=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) || return 1
  [ "$st" != Z ] || return 1
  comm=$(cat "/proc/$p/comm" 2>/dev/null) || return 1
  [[ $comm == "$name"* ]]
}

wait_for() { # wait_for DESCRIPTION CMD...   (polls every 0.2 s up to $TIMEOUT s)
  local what=$1; shift
  local deadline=$(( $(date +%s) + TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
  log "$what: ok"
}

# ---------------------------------------------------------------- 1. packages
missing=()
for b in munged munge unmunge mungekey slurmctld slurmd sbatch srun sinfo squeue scontrol scancel; do
  command -v "$b" >/dev/null 2>&1 || missing+=("$b")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing slurm-wlm + munge (missing: ${missing[*]})"
  export DEBIAN_FRONTEND=noninteractive
  APT=(apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
  # --no-install-recommends: 9 packages / 3.7 MB instead of 43 (mailutils, pmix, ...).
  # Note: in containers /usr/sbin/policy-rc.d (exit 101) keeps postinst from starting daemons;
  # on a systemd host the munge.service will be started by the package - we then just reuse it.
  if ! "${APT[@]}" install -y --no-install-recommends slurm-wlm munge; then
    log "install failed; running apt-get update and retrying"
    for _ in 1 2 3; do "${APT[@]}" update && break; sleep 5; done
    "${APT[@]}" install -y --no-install-recommends slurm-wlm munge
  fi
  log "packages installed"
fi
getent passwd munge >/dev/null || die "user 'munge' missing (munge package broken?)"
getent passwd slurm >/dev/null || die "user 'slurm' missing (slurm-wlm package broken?)"

# ---------------------------------------------------------------- 2. munge
mkdir -p "$BASE" "$RUN" "$LOG"
install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge
install -d -o munge -g munge -m 0711 /var/lib/munge
install -d -o munge -g munge -m 0755 /run/munge      # systemd's RuntimeDirectory= normally does this
KEY=/etc/munge/munge.key
if [ ! -s "$KEY" ]; then
  log "creating munge key $KEY"
  rm -f "$KEY"
  mungekey --create --keyfile="$KEY" 2>/dev/null || dd if=/dev/urandom of="$KEY" bs=1 count=1024 status=none
fi
chown munge:munge "$KEY"; chmod 0400 "$KEY"          # munged refuses group/world-readable keys

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if munge_ok; then
  if alive "$RUN/munged.pid" munged; then log "munged already running (started by us, pid $(cat "$RUN/munged.pid"))"
  else log "a munged not started by this script is already answering; reusing it (won't stop it)"; rm -f "$RUN/munged.pid"; fi
else
  rm -f "$RUN/munged.pid"
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged || die "munged failed to start; see /var/log/munge/munged.log"
  wait_for "munge -n | unmunge" munge_ok || die "munged not answering; see /var/log/munge/munged.log"
  cp /run/munge/munged.pid "$RUN/munged.pid"        # marker: we own this munged
fi

# ---------------------------------------------------------------- 3. config
install -d -o slurm -g slurm -m 0755 "$RUN" "$LOG" "$STATE/ctld"   # slurmctld runs as SlurmUser=slurm
install -d -m 0755 "$STATE/d"                                      # slurmd runs as root
EXTRA_SLURMD_PARAMS=""
if [ "$CPUS" -gt "$REAL_CPUS" ]; then
  EXTRA_SLURMD_PARAMS="SlurmdParameters=config_overrides"   # else node is drained: 'Low socket*core*thread count'
fi
cat > "$CONF.new" <<EOF
# generated by start-local-slurm.sh - single node on loopback, no cgroups, no accounting
ClusterName=localci
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=slurm
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=${STATE}/ctld
SlurmdSpoolDir=${STATE}/d
SlurmctldPidFile=${RUN}/slurmctld.pid
SlurmdPidFile=${RUN}/slurmd.pid
SlurmctldLogFile=${LOG}/slurmctld.log
SlurmdLogFile=${LOG}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups in containers: track processes via /proc, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
# a node that was DOWN comes back by itself as soon as slurmd registers with a valid config
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# default batch_sched_delay=3 adds ~3 s between job "waves"; 0 => next job starts <1 s after a slot frees
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
${DEPEND_PARAMS}
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# sacct is unavailable without slurmdbd; this file keeps one line per finished job (state, exit code)
JobCompType=jobcomp/filetxt
JobCompLoc=${LOG}/jobcomp.txt
MailProg=/bin/true
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
# completed jobs stay visible in 'squeue -t all' / 'scontrol show job' for 300 s
MinJobAge=300
KillWait=5
Waittime=0
${EXTRA_SLURMD_PARAMS}
NodeName=${NODE} NodeAddr=127.0.0.1 NodeHostname=${NODE} CPUs=${CPUS} RealMemory=${MEM} State=UNKNOWN
PartitionName=debug Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
EOF
CONF_CHANGED=0
if ! cmp -s "$CONF.new" "$CONF"; then mv "$CONF.new" "$CONF"; CONF_CHANGED=1; log "wrote $CONF"; else rm -f "$CONF.new"; fi
chmod 0644 "$CONF"
export SLURM_CONF=$CONF
printf 'export SLURM_CONF=%s\n' "$CONF" > "$BASE/env.sh"

stop_pid() { # stop_pid PIDFILE NAME
  local f=$1 name=$2 p
  alive "$f" "$name" || { rm -f "$f"; return 0; }
  p=$(cat "$f"); log "stopping $name (pid $p)"; kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 1 100); do alive "$f" "$name" || break; sleep 0.2; done
  alive "$f" "$name" && { log "$name did not exit, SIGKILL"; kill -KILL "$p" 2>/dev/null || true; sleep 0.5; }
  rm -f "$f"
}
if [ $CONF_CHANGED = 1 ]; then   # node definition changes need a daemon restart, not just reconfigure
  stop_pid "$RUN/slurmd.pid" slurmd
  stop_pid "$RUN/slurmctld.pid" slurmctld
fi

# ---------------------------------------------------------------- 4. slurmctld
ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
if alive "$RUN/slurmctld.pid" slurmctld; then
  log "slurmctld already running (pid $(cat "$RUN/slurmctld.pid"))"
else
  rm -f "$RUN/slurmctld.pid"
  CTLD_ARGS=(-f "$CONF")
  [ "${SLURM_LOCAL_CLEAN:-0}" = 1 ] && CTLD_ARGS+=(-c)   # -c: ignore/clear saved job state
  log "starting slurmctld"
  slurmctld "${CTLD_ARGS[@]}" || die "slurmctld failed; see $LOG/slurmctld.log"
fi
wait_for "slurmctld answers (scontrol ping)" ctld_up || { tail -20 "$LOG/slurmctld.log" >&2; die "slurmctld not up"; }

# ---------------------------------------------------------------- 5. slurmd
SLURMD_T=0   # earliest acceptable SlurmdStartTime (so a node state restored from saved state doesn't fool us)
if alive "$RUN/slurmd.pid" slurmd; then
  log "slurmd already running (pid $(cat "$RUN/slurmd.pid"))"
else
  rm -f "$RUN/slurmd.pid"
  SLURMD_T=$(( $(date +%s) - 1 ))
  log "starting slurmd -N $NODE"
  slurmd -f "$CONF" -N "$NODE" || die "slurmd failed; see $LOG/slurmd.log"
fi

# ---------------------------------------------------------------- 6. node -> idle
node_state() { sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -1; }
node_registered() {   # slurmd answers locally AND slurmctld has seen this slurmd instance register
  scontrol show slurmd >/dev/null 2>&1 || return 1
  local t; t=$(scontrol show node "$NODE" 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*' | cut -d= -f2)
  [ -n "$t" ] && [ "$t" != None ] || return 1
  [ "$(date -d "$t" +%s 2>/dev/null || echo 0)" -ge "$SLURMD_T" ]
}
node_ready() {
  node_registered || return 1
  local st; st=$(node_state)
  case "$st" in
    idle|mixed|allocated|completing) return 0 ;;
    down|drained|draining|drain|fail)  # responding but administratively down: resume it
      scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true; return 1 ;;
    *) return 1 ;;                    # down*/unknown*/idle* (not yet registered) -> keep waiting
  esac
}
deadline=$(( $(date +%s) + TIMEOUT ))
until node_ready; do
  st=$(node_state)
  # inval = slurmd registered with less CPUs/memory than slurm.conf claims: will never fix itself
  if [ "$st" = inval ] || [ "$(date +%s)" -ge "$deadline" ]; then
    sinfo -R >&2 || true; tail -20 "$LOG/slurmd.log" >&2 || true
    die "node $NODE did not become idle (state: $st). If 'Low RealMemory/socket*core*thread count': lower SLURM_LOCAL_MEM_MB/SLURM_LOCAL_CPUS"
  fi
  sleep 0.2
done
log "node $NODE idle: ok"

log "cluster ready"
sinfo >&2
cat >&2 <<EOF

Single-node SLURM cluster is up (node $NODE, $CPUS CPUs, ${MEM} MB).
  export SLURM_CONF=$CONF        # or: source $BASE/env.sh
  sinfo; srun hostname
  sbatch --array=0-7 job.sh      # completed jobs: squeue -t all / scontrol show job <id> (for 300 s),
                                 #                 and $LOG/jobcomp.txt (sacct is NOT available)
  logs: $LOG/slurmctld.log $LOG/slurmd.log /var/log/munge/munged.log
  stop: $(dirname "$(readlink -f "$0")")/stop-local-slurm.sh
EOF
