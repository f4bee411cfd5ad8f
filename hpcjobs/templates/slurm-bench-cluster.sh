#!/bin/bash
# hpcjobs benchmark job "{{job_name}}", rendered by hpcjobs {{version}}: a scaling run on one
# Dask cluster over the job's nodes (Dask over MPI: rank 0 the scheduler, rank 1 the driver that
# runs the benchmarks, the other ranks one-thread workers, round robin over the nodes), then
# the results go into one JSON lines file.
# Kept in the run folder as submitted; `hpcjobs status|logs|cancel RUN` read the same folder.
{{sbatch}}

set -uo pipefail
RUN_DIR={{run_dir}}
PYTHON={{python}}
JOB_TAG="${SLURM_JOB_ID}"

{{> _event.sh}}

mkdir -p "$RUN_DIR/nodes"

{{> _setup.sh}}

{{> _threads.sh}}

event "start host=$(hostname) nodes=$SLURM_JOB_NUM_NODES ranks={{ranks}}"
echo "hpcjobs: bench job $JOB_TAG start $(date -u +%Y-%m-%dT%H:%M:%SZ) on $SLURM_JOB_NODELIST ($SLURM_JOB_NUM_NODES nodes, {{ranks}} ranks)" >&2

# the driver retires workers between worker counts: their ranks end early (--wait=0 keeps the
# others running); the job's exit code is the driver's (srun reports the largest)
{{> _srun.sh}}
event "cluster rc=$rc"
{{merge}}
merge_rc=$?
if [ "$rc" -eq 0 ]; then rc=$merge_rc; fi
event "end rc=$rc"
echo "hpcjobs: bench job $JOB_TAG end $(date -u +%Y-%m-%dT%H:%M:%SZ) exit code $rc" >&2
exit "$rc"
