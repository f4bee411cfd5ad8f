#!/bin/bash
# hpcjobs benchmark job "bench-describe", rendered by hpcjobs 0.0-test: one task per node runs
# the benchmarks, then their results merge into one JSON lines file.
# Kept in the run folder as submitted; `hpcjobs status|logs|cancel RUN` read the same folder.
#SBATCH --job-name=bench-describe
#SBATCH --output=/home/alice/.hpcjobs/runs/bench-describe-20261207-0400-ab/logs/slurm-%j.out
#SBATCH --open-mode=append
#SBATCH --chdir=/home/alice/.hpcjobs/runs/bench-describe-20261207-0400-ab
#SBATCH --partition=cpu
#SBATCH --account=proj-42
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
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

# each node's run sizes its threads to the cores it may use, as `hpcjobs bench` there would
export PYTHONUNBUFFERED=1

event "start host=$(hostname) nodes=$SLURM_JOB_NUM_NODES"
echo "hpcjobs: bench job $JOB_TAG start $(date -u +%Y-%m-%dT%H:%M:%SZ) on $SLURM_JOB_NODELIST ($SLURM_JOB_NUM_NODES nodes)" >&2

# one task per node, with every core the job holds there (--whole); a node that fails does not
# stop the others: the merge keeps what every node wrote
srun --ntasks-per-node=1 --whole --kill-on-bad-exit=0 --label /opt/venvs/hpc/bin/python -m hpcjobs bench-node /home/alice/.hpcjobs/runs/bench-describe-20261207-0400-ab
rc=$?
event "nodes rc=$rc"
/opt/venvs/hpc/bin/python -m hpcjobs bench merge /home/alice/.hpcjobs/runs/bench-describe-20261207-0400-ab
merge_rc=$?
if [ "$rc" -eq 0 ]; then rc=$merge_rc; fi
event "end rc=$rc"
echo "hpcjobs: bench job $JOB_TAG end $(date -u +%Y-%m-%dT%H:%M:%SZ) exit code $rc" >&2
exit "$rc"
