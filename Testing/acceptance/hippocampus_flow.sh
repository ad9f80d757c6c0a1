#!/usr/bin/env bash
# The seed guide's flow on the shared hippocampus data, as a user runs it (issue 4's acceptance):
# plan_and_preprocess -> train 5 folds with --npz -> find_best_configuration -> the printed predict
# and apply_postprocessing commands -> evaluate -> export_model -> import_model elsewhere ->
# predict -m <imported results folder> must give the same labels.
#
#   Testing/acceptance/hippocampus_flow.sh [WORK_FOLDER] [EPOCHS] [ITERATIONS] [DEVICE]
#
# Defaults: /tmp/autoseg-flow, 12 epochs x 25 iterations on the CPU (about 50 minutes on 2 cores;
# the method's 1000 x 250 needs a GPU). The 12 "test" images are training images (the data has no
# test set), so their Dice is optimistic; the cross-validation Dice is in inference_information.json.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${1:-/tmp/autoseg-flow}
EPOCHS=${2:-12}
ITERATIONS=${3:-25}
DEVICE=${4:-cpu}
DATA=$REPO/../shared/data/Dataset004_Hippocampus
PY=$REPO/.venv/bin/python
A=$REPO/.venv/bin/autoseg
rm -rf "$WORK" && mkdir -p "$WORK/raw" "$WORK/ts" "$WORK/res2" && cd "$WORK"
export AUTOSEG_RAW=$WORK/raw AUTOSEG_PREPROCESSED=$WORK/pre AUTOSEG_RESULTS=$WORK/res
ln -s "$DATA" raw/Dataset004_Hippocampus
for f in $(ls raw/Dataset004_Hippocampus/imagesTr | head -12); do ln -s "$WORK/raw/Dataset004_Hippocampus/imagesTr/$f" "ts/$f"; done
T0=$(date +%s)
step() { echo "== $(($(date +%s) - T0)) s: $*"; "$@"; }
step "$A" plan_and_preprocess -d 4 -c 3d_fullres --no_pbar
for fold in 0 1 2 3 4; do
  step "$A" train 4 3d_fullres "$fold" --npz -device "$DEVICE" --epochs "$EPOCHS" \
    --iterations-per-epoch "$ITERATIONS" --val-iterations 5 --quiet
done
step "$A" find_best_configuration 4 -c 3d_fullres
INSTRUCTIONS=res/Dataset004_Hippocampus/inference_instructions.txt
cat "$INSTRUCTIONS"
PREDICT=$(grep '^autoseg predict' "$INSTRUCTIONS" | sed 's/INPUT_FOLDER/ts/; s/OUTPUT_FOLDER/pred/')
POSTPROCESS=$(grep '^autoseg apply_postprocessing' "$INSTRUCTIONS" | sed 's/OUTPUT_FOLDER_PP/pred_pp/; s/OUTPUT_FOLDER/pred/')
step bash -c "$REPO/.venv/bin/$PREDICT -device $DEVICE --progress none"
step bash -c "$REPO/.venv/bin/$POSTPROCESS"
step "$A" evaluate raw/Dataset004_Hippocampus/labelsTr pred_pp -o pred_pp/summary.json --chill \
  -djfile raw/Dataset004_Hippocampus/dataset.json
step "$A" export_model -d 4 -o hippocampus.zip -c 3d_fullres
step "$A" import_model hippocampus.zip --results "$WORK/res2"
step "$A" predict -i ts -o pred_imported -m res2/Dataset004_Hippocampus -device "$DEVICE" --progress none
"$PY" - <<'PY'
import pathlib, sys
import numpy as np
import SimpleITK as sitk
files = sorted(pathlib.Path("pred_pp").glob("*.nii.gz"))
differ = [f.name for f in files if not np.array_equal(
    sitk.GetArrayFromImage(sitk.ReadImage(str(f))),
    sitk.GetArrayFromImage(sitk.ReadImage(str(pathlib.Path("pred_imported") / f.name))))]
print(f"re-imported model equals the printed commands on {len(files) - len(differ)}/{len(files)} cases")
sys.exit(1 if differ or not files else 0)
PY
echo "== total $(($(date +%s) - T0)) s"
