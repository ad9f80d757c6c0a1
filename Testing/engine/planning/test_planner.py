"""The planner reproduces the method's published plans (method.md §3.7) from synthetic fingerprints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoseg.planning import PlannerOptions, PlanningTask, get_preset, plan_experiment
from autoseg.planning.fingerprint import DatasetFingerprint
from autoseg.planning.planner import fullres_target_spacing, normalization_scheme, size_network
from autoseg.plans import IntensityStats, Plans

STATS = {"0": IntensityStats(0.0, 0.0, 1.0, -1.0, 1.0, -1.0, 1.0)}


def uniform_fingerprint(shape, spacing, n_cases, relative_size=1.0):
    return DatasetFingerprint(
        [tuple(spacing)] * n_cases, [tuple(shape)] * n_cases, STATS, relative_size
    )


def plan(shape, spacing, n_cases, n_labels, channels=("MRI",), preset="default", relative_size=1.0):
    task = PlanningTask("Dataset999_Test", channels, n_labels, n_cases, "SimpleITKIO")
    options = PlannerOptions(preset=get_preset(preset))
    return plan_experiment(
        uniform_fingerprint(shape, spacing, n_cases, relative_size), task, options
    )


def test_hippocampus_row_of_the_method():
    plans = plan((36, 50, 35), (1, 1, 1), 260, 3)
    fullres = plans.configuration("3d_fullres")
    assert fullres.patch_size == (40, 56, 40)
    assert fullres.batch_size == 9
    assert fullres.architecture.n_stages == 4
    uncapped = size_network(
        fullres.spacing, fullres.median_image_size_in_voxels, 1e15, 3, get_preset("default")
    )
    assert uncapped.batch_size == 58
    twod = plans.configuration("2d")
    assert (twod.patch_size, twod.batch_size, twod.architecture.n_stages) == ((56, 40), 366, 4)
    assert "3d_lowres" not in plans.configurations


def test_brats_like_row_of_the_method():
    plans = plan((138, 169, 138), (1, 1, 1), 484, 4)
    fullres = plans.configuration("3d_fullres")
    assert (fullres.patch_size, fullres.batch_size) == ((128, 128, 128), 2)
    assert fullres.architecture.strides == ((1, 1, 1),) + ((2, 2, 2),) * 5
    assert fullres.architecture.features_per_stage == (32, 64, 128, 256, 320, 320)
    twod = plans.configuration("2d")
    assert (twod.patch_size, twod.batch_size, twod.architecture.n_stages) == ((192, 160), 105, 6)
    assert max(twod.architecture.features_per_stage) == 512


def test_ct_row_of_the_method_and_its_cascade():
    plans = plan((200, 512, 512), (2.5, 0.8, 0.8), 100, 3, channels=("CT",))
    fullres = plans.configuration("3d_fullres")
    assert (fullres.patch_size, fullres.batch_size, fullres.architecture.n_stages) == (
        (64, 192, 160),
        2,
        6,
    )
    assert fullres.architecture.strides[1] == (1, 2, 2)
    assert fullres.architecture.kernel_sizes[0] == (1, 3, 3)
    assert fullres.preprocessing.normalization_schemes == ("CT",)
    lowres = plans.configuration("3d_lowres")
    assert all(lo > hi for lo, hi in zip(lowres.spacing, fullres.spacing, strict=True))
    assert lowres.next_stage == "3d_cascade_fullres"
    assert fullres.batch_dice
    assert not lowres.batch_dice
    cascade = plans.configuration("3d_cascade_fullres")
    assert cascade.previous_stage == "3d_lowres"
    assert cascade.inherits_from == "3d_fullres"
    assert cascade.data_identifier == fullres.data_identifier


def test_residual_encoder_preset_matches_observed_2d_plan():
    # nnU-Net issue #2983: ResEncUNetPlanner, median (167, 133) @ 1 mm 2D -> patch (192, 160), batch 108.
    sized = size_network((1.0, 1.0), (167, 133), 1e15, 2, get_preset("ResEnc"))
    assert (sized.patch_size, sized.batch_size) == ((192, 160), 108)
    assert sized.architecture.network == "ResidualEncoderUNet"
    assert sized.architecture.n_blocks_per_stage == (1, 3, 4, 6, 6, 6)
    assert sized.architecture.n_conv_per_stage_decoder == (1,) * 5


def test_larger_presets_and_memory_target_grow_the_patch():
    default = plan((138, 169, 138), (1, 1, 1), 484, 4, preset="ResEncM").configuration("3d_fullres")
    large = plan((138, 169, 138), (1, 1, 1), 484, 4, preset="nnUNetPlannerResEncL").configuration(
        "3d_fullres"
    )
    assert np.prod(large.patch_size) > np.prod(default.patch_size)
    assert large.data_identifier == default.data_identifier  # same preprocessed data


def test_gpu_memory_target_scales_the_reference():
    small = size_network(
        (1, 1, 1), (138, 169, 138), 1e15, 4, get_preset("default").with_memory_target(4)
    )
    big = size_network(
        (1, 1, 1), (138, 169, 138), 1e15, 4, get_preset("default").with_memory_target(40)
    )
    assert np.prod(small.patch_size) < np.prod(big.patch_size)


def test_anisotropic_target_spacing_uses_tenth_percentile():
    spacings = np.array([[5.0, 0.7, 0.7]] * 8 + [[1.2, 0.7, 0.7]] * 2)
    shapes = np.array([[20, 512, 512]] * 10)
    target = fullres_target_spacing(spacings, shapes)
    assert target[0] == pytest.approx(np.percentile(spacings[:, 0], 10))
    assert target[0] < 5.0


def test_anisotropic_rule_not_triggered_when_enough_slices():
    spacings = np.array([[5.0, 0.7, 0.7]] * 10)
    shapes = np.array([[200, 512, 512]] * 10)
    assert fullres_target_spacing(spacings, shapes)[0] == 5.0


def test_transpose_puts_coarsest_axis_first():
    plans = plan((512, 512, 100), (0.8, 0.8, 3.0), 20, 2)
    assert plans.transpose_forward == (2, 0, 1)
    assert plans.transpose_backward == (1, 2, 0)
    assert plans.configuration("3d_fullres").spacing[0] == 3.0


def test_normalization_from_channel_names_and_mask_rule():
    assert [normalization_scheme(n) for n in ("CT", "ct", "noNorm", "T2", "rgb_to_0_1")] == [
        "CT",
        "CT",
        "NoNorm",
        "ZScore",
        "RGBTo01",
    ]
    plans = plan((100, 100, 100), (1, 1, 1), 10, 2, channels=("T1", "CT"), relative_size=0.5)
    prep = plans.configuration("3d_fullres").preprocessing
    assert prep.normalization_schemes == ("ZScore", "CT")
    assert prep.use_mask_for_norm == (True, False)


def test_two_dimensional_dataset_has_only_2d():
    plans = plan((1, 256, 256), (999.0, 1.0, 1.0), 50, 2)
    assert list(plans.configurations) == ["2d"]


def test_plans_survive_a_json_round_trip(tmp_path: Path):
    plans = plan((200, 512, 512), (2.5, 0.8, 0.8), 100, 3)
    plans.save(tmp_path / "plans.json")
    assert Plans.load(tmp_path / "plans.json") == plans
