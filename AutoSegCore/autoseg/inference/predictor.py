"""Predict cases with a trained model folder: preprocess, sliding window per fold, ensemble, export.

A case is preprocessed exactly as in training (same recipe, no segmentation), every fold's network
predicts whole-volume logits with the sliding window, and the folds are ensembled by averaging their
logits (method §7: ensembling happens in logit space, before any softmax). The averaged logits are
exported back to the input's array order, shape and geometry.

Memory stays bounded by one case: logits are float32 on the CPU (the sliding window returns them
there), one running sum is kept across folds and each fold's logits are freed as soon as they are
added. On CPUs with native bf16 the networks run under bf16 autocast (``precision="auto"``).

The network itself runs in a backend (``backend``: torch, or a CPU runtime such as OpenVINO, see
``autoseg.inference.backends``); everything around it is the same for all backends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoseg.case_checks import CaseRules, load_images
from autoseg.errors import AutoSegError
from autoseg.image_io import Geometry, ImageReaderWriter, choose_reader_writer
from autoseg.inference.backends.base import AUTO, check_backend, device_for_backend
from autoseg.inference.backends.model_cache import (
    CACHE_FOLDER_NAME,
    cache_folders_for,
    user_cache_root,
)
from autoseg.inference.backends.selection import build_backends, resolve_backend
from autoseg.inference.export import (
    logits_to_probabilities,
    logits_to_segmentation,
    save_probabilities,
    write_segmentation,
)
from autoseg.inference.model_folder import ModelFolder
from autoseg.inference.precision import Network, check_precision, resolve_device
from autoseg.inference.sliding_window import PROGRESS_STAGE, SlidingWindowSpec, predict_logits
from autoseg.preprocessing.case import CaseRecipe, preprocess_case
from autoseg.progress import ProgressCallback, no_progress

#: Tiles (slices) per network call for 2D configurations on CUDA when not set explicitly.
CUDA_2D_TILE_BATCH = 16


@dataclass(frozen=True)
class PredictionOptions:
    """How to predict.

    Attributes:
        step: sliding-window tile stride as a fraction of the patch (smaller = more overlap).
        mirror_tta: average over mirrored copies (the axes training allowed); off is ~8x faster.
        device: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps".
        save_probabilities: also return (and write, for files) per-class probabilities.
        tile_batch_size: tiles per network call; None = 16 for 2D on CUDA, else 1.
        precision: "auto" (bf16 on CPUs that have it natively) or "fp32".
        backend: what runs the network: "auto" (OpenVINO on the CPU when installed, else
            torch), "torch", "openvino" or "onnxruntime" (CPU runtimes, ``autoseg[cpu]``).
    """

    step: float = 0.5
    mirror_tta: bool = True
    device: str = "auto"
    save_probabilities: bool = False
    tile_batch_size: int | None = None
    precision: str = "auto"
    backend: str = AUTO

    def __post_init__(self) -> None:
        if not 0 < self.step <= 1:
            raise AutoSegError(
                f"step {self.step} is outside (0, 1]. Fix: use e.g. 0.5 (smaller = more overlap)."
            )
        if self.tile_batch_size is not None and self.tile_batch_size < 1:
            raise AutoSegError(
                f"tile_batch_size {self.tile_batch_size} < 1. Fix: use 1 or more, or None."
            )
        check_precision(self.precision)
        check_backend(self.backend)


@dataclass
class PredictionResult:
    """One predicted case.

    Attributes:
        segmentation: labels in the input's array order and shape (uint8, uint16 from label 256).
        probabilities: ``(K, *input_shape)`` float32 softmax/sigmoid, or None when not asked for.
        properties: the preprocessing record (shapes, crop box, spacing, geometry) of the case.
    """

    segmentation: np.ndarray
    probabilities: np.ndarray | None
    properties: dict[str, Any]


def _spacing_and_geometry(
    geometry: Geometry | Sequence[float],
) -> tuple[tuple[float, ...], dict[str, Any] | None]:
    if isinstance(geometry, Geometry):
        return geometry.spacing, geometry.to_json()
    spacing = tuple(float(s) for s in geometry)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise AutoSegError(
            f"spacing {spacing} is invalid. Fix: give 3 positive values in the array's axis order."
        )
    return spacing, None


def _one_hot(seg: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """Float32 ``(len(values), ...)`` masks of a ``(1, ...)`` label map (cascade input channels)."""
    return np.stack([seg[0] == v for v in values]).astype(np.float32)


class Predictor:
    """Predicts cases with the networks of one model folder (one network per fold)."""

    def __init__(
        self,
        model: ModelFolder,
        networks: Sequence[Network],
        options: PredictionOptions,
        device: torch.device,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Prefer :meth:`from_model_folder`; this takes already loaded networks (tests, reuse)."""
        if not networks:
            raise AutoSegError(f"{model.path}: no fold networks to predict with.")
        self.model = model
        self.options = options
        self.device = torch.device(device)
        for network in networks:
            if isinstance(network, torch.nn.Module):
                network.eval()  # a bf16 wrapper hides the module from the sliding window's eval()
        self.backend = resolve_backend(options.backend, self.device)
        self.networks, self.backend_description = build_backends(
            self.backend,
            networks,
            options.precision,
            self.device,
            (1, model.num_input_channels, *model.config.patch_size),
            self._cache_folders(len(networks)),
        )
        self.progress = progress or no_progress
        self.recipe = CaseRecipe.from_plans(model.plans, model.configuration, labels=None)
        self.spec = SlidingWindowSpec(
            patch_size=tuple(model.config.patch_size),
            step=options.step,
            mirror_axes=model.mirror_axes if options.mirror_tta else None,
            tile_batch_size=self._tile_batch_size(),
        )

    @classmethod
    def from_model_folder(
        cls,
        folder: ModelFolder | Path,
        options: PredictionOptions | None = None,
        folds: Iterable[int | str] | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> Predictor:
        """Open (or reuse) a model folder and load its fold networks onto the chosen device.

        ``folds`` None keeps the folder's folds (a path: every numbered fold with the checkpoint).
        """
        options = options or PredictionOptions()
        if not isinstance(folder, ModelFolder):
            folder = ModelFolder.open(Path(folder), folds)
        elif folds is not None:
            folder = ModelFolder.open(folder.path, folds, folder.checkpoint_name)
        device = resolve_device(device_for_backend(options.device, options.backend))
        return cls(folder, folder.load_fold_networks(device), options, device, progress)

    def _cache_folders(self, count: int) -> list[tuple[Path, ...]]:
        """Per network, where a runtime may cache its conversion: beside the fold's checkpoint."""
        if count == len(self.model.folds):
            return [cache_folders_for(self.model.checkpoint_file(f)) for f in self.model.folds]
        unnamed = user_cache_root() / CACHE_FOLDER_NAME / "networks"  # networks of no fold
        return [(unnamed / str(index),) for index in range(count)]

    def _tile_batch_size(self) -> int:
        if self.options.tile_batch_size is not None:
            return self.options.tile_batch_size
        return CUDA_2D_TILE_BATCH if self.model.config.is_2d and self.device.type == "cuda" else 1

    # ------------------------------------------------------------------------------ prediction

    def predict_preprocessed(self, data: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Fold-averaged logits ``(K, x, y, z)`` float32 on the CPU of a preprocessed case."""
        image = torch.as_tensor(data, dtype=torch.float32)
        folds = len(self.networks)
        total: torch.Tensor | None = None
        for index, network in enumerate(self.networks):
            logits = predict_logits(
                network,
                image,
                self.spec,
                num_classes=self.model.num_classes,
                device=self.device,
                progress=self._fold_progress(index, folds),
            )
            if total is None:
                total = logits
            else:
                total += logits
                del logits  # free this fold's logits before the next fold allocates its own
        assert total is not None  # there is at least one network
        return total.div_(folds) if folds > 1 else total

    def _fold_progress(self, index: int, folds: int) -> ProgressCallback:
        """One bar over all folds: fold ``index``'s tiles count after the earlier folds' tiles."""

        def report(stage: str, done: int, total: int) -> None:
            self.progress(PROGRESS_STAGE, index * total + done, folds * total)

        return report

    def _preprocess(
        self,
        images: np.ndarray,
        geometry: Geometry | Sequence[float],
        previous_segmentation: np.ndarray | None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self._check_input(images, previous_segmentation)
        spacing, geometry_json = _spacing_and_geometry(geometry)
        seg = None if previous_segmentation is None else np.asarray(previous_segmentation)[None]
        case = preprocess_case(images, seg, spacing, self.recipe, geometry_json)
        if case.seg is None:
            return case.data, case.properties
        labels = self.model.dataset.labels.foreground_labels
        return np.concatenate([case.data, _one_hot(case.seg, labels)]), case.properties

    def _check_input(self, images: np.ndarray, previous: np.ndarray | None) -> None:
        channels = self.model.dataset.num_channels
        if images.ndim != 4 or images.shape[0] != channels:
            raise AutoSegError(
                f"the image array has shape {images.shape}; this model needs ({channels}, x, y, z) "
                "in the reader's axis order. Fix: stack the channels of one case on axis 0."
            )
        if self.model.is_cascade and previous is None:
            raise AutoSegError(
                f"{self.model.path.name} is a cascade stage after "
                f"{self.model.config.previous_stage!r}. Fix: pass that stage's segmentation "
                "of the case (previous_segmentation)."
            )
        if previous is not None and (
            not self.model.is_cascade or np.shape(previous) != images.shape[1:]
        ):
            raise AutoSegError(
                f"previous_segmentation of shape {np.shape(previous)} cannot be used: it is only "
                f"for cascade stages and must have the image's shape {images.shape[1:]}. Fix: "
                "leave it out, or pass the previous stage's label map of this case."
            )

    def predict_array(
        self,
        images: np.ndarray,
        geometry: Geometry | Sequence[float],
        *,
        previous_segmentation: np.ndarray | None = None,
    ) -> PredictionResult:
        """Predict one case given as arrays.

        Args:
            images: ``(c, x, y, z)`` in the training reader's array order (any numeric dtype).
            geometry: the image's :class:`Geometry` (kept in the properties so the result can be
                written), or just its spacing in the array's axis order.
            previous_segmentation: ``(x, y, z)`` labels of the previous stage (cascade only).
        """
        return self._predict([np.asarray(images)], geometry, previous_segmentation)

    def _predict(
        self,
        owned: list[np.ndarray],
        geometry: Geometry | Sequence[float],
        previous_segmentation: np.ndarray | None,
    ) -> PredictionResult:
        """Predict the image in ``owned``, taking it out of the list: when the caller holds no
        other reference (``predict_files``), the raw image is freed as soon as it is preprocessed,
        before the sliding window allocates its buffers (300 MB on a CT-sized case)."""
        data, properties = self._preprocess(owned.pop(), geometry, previous_segmentation)
        logits = self.predict_preprocessed(data).numpy()
        del data  # the preprocessed image is not needed for export
        resampling = self.model.config.preprocessing.resampling_probabilities
        labels = self.model.dataset.labels
        segmentation = logits_to_segmentation(logits, properties, resampling, labels)
        probabilities = (
            logits_to_probabilities(logits, properties, resampling, labels)
            if self.options.save_probabilities
            else None
        )
        return PredictionResult(segmentation, probabilities, properties)

    def predict_files(
        self,
        input_files: Sequence[Path],
        output_file: Path,
        *,
        previous_segmentation_file: Path | None = None,
    ) -> PredictionResult:
        """Predict one case from its channel files and write the segmentation with their geometry.

        With ``save_probabilities`` also writes ``CASE.npz`` + ``CASE.json`` next to the output
        (CASE is the output name without the dataset's file ending).
        """
        files = [Path(f) for f in input_files]
        channels = self.model.dataset.num_channels
        if not files or len(files) > channels:  # an RGB file supplies 3: load_images counts
            raise AutoSegError(
                f"{len(files)} input file(s) given ({', '.join(f.name for f in files)}); the "
                f"model needs {channels} channel(s): one file per channel, or fewer files whose "
                "components are the channels (RGB). Fix: pass CASE_0000 ... in order."
            )
        reader = self._reader()
        # A 3D configuration only ever saw 3D images; a 2D configuration accepts both.
        is_2d = None if self.model.config.is_2d else False
        rules = CaseRules(channels, None, is_2d=is_2d, owner="this model")
        case_id = files[0].name.removesuffix(self.model.dataset.file_ending).rsplit("_", 1)[0]
        images, geometry = load_images(reader, case_id, files, rules)
        previous = None
        if previous_segmentation_file is not None:
            previous = reader.read_seg(Path(previous_segmentation_file))[0][0]
        owned = [images]
        del images  # only the list holds the raw image now (see _predict)
        result = self._predict(owned, geometry, previous)
        output_file = Path(output_file)
        write_segmentation(
            result.segmentation,
            result.properties,
            output_file,
            self.model.plans.image_reader_writer,
        )
        if result.probabilities is not None:
            save_probabilities(
                result.probabilities, result.properties, self._output_base(output_file)
            )
        return result

    def _reader(self) -> ImageReaderWriter:
        return choose_reader_writer(
            self.model.dataset.file_ending, override=self.model.plans.image_reader_writer
        )

    def _output_base(self, output_file: Path) -> Path:
        ending = self.model.dataset.file_ending
        name = output_file.name
        stem = name[: -len(ending)] if name.endswith(ending) else output_file.stem
        return output_file.with_name(stem)
