#!/usr/bin/env bash
# Measure the reference nnU-Net v2 trainer on this machine, on the shared hippocampus data.
#
#   bench/reference/run_reference_training.sh [WORK] [EPOCHS] [ITERATIONS_PER_EPOCH]
#
# Builds its own virtual environment under WORK (default /tmp/autoseg_reference; never the
# project's), plans and preprocesses Dataset004 with the reference, then times EPOCHS x
# ITERATIONS_PER_EPOCH of 3d_fullres fold 0 on the CPU plus its final validation (budget_training.py).
# Compare with: autoseg train 4 3d_fullres 0 -device cpu --epochs EPOCHS --iterations-per-epoch N.
set -euo pipefail

WORK=${1:-/tmp/autoseg_reference}
EPOCHS=${2:-2}
ITERATIONS=${3:-25}
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=$(cd "$HERE/../../../shared/data" 2>/dev/null && pwd) || {
    echo "shared data not found next to the project (../shared/data)" >&2
    exit 2
}

mkdir -p "$WORK/raw" "$WORK/preprocessed" "$WORK/results"
if [ ! -x "$WORK/venv/bin/nnUNetv2_plan_and_preprocess" ]; then
    python3 -m venv "$WORK/venv"
    echo "torch==2.13.0" > "$WORK/constraints.txt"
    "$WORK/venv/bin/pip" install -q torch==2.13.0
    "$WORK/venv/bin/pip" install -q -c "$WORK/constraints.txt" nnunetv2
    # PyPI's torchvision does not import beside the local CPU torch wheel; the plain trainer
    # needs neither it nor timm.
    "$WORK/venv/bin/pip" uninstall -y -q torchvision timm
fi

export nnUNet_raw="$WORK/raw" nnUNet_preprocessed="$WORK/preprocessed"
export nnUNet_results="$WORK/results" nnUNet_compile=f
ln -sfn "$DATA/Dataset004_Hippocampus" "$WORK/raw/Dataset004_Hippocampus"
if [ ! -d "$WORK/preprocessed/Dataset004_Hippocampus/nnUNetPlans_3d_fullres" ]; then
    "$WORK/venv/bin/nnUNetv2_plan_and_preprocess" -d 4 -c 3d_fullres -np 2 > "$WORK/plan.log" 2>&1
fi
rm -rf "$WORK/results/Dataset004_Hippocampus"
"$WORK/venv/bin/python" "$HERE/budget_training.py" \
    "$nnUNet_preprocessed/Dataset004_Hippocampus" 3d_fullres 0 \
    --epochs "$EPOCHS" --iterations-per-epoch "$ITERATIONS" 2> "$WORK/train.err" | tail -n 1
