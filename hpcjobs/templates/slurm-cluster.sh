#!/bin/bash
# hpcjobs interactive cluster "{{job_name}}" ({{role}}), rendered by hpcjobs {{version}}.
# Kept in the run folder as submitted; `hpcjobs status|logs|cancel RUN` read the same folder.
{{sbatch}}

set -uo pipefail
RUN_DIR={{run_dir}}
PYTHON={{python}}
JOB_TAG="${SLURM_JOB_ID}"
WALLTIME_FILE="$RUN_DIR/walltime/$SLURM_JOB_ID"

{{> _event.sh}}

# The walltime is near: Slurm signals this shell early (--signal=B:USR1@N). The scheduler
# sees the file, warns its clients, and closes the cluster cleanly before the end.
on_walltime_signal() {
    echo "hpcjobs: walltime signal received: warning the cluster's clients" >&2
    event "signal USR1"
    : > "$WALLTIME_FILE"
}
trap on_walltime_signal USR1

mkdir -p "$RUN_DIR/walltime" "$RUN_DIR/stop"
rm -f "$WALLTIME_FILE"

{{> _setup.sh}}

{{> _threads.sh}}

event "start host=$(hostname) role={{role}}"
echo "hpcjobs: {{role}} job $JOB_TAG start $(date -u +%Y-%m-%dT%H:%M:%SZ) on $SLURM_JOB_NODELIST ($SLURM_NTASKS ranks)" >&2

{{> _srun.sh}}
event "end rc=$rc"
echo "hpcjobs: {{role}} job $JOB_TAG end $(date -u +%Y-%m-%dT%H:%M:%SZ) exit code $rc" >&2
exit "$rc"
