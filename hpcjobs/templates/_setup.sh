# --- setup lines ([slurm] setup): each must succeed, or the job ends here ---
setup_failed() {
    echo "hpcjobs: setup line failed with exit code $1: $2" >&2
    event "setup-failed rc=$1"; event "end rc=$1"; exit "$1"
}
set +u +o pipefail   # module and activate scripts are not written for strict mode
{{setup}}
set -u -o pipefail
# ---
