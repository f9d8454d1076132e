#!/usr/bin/env bash
# Run aslproc on a Slurm cluster: one participant per array task, in the Singularity image.
#
#   n=$(($(wc -l < /data/bids/participants.tsv) - 1))
#   sbatch --array=1-${n}%10 scripts/slurm_array.sh /data/bids /data/derivatives/aslproc
#
# Participants are the rows of BIDS_DIR/participants.tsv (first column, header skipped), or
# the lines of the file in $SUBJECTS_FILE (labels with or without "sub-"); array task i takes
# the i-th one. Each task gets its own work directory,
# $SCRATCH/aslproc_work/sub-<label>, so tasks never share nipype caches; rerunning a task
# reuses what it finished. After the array: `singularity run ... BIDS OUT group`.
#
# Environment (all optional):
#   ASLPROC_SIF      the image               (default: $HOME/images/aslproc.sif)
#   SCRATCH          fast scratch space      (default: /tmp/$USER)
#   SUBJECTS_FILE    one label per line, instead of participants.tsv
#   OMP_NTHREADS     --omp-nthreads          (default: the task's CPUs, at most 8, as aslproc)
#   ASLPROC_ARGS     extra aslproc options, e.g. "--no-sr --device cpu"
#   SINGULARITY      singularity or apptainer (default: whichever is on PATH)
#   ASLPROC_DRY_RUN  1: print the command instead of running it
#
#SBATCH --job-name=aslproc
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=04:00:00
#SBATCH --gres=gpu:1
#SBATCH --output=aslproc_%A_%a.log
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: sbatch --array=1-N $0 BIDS_DIR OUTPUT_DIR [aslproc options...]" >&2
    exit 2
fi
bids_dir=$(realpath "$1")
out_dir=$(realpath -m "$2")
shift 2

task=${SLURM_ARRAY_TASK_ID:?run with sbatch --array=1-N (one task per participant)}
nprocs=${SLURM_CPUS_PER_TASK:-1}
omp_nthreads=${OMP_NTHREADS:-$(( nprocs < 8 ? nprocs : 8 ))}
sif=${ASLPROC_SIF:-$HOME/images/aslproc.sif}
scratch=${SCRATCH:-/tmp/${USER:-$(id -un)}}

if [[ -n ${SUBJECTS_FILE:-} ]]; then
    list=$(awk '!/^[[:space:]]*(#|$)/ {print $1}' "$SUBJECTS_FILE")
else
    list=$(awk -F '\t' 'NR > 1 && $1 != "" {print $1}' "$bids_dir/participants.tsv")
fi
subject=$(sed -n "${task}p" <<< "$list" | tr -d '\r')
if [[ -z $subject ]]; then
    echo "aslproc: array task $task has no participant (list has $(wc -l <<< "$list"))" >&2
    exit 2
fi
label=${subject#sub-}

work_dir=$scratch/aslproc_work/sub-$label
mkdir -p "$work_dir" "$out_dir"

if [[ -z ${SINGULARITY:-} ]]; then
    SINGULARITY=$(command -v apptainer || command -v singularity || echo singularity)
fi
# shellcheck disable=SC2206  # ASLPROC_ARGS is split into words on purpose
cmd=("$SINGULARITY" exec --nv --cleanenv
     -B "$bids_dir:$bids_dir:ro" -B "$out_dir:$out_dir" -B "$work_dir:$work_dir"
     --env "OMP_NUM_THREADS=$omp_nthreads"
     "$sif" aslproc "$bids_dir" "$out_dir" participant
     --participant-label "$label" -w "$work_dir"
     --nprocs "$nprocs" --omp-nthreads "$omp_nthreads"
     ${ASLPROC_ARGS:-} "$@")

echo "aslproc: task $task -> sub-$label on $(hostname) ($nprocs CPUs)" >&2
if [[ ${ASLPROC_DRY_RUN:-0} == 1 ]]; then
    printf '%q ' "${cmd[@]}"
    echo
    exit 0
fi
exec "${cmd[@]}"
