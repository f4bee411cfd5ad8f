#!/bin/bash
# hpcjobs batch script for job "{{job_name}}", rendered by hpcjobs {{version}}.
# Kept in the run folder as submitted; `hpcjobs status|logs|cancel RUN` read the same folder.
{{sbatch}}

set -uo pipefail
RUN_DIR={{run_dir}}
PYTHON={{python}}
MAX_REQUEUES={{max_requeues}}
RESTART="${SLURM_RESTART_COUNT:-0}"
JOB_TAG="${SLURM_JOB_ID}"
if [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then JOB_TAG="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"; fi
STOP_FILE="$RUN_DIR/stop/$SLURM_JOB_ID"
EXIT_FILE="$RUN_DIR/exit/$SLURM_JOB_ID"

{{> _event.sh}}

# Walltime or preemption: Slurm signals this shell early (--signal=B:USR1@N). The job stops
# taking new work, keeps its finished chunks, and requeues itself below.
on_stop_signal() {
    echo "hpcjobs: stop signal received: finishing chunks in flight, keeping finished ones" >&2
    event "signal USR1"
    : > "$STOP_FILE"
}
trap on_stop_signal USR1

mkdir -p "$RUN_DIR/stop" "$RUN_DIR/exit"
rm -f "$STOP_FILE" "$EXIT_FILE"

{{> _setup.sh}}

{{> _threads.sh}}

MODE={{mode}}
if [ "$RESTART" -gt 0 ]; then MODE=resume; fi
event "start host=$(hostname) restart=$RESTART mode=$MODE"
echo "hpcjobs: job $JOB_TAG start $(date -u +%Y-%m-%dT%H:%M:%SZ) on $SLURM_JOB_NODELIST ($SLURM_NTASKS ranks), restart $RESTART, mode $MODE" >&2

{{> _srun.sh}}
# the driver's exit code is the job's (srun reports the largest over all ranks)
if [ -s "$EXIT_FILE" ]; then rc="$(cat "$EXIT_FILE")"; fi

if [ -e "$STOP_FILE" ] && [ "$rc" -eq 3 ]; then
    if [ "$RESTART" -lt "$MAX_REQUEUES" ]; then
        event "requeue $((RESTART + 1))/$MAX_REQUEUES"
        echo "hpcjobs: requeueing (restart $((RESTART + 1)) of at most $MAX_REQUEUES); the next start resumes" >&2
        if scontrol requeue "$SLURM_JOB_ID"; then
            sleep 30 & wait $!   # Slurm ends this shell now
            exit 0
        fi
        event "requeue-failed"
        echo "hpcjobs: scontrol requeue failed: resume by hand with hpcjobs submit --resume" >&2
    else
        event "requeue-limit $MAX_REQUEUES"
        echo "hpcjobs: stopped and not requeued (max_requeues = $MAX_REQUEUES reached); resume with hpcjobs submit --resume" >&2
    fi
fi
event "end rc=$rc"
echo "hpcjobs: job $JOB_TAG end $(date -u +%Y-%m-%dT%H:%M:%SZ) exit code $rc" >&2
exit "$rc"
