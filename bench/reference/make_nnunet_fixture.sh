#!/usr/bin/env bash
# Make the nnU-Net v2 interoperability fixture (Testing/data/nnunet_reference) with nnunetv2 itself.
#
#   bench/reference/make_nnunet_fixture.sh [WORK] [EPOCHS] [ITERATIONS_PER_EPOCH]
#
# Builds nnunetv2's own virtual environment under WORK (default /tmp/autoseg_nnunet_fixture; never
# the project's), then runs make_nnunet_fixture.py in it: a synthetic two-channel dataset, nnunetv2's
# planners (default and ResEnc M) with the plans shrunk to tiny networks, a few CPU epochs of fold 0
# for 3d_fullres, 2d and ResEnc 3d_fullres (and fold "all" of a 3d_lowres -> 3d_cascade_fullres
# cascade), nnunetv2's predictor on three test images, and find_best_configuration between
# 3d_fullres and 2d (fold 0) with its recommended inference (ensemble + post-processing). Finally it
# copies the model folders (plans, dataset and fingerprint JSON, checkpoints; no logs, no pickles)
# and nnunetv2's predictions (labels + .npz probabilities; its .pkl files are left out) into the
# fixture folder. nnU-Net's training is not deterministic, so a re-run gives other weights: the
# committed fixture is the reference, and the tests compare AutoSeg against it.
set -euo pipefail

WORK=${1:-/tmp/autoseg_nnunet_fixture}
EPOCHS=${2:-12}
ITERATIONS=${3:-25}
HERE=$(cd "$(dirname "$0")" && pwd)
TARGET="$HERE/../../Testing/data/nnunet_reference"
DATASET=Dataset990_AutoSegInterop

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
if [ ! -x "$WORK/venv/bin/nnUNetv2_predict" ]; then
    python3 -m venv "$WORK/venv"
    echo "torch==2.13.0" > "$WORK/constraints.txt"
    "$WORK/venv/bin/pip" install -q torch==2.13.0
    "$WORK/venv/bin/pip" install -q -c "$WORK/constraints.txt" nnunetv2
    # PyPI's torchvision does not import beside the local CPU torch wheel; the trainers used here
    # need neither it nor timm.
    "$WORK/venv/bin/pip" uninstall -y -q torchvision timm
fi

rm -rf "$WORK/raw" "$WORK/preprocessed" "$WORK/results" "$WORK/imagesTs" "$WORK/predictions"
rm -f "$WORK/fixture.log"
export nnUNet_raw="$WORK/raw" nnUNet_preprocessed="$WORK/preprocessed"
export nnUNet_results="$WORK/results" nnUNet_compile=f
PY="$WORK/venv/bin/python $HERE/make_nnunet_fixture.py $WORK"
$PY dataset
$PY plan
nnUNet_n_proc_DA=0 nnUNet_def_n_proc=1 $PY train --epochs "$EPOCHS" --iterations-per-epoch "$ITERATIONS" >> "$WORK/fixture.log" 2>&1
$PY predict >> "$WORK/fixture.log" 2>&1
nnUNet_n_proc_DA=0 nnUNet_def_n_proc=1 $PY select >> "$WORK/fixture.log" 2>&1
$PY export >> "$WORK/fixture.log" 2>&1
$PY manifest --epochs "$EPOCHS" --iterations-per-epoch "$ITERATIONS"

rm -rf "$TARGET/results" "$TARGET/predictions" "$TARGET/imagesTs"
mkdir -p "$TARGET/results/$DATASET" "$TARGET/predictions"
cp -r "$WORK/imagesTs" "$TARGET/imagesTs"
for model in "$WORK/results/$DATASET"/*__*__*; do
    out="$TARGET/results/$DATASET/$(basename "$model")"
    mkdir -p "$out"
    cp "$model"/{plans.json,dataset.json,dataset_fingerprint.json} "$out/"
    for fold in "$model"/fold_*; do
        mkdir -p "$out/$(basename "$fold")"
        cp "$fold/checkpoint_final.pth" "$out/$(basename "$fold")/"
    done
done
# -chk is tested with the plain 3d_fullres model only (each checkpoint costs ~200 KB).
PLAIN=nnUNetTrainer__nnUNetPlans__3d_fullres/fold_0
cp "$WORK/results/$DATASET/$PLAIN/checkpoint_best.pth" "$TARGET/results/$DATASET/$PLAIN/"
# find_best_configuration's choice: its JSON files only (postprocessing.pkl is never read).
cp "$WORK/results/$DATASET/inference_information.json" "$TARGET/results/$DATASET/"
(cd "$WORK/results/$DATASET" && find . -name postprocessing.json) | while read -r file; do
    mkdir -p "$TARGET/results/$DATASET/$(dirname "$file")"
    cp "$WORK/results/$DATASET/$file" "$TARGET/results/$DATASET/$file"
done
for run in "$WORK/predictions"/*; do
    [ "$(basename "$run")" = recommended_ensemble ] && continue  # an intermediate step
    out="$TARGET/predictions/$(basename "$run")"
    mkdir -p "$out"
    cp "$run"/*.nii.gz "$out/"
    if compgen -G "$run/*.npz" > /dev/null; then cp "$run"/*.npz "$out/"; fi
done
cp "$WORK/manifest.json" "$WORK/export_members.json" "$TARGET/"
du -sh "$TARGET"
