#!/usr/bin/env bash
# Measure how closely AutoSeg reproduces nnunetv2's predictions with nnunetv2's own models: the
# agreement figures of the nnU-Net interoperability issue, on the shared hippocampus data.
#
#   bench/reference/hippocampus_agreement.sh [WORK] [EPOCHS] [ITERATIONS_PER_EPOCH] \
#       [RESENC_EPOCHS] [RESENC_ITERATIONS_PER_EPOCH]
#
# In nnunetv2's own virtual environment (WORK/venv, or REFERENCE_VENV=/path/to/venv; AutoSeg never
# imports nnunetv2), on ../shared/data/Dataset004_Hippocampus:
#   1. plans and preprocesses 3d_fullres with nnU-Net's default planner (nnUNetPlans) and its
#      ResEnc M planner (nnUNetResEncUNetMPlans);
#   2. trains fold 0 of both with nnUNetTrainer on the CPU for EPOCHS x ITERATIONS_PER_EPOCH
#      (the ResEnc model for RESENC_EPOCHS x RESENC_ITERATIONS_PER_EPOCH, by default the same;
#      budget_training.py; a short budget: the models segment, they are not converged) and keeps
#      nnunetv2's own validation Dice (fold_0/validation/summary.json);
#   3. predicts the fold-0 validation images with nnUNetv2_predict -f 0 -device cpu
#      --save_probabilities (fp32, mirroring TTA, step 0.5: its defaults);
#   4. predicts the same images with AutoSeg from the same model folders (bench/nnunet_agreement.py,
#      project venv .venv or AUTOSEG_PYTHON) in fp32 and in AutoSeg's default precision, and writes
#      WORK/agreement_<plans>_<precision>.jsonl (one line per case, then the summary line).
# Every heavy step runs under `nice -n 19`, one after the other. On a 2-core CPU shared with other
# work a training iteration took 10-25 s; the README's figures come from `... 5 50 2 40`.
set -euo pipefail

WORK=${1:-/tmp/autoseg_agreement}
EPOCHS=${2:-5}
ITERATIONS=${3:-50}
RESENC_EPOCHS=${4:-$EPOCHS}
RESENC_ITERATIONS=${5:-$ITERATIONS}
HERE=$(cd "$(dirname "$0")" && pwd)
PROJECT=$(cd "$HERE/../.." && pwd)
DATA=$(cd "$PROJECT/../shared/data" 2>/dev/null && pwd) || {
    echo "shared data not found next to the project (../shared/data)" >&2
    exit 2
}
mkdir -p "$WORK/raw" "$WORK/preprocessed" "$WORK/results" "$WORK/predictions"
WORK=$(cd "$WORK" && pwd)
VENV=${REFERENCE_VENV:-$WORK/venv}
AUTOSEG_PYTHON=${AUTOSEG_PYTHON:-$PROJECT/.venv/bin/python}
if [ ! -x "$VENV/bin/nnUNetv2_predict" ]; then
    python3 -m venv "$VENV"
    echo "torch==2.13.0" > "$WORK/constraints.txt"
    "$VENV/bin/pip" install -q torch==2.13.0
    "$VENV/bin/pip" install -q -c "$WORK/constraints.txt" nnunetv2
    # PyPI's torchvision does not import beside the local CPU torch wheel; nnUNetTrainer needs
    # neither it nor timm.
    "$VENV/bin/pip" uninstall -y -q torchvision timm
fi

DATASET=Dataset004_Hippocampus
export nnUNet_raw="$WORK/raw" nnUNet_preprocessed="$WORK/preprocessed"
export nnUNet_results="$WORK/results" nnUNet_compile=f
PRE="$WORK/preprocessed/$DATASET"
ln -sfn "$DATA/$DATASET" "$WORK/raw/$DATASET"
NICE="nice -n 19"

if [ ! -d "$PRE/nnUNetPlans_3d_fullres" ]; then
    $NICE "$VENV/bin/nnUNetv2_plan_and_preprocess" -d 4 -c 3d_fullres -np 1 > "$WORK/plan.log" 2>&1
fi
if [ ! -d "$PRE/nnUNetResEncUNetMPlans_3d_fullres" ]; then
    $NICE "$VENV/bin/nnUNetv2_plan_experiment" -d 4 -pl nnUNetPlannerResEncM >> "$WORK/plan.log" 2>&1
    $NICE "$VENV/bin/nnUNetv2_preprocess" -d 4 -plans_name nnUNetResEncUNetMPlans -c 3d_fullres \
        -np 1 >> "$WORK/plan.log" 2>&1
fi

# ResEnc M plans a batch of 58 patches here (its planner fills the memory of a 9-11 GB GPU); both
# models train with the default plan's batch instead, which leaves the network and the inference as
# planned and keeps a CPU epoch affordable.
BATCH=$("$VENV/bin/python" -c 'import json, sys
print(json.load(open(sys.argv[1]))["configurations"]["3d_fullres"]["batch_size"])' "$PRE/nnUNetPlans.json")
for PLANS in nnUNetPlans nnUNetResEncUNetMPlans; do
    MODEL="$WORK/results/$DATASET/nnUNetTrainer__${PLANS}__3d_fullres"
    BUDGET=("$EPOCHS" "$ITERATIONS")
    [ "$PLANS" = nnUNetPlans ] || BUDGET=("$RESENC_EPOCHS" "$RESENC_ITERATIONS")
    if [ ! -f "$MODEL/fold_0/checkpoint_final.pth" ]; then
        $NICE "$VENV/bin/python" "$HERE/budget_training.py" "$PRE" 3d_fullres 0 --plans "$PLANS" \
            --epochs "${BUDGET[0]}" --iterations-per-epoch "${BUDGET[1]}" --validation-iterations 5 \
            --batch-size "$BATCH" > "$WORK/train_$PLANS.log" 2>&1
    fi
done

# The fold-0 validation images, as nnunetv2's split chose them (splits_final.json).
IMAGES="$WORK/validation_images"
rm -rf "$IMAGES" && mkdir -p "$IMAGES"
"$VENV/bin/python" -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))[0]["val"]))' \
    "$PRE/splits_final.json" | while read -r case_id; do
    ln -s "$DATA/$DATASET/imagesTr/${case_id}_0000.nii.gz" "$IMAGES/"
done

for PLANS in nnUNetPlans nnUNetResEncUNetMPlans; do
    MODEL="$WORK/results/$DATASET/nnUNetTrainer__${PLANS}__3d_fullres"
    REFERENCE="$WORK/predictions/$PLANS"
    if [ ! -f "$REFERENCE/.done" ]; then
        rm -rf "$REFERENCE"
        $NICE "$VENV/bin/nnUNetv2_predict" -i "$IMAGES" -o "$REFERENCE" -d 4 -c 3d_fullres \
            -p "$PLANS" -f 0 -device cpu --save_probabilities > "$WORK/predict_$PLANS.log" 2>&1
        touch "$REFERENCE/.done"
    fi
    for PRECISION in fp32 auto; do
        $NICE "$AUTOSEG_PYTHON" "$PROJECT/bench/nnunet_agreement.py" "$MODEL" "$IMAGES" "$REFERENCE" \
            -f 0 --precision "$PRECISION" > "$WORK/agreement_${PLANS}_$PRECISION.jsonl"
        echo "$PLANS (validation Dice $("$VENV/bin/python" -c 'import json, sys
print(round(json.load(open(sys.argv[1]))["foreground_mean"]["Dice"], 3))' \
            "$MODEL/fold_0/validation/summary.json")): $(tail -n 1 "$WORK/agreement_${PLANS}_$PRECISION.jsonl")"
    done
done
