#!/bin/bash
# hpcjobs batch script for job "sensor-clusters", rendered by hpcjobs 0.0-test.
# Kept in the run folder as submitted; `hpcjobs status|logs|cancel RUN` read the same folder.
#SBATCH --job-name=sensor-clusters
#SBATCH --output=/home/alice/.hpcjobs/runs/sensor-clusters-20261125-120000-abcd/logs/slurm-%j.out
#SBATCH --open-mode=append
#SBATCH --chdir=/home/alice/.hpcjobs/runs/sensor-clusters-20261125-120000-abcd
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=3
#SBATCH --signal=B:USR1@120
#SBATCH --requeue

set -uo pipefail
RUN_DIR=/home/alice/.hpcjobs/runs/sensor-clusters-20261125-120000-abcd
PYTHON=/opt/venvs/hpc/bin/python
MAX_REQUEUES=3
RESTART="${SLURM_RESTART_COUNT:-0}"
JOB_TAG="${SLURM_JOB_ID}"
if [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then JOB_TAG="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"; fi
STOP_FILE="$RUN_DIR/stop/$SLURM_JOB_ID"
EXIT_FILE="$RUN_DIR/exit/$SLURM_JOB_ID"

# One line per event in the run folder: status works even after Slurm forgot the job.
event() { printf '%s %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$JOB_TAG" "$*" >> "$RUN_DIR/events.log"; }

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

# --- setup lines ([slurm] setup): each must succeed, or the job ends here ---
setup_failed() {
    echo "hpcjobs: setup line failed with exit code $1: $2" >&2
    event "setup-failed rc=$1"; event "end rc=$1"; exit "$1"
}
set +u +o pipefail   # module and activate scripts are not written for strict mode
# (none)
set -u -o pipefail
# ---

# each worker rank runs one Dask thread per core Slurm gave it (cpus_per_task), each with one
# Numba/BLAS thread: never more threads than cores
export NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
export PYTHONUNBUFFERED=1

MODE=new
if [ "$RESTART" -gt 0 ]; then MODE=resume; fi
event "start host=$(hostname) restart=$RESTART mode=$MODE"
echo "hpcjobs: job $JOB_TAG start $(date -u +%Y-%m-%dT%H:%M:%SZ) on $SLURM_JOB_NODELIST ($SLURM_NTASKS ranks), restart $RESTART, mode $MODE" >&2

srun --mpi=pmi2 --kill-on-bad-exit=0 --wait=0 /opt/venvs/hpc/bin/python -m hpcjobs mpi-run /home/alice/.hpcjobs/runs/sensor-clusters-20261125-120000-abcd --mode "$MODE" &
SRUN_PID=$!
# `wait` returns early when the trap runs: wait again until srun has really finished
while :; do
    wait "$SRUN_PID"; rc=$?
    kill -0 "$SRUN_PID" 2>/dev/null || break
done
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
