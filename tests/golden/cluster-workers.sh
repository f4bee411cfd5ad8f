#!/bin/bash
# hpcjobs interactive cluster "notebook" (workers), rendered by hpcjobs 0.0-test.
# Kept in the run folder as submitted; `hpcjobs status|logs|cancel RUN` read the same folder.
#SBATCH --job-name=notebook
#SBATCH --output=/home/alice/.hpcjobs/runs/notebook-20261207-120000-abcd/logs/slurm-%j.out
#SBATCH --open-mode=append
#SBATCH --chdir=/home/alice/.hpcjobs/runs/notebook-20261207-120000-abcd
#SBATCH --partition=cpu
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --signal=B:USR1@300
#SBATCH --no-requeue

set -uo pipefail
RUN_DIR=/home/alice/.hpcjobs/runs/notebook-20261207-120000-abcd
PYTHON=/opt/venvs/hpc/bin/python
JOB_TAG="${SLURM_JOB_ID}"
WALLTIME_FILE="$RUN_DIR/walltime/$SLURM_JOB_ID"

# One line per event in the run folder: status works even after Slurm forgot the job.
event() { printf '%s %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$JOB_TAG" "$*" >> "$RUN_DIR/events.log"; }

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

event "start host=$(hostname) role=workers"
echo "hpcjobs: workers job $JOB_TAG start $(date -u +%Y-%m-%dT%H:%M:%SZ) on $SLURM_JOB_NODELIST ($SLURM_NTASKS ranks)" >&2

srun --mpi=pmi2 --kill-on-bad-exit=0 --wait=0 /opt/venvs/hpc/bin/python -m hpcjobs mpi-cluster /home/alice/.hpcjobs/runs/notebook-20261207-120000-abcd --join 4242 &
SRUN_PID=$!
# `wait` returns early when the trap runs: wait again until srun has really finished
while :; do
    wait "$SRUN_PID"; rc=$?
    kill -0 "$SRUN_PID" 2>/dev/null || break
done
event "end rc=$rc"
echo "hpcjobs: workers job $JOB_TAG end $(date -u +%Y-%m-%dT%H:%M:%SZ) exit code $rc" >&2
exit "$rc"
