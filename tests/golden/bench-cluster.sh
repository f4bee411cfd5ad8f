#!/bin/bash
# hpcjobs benchmark job "bench-describe", rendered by hpcjobs 0.0-test: a scaling run on one
# Dask cluster over the job's nodes (Dask over MPI: rank 0 the scheduler, rank 1 the driver that
# runs the benchmarks, the other ranks one-thread workers, round robin over the nodes), then
# the results go into one JSON lines file.
# Kept in the run folder as submitted; `hpcjobs status|logs|cancel RUN` read the same folder.
#SBATCH --job-name=bench-describe
#SBATCH --output=/home/alice/.hpcjobs/runs/bench-describe-20261207-0400-ab/logs/slurm-%j.out
#SBATCH --open-mode=append
#SBATCH --chdir=/home/alice/.hpcjobs/runs/bench-describe-20261207-0400-ab
#SBATCH --partition=cpu
#SBATCH --account=proj-42
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=3
#SBATCH --time=00:30:00
#SBATCH --no-requeue
#SBATCH --exclusive

set -uo pipefail
RUN_DIR=/home/alice/.hpcjobs/runs/bench-describe-20261207-0400-ab
PYTHON=/opt/venvs/hpc/bin/python
JOB_TAG="${SLURM_JOB_ID}"

# One line per event in the run folder: status works even after Slurm forgot the job.
event() { printf '%s %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$JOB_TAG" "$*" >> "$RUN_DIR/events.log"; }

mkdir -p "$RUN_DIR/nodes"

# --- setup lines ([slurm] setup): each must succeed, or the job ends here ---
setup_failed() {
    echo "hpcjobs: setup line failed with exit code $1: $2" >&2
    event "setup-failed rc=$1"; event "end rc=$1"; exit "$1"
}
set +u +o pipefail   # module and activate scripts are not written for strict mode
module load python
_rc=$?; if [ $_rc -ne 0 ]; then setup_failed $_rc 'module load python'; fi
set -u -o pipefail
# ---

# each worker rank runs one Dask thread per core Slurm gave it (cpus_per_task), each with one
# Numba/BLAS thread: never more threads than cores
export NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
export PYTHONUNBUFFERED=1

event "start host=$(hostname) nodes=$SLURM_JOB_NUM_NODES ranks=6"
echo "hpcjobs: bench job $JOB_TAG start $(date -u +%Y-%m-%dT%H:%M:%SZ) on $SLURM_JOB_NODELIST ($SLURM_JOB_NUM_NODES nodes, 6 ranks)" >&2

# the driver retires workers between worker counts: their ranks end early (--wait=0 keeps the
# others running); the job's exit code is the driver's (srun reports the largest)
srun --mpi=pmi2 --ntasks=6 --distribution=cyclic --kill-on-bad-exit=0 --wait=0 /opt/venvs/hpc/bin/python -m hpcjobs bench-cluster /home/alice/.hpcjobs/runs/bench-describe-20261207-0400-ab &
SRUN_PID=$!
# `wait` returns early when the trap runs: wait again until srun has really finished
while :; do
    wait "$SRUN_PID"; rc=$?
    kill -0 "$SRUN_PID" 2>/dev/null || break
done
event "cluster rc=$rc"
/opt/venvs/hpc/bin/python -m hpcjobs bench merge /home/alice/.hpcjobs/runs/bench-describe-20261207-0400-ab
merge_rc=$?
if [ "$rc" -eq 0 ]; then rc=$merge_rc; fi
event "end rc=$rc"
echo "hpcjobs: bench job $JOB_TAG end $(date -u +%Y-%m-%dT%H:%M:%SZ) exit code $rc" >&2
exit "$rc"
