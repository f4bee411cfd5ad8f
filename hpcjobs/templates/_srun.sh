{{srun}} {{launch}} &
SRUN_PID=$!
# `wait` returns early when the trap runs: wait again until srun has really finished
while :; do
    wait "$SRUN_PID"; rc=$?
    kill -0 "$SRUN_PID" 2>/dev/null || break
done
