#!/usr/bin/env bash
# Time the reference's nnUNetv2_predict on this machine, as a user runs it: one fold, mirroring
# TTA, its default settings, with the fold-0 model that run_reference_training.sh left in WORK.
#
#   bench/reference/run_reference_prediction.sh [WORK] [INPUT_FOLDER]
#
# INPUT_FOLDER defaults to the shared hippocampus training images (100 cases).
# Compare with: autoseg predict -i INPUT_FOLDER -o OUT -m <model folder> -f 0 -device cpu
set -euo pipefail

WORK=${1:-/tmp/autoseg_reference}
HERE=$(cd "$(dirname "$0")" && pwd)
INPUT=${2:-$(cd "$HERE/../../../shared/data/Dataset004_Hippocampus/imagesTr" && pwd)}
if [ ! -d "$WORK/results/Dataset004_Hippocampus" ]; then
    echo "no reference model in $WORK: run run_reference_training.sh $WORK first" >&2
    exit 2
fi

export nnUNet_raw="$WORK/raw" nnUNet_preprocessed="$WORK/preprocessed"
export nnUNet_results="$WORK/results"
OUTPUT="$WORK/predictions"
rm -rf "$OUTPUT"
cases=$(find -L "$INPUT" -name "*_0000.nii.gz" | wc -l)
started=$(date +%s.%N)
"$WORK/venv/bin/nnUNetv2_predict" -i "$INPUT" -o "$OUTPUT" -d 4 -c 3d_fullres -f 0 \
    -device cpu > "$WORK/predict.log" 2>&1
python3 -c 'import sys; s = float(sys.argv[2]) - float(sys.argv[1]); n = int(sys.argv[3])
print(f"reference: {n} case(s) in {s:.1f} s, {s / n:.2f} s per case including start-up")' \
    "$started" "$(date +%s.%N)" "$cases"
