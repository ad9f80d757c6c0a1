#!/usr/bin/env bash
# How closely nnunetv2, running an AutoSeg model exported with `export_model --format nnunet`,
# reproduces AutoSeg's own predictions of that model (issue 11: >= 99 % of voxels).
#
#   bench/reference/export_agreement.sh RESULTS DATASET CONFIGURATION FOLD IMAGES [WORK]
#
#   RESULTS        AutoSeg's results root (holds DATASET/AutoSegTrainer__AutoSegPlans__CONFIGURATION)
#   DATASET        e.g. Dataset004_Hippocampus
#   CONFIGURATION  e.g. 3d_fullres
#   FOLD           one trained fold, e.g. 0 (or all)
#   IMAGES         a folder of CASE_0000<ending> files to predict
#   WORK           scratch folder (default /tmp/autoseg_export_agreement), emptied first
#
# nnunetv2 runs in its own virtual environment, REFERENCE_PYTHON (default /tmp/h5ref/venv/bin/python,
# made by make_nnunet_fixture.sh); AutoSeg in the project's (.venv or AUTOSEG_PYTHON). Steps:
#   1. autoseg export_model --format nnunet (trainer nnUNetTrainer, plans AutoSegPlans);
#   2. nnUNetv2_install_pretrained_model_from_zip into WORK/nnunet_results, then nnUNetv2_predict
#      -f FOLD -device cpu --save_probabilities (fp32 on the CPU, mirroring, step 0.5: its defaults);
#   3. bench/nnunet_agreement.py compares AutoSeg's predictions of the original model folder with
#      nnunetv2's, in fp32 and in AutoSeg's default precision: WORK/agreement_<precision>.jsonl
#      (one line per case, then the summary line).
# Heavy steps run under `nice -n 19`.
set -euo pipefail

if [ $# -lt 5 ]; then
    sed -n '2,21p' "$0" >&2
    exit 2
fi
RESULTS=$(cd "$1" && pwd)
DATASET=$2
CONFIGURATION=$3
FOLD=$4
IMAGES=$(cd "$5" && pwd)
WORK=${6:-/tmp/autoseg_export_agreement}
HERE=$(cd "$(dirname "$0")" && pwd)
PROJECT=$(cd "$HERE/../.." && pwd)
REFERENCE_PYTHON=${REFERENCE_PYTHON:-/tmp/h5ref/venv/bin/python}
AUTOSEG_PYTHON=${AUTOSEG_PYTHON:-$PROJECT/.venv/bin/python}
PLANS=AutoSegPlans
MODEL="$RESULTS/$DATASET/AutoSegTrainer__${PLANS}__$CONFIGURATION"

rm -rf "$WORK"
mkdir -p "$WORK/nnunet_results" "$WORK/nnunet_raw" "$WORK/nnunet_preprocessed"
WORK=$(cd "$WORK" && pwd)

nice -n 19 "$AUTOSEG_PYTHON" -m autoseg export_model -d "$DATASET" -c "$CONFIGURATION" -f "$FOLD" \
    --results "$RESULTS" --format nnunet -o "$WORK/export.zip"

export nnUNet_results="$WORK/nnunet_results" nnUNet_raw="$WORK/nnunet_raw"
export nnUNet_preprocessed="$WORK/nnunet_preprocessed" nnUNet_compile=f
nice -n 19 "$REFERENCE_PYTHON" -c 'import sys
from nnunetv2.model_sharing.entry_points import install_from_zip_entry_point
sys.argv = ["nnUNetv2_install_pretrained_model_from_zip", sys.argv[1]]
install_from_zip_entry_point()' "$WORK/export.zip"
nice -n 19 "$REFERENCE_PYTHON" -c 'import sys
from nnunetv2.inference.predict_from_raw_data import predict_entry_point
sys.argv = ["nnUNetv2_predict", *sys.argv[1:]]
predict_entry_point()' -i "$IMAGES" -o "$WORK/nnunet_predictions" -d "$DATASET" \
    -c "$CONFIGURATION" -f "$FOLD" -tr nnUNetTrainer -p "$PLANS" -device cpu -npp 1 -nps 1 \
    --save_probabilities > "$WORK/nnunet_predict.log" 2>&1

for precision in fp32 auto; do
    nice -n 19 "$AUTOSEG_PYTHON" "$PROJECT/bench/nnunet_agreement.py" "$MODEL" "$IMAGES" \
        "$WORK/nnunet_predictions" -f "$FOLD" --precision "$precision" \
        | tee "$WORK/agreement_$precision.jsonl" | tail -n 1
done
