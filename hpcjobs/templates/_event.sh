# One line per event in the run folder: status works even after Slurm forgot the job.
event() { printf '%s %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$JOB_TAG" "$*" >> "$RUN_DIR/events.log"; }
