# Shared settings for slurm/start, slurm/stop and slurm/status (sourced, not run).
# The cluster lives in its own folder so it never clashes with a site Slurm:
#   HPCJOBS_SLURM_HOME   default /var/lib/hpcjobs-slurm
#   HPCJOBS_SLURM_PORT   slurmctld port, default 16817; the nodes use the next three ports + 1
SLURM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HOME_DIR="${HPCJOBS_SLURM_HOME:-/var/lib/hpcjobs-slurm}"
CTLD_PORT="${HPCJOBS_SLURM_PORT:-16817}"
CONF="$HOME_DIR/etc/slurm.conf"
NODES=(node1 node2 node3)
export SLURM_CONF="$CONF"
# Debian installs the daemons in /usr/sbin, which a user's (or a trimmed) PATH may lack
export PATH="$PATH:/usr/sbin:/usr/bin:/sbin:/bin"

say() { printf 'slurm: %s\n' "$*" >&2; }
die() { printf 'slurm: error: %s\n' "$*" >&2; exit 1; }

# pid of a daemon from its pid file if that process is alive, else nothing
live_pid() {
    local file="$1" pid
    [[ -r "$file" ]] || return 1
    pid="$(cat "$file" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && { echo "$pid"; return 0; }
    return 1
}

munge_ok() { command -v munge >/dev/null && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
ctld_ok() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
