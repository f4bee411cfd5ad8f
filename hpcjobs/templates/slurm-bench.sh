#!/bin/bash
# hpcjobs benchmark job "{{job_name}}", rendered by hpcjobs {{version}}: one task per node runs
# the benchmarks, then their results merge into one JSON lines file.
# Kept in the run folder as submitted; `hpcjobs status|logs|cancel RUN` read the same folder.
{{sbatch}}

set -uo pipefail
RUN_DIR={{run_dir}}
PYTHON={{python}}
JOB_TAG="${SLURM_JOB_ID}"

{{> _event.sh}}

mkdir -p "$RUN_DIR/nodes"

{{> _setup.sh}}

# each node's run sizes its threads to the cores it may use, as `hpcjobs bench` there would
export PYTHONUNBUFFERED=1

event "start host=$(hostname) nodes=$SLURM_JOB_NUM_NODES"
echo "hpcjobs: bench job $JOB_TAG start $(date -u +%Y-%m-%dT%H:%M:%SZ) on $SLURM_JOB_NODELIST ($SLURM_JOB_NUM_NODES nodes)" >&2

# one task per node, with every core the job holds there (--whole); a node that fails does not
# stop the others: the merge keeps what every node wrote
{{srun}} {{launch}}
rc=$?
event "nodes rc=$rc"
{{merge}}
merge_rc=$?
if [ "$rc" -eq 0 ]; then rc=$merge_rc; fi
event "end rc=$rc"
echo "hpcjobs: bench job $JOB_TAG end $(date -u +%Y-%m-%dT%H:%M:%SZ) exit code $rc" >&2
exit "$rc"
