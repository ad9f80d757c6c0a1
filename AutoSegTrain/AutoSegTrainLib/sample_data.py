"""Try AutoSeg without data: the synthetic demo volume in Slicer's Sample Data module.

The entry makes no download: its custom downloader (Sample Data calls it with the source when
the user clicks) generates the engine's demo dataset (``autoseg.synthetic``, the data
``autoseg demo`` trains on) once into Slicer's cache folder and loads one case, volume and
segmentation, with the dataset's label values. That is enough to walk through the annotation loop
in the Train panel (its help explains it): add the case to a new dataset, load more, train, segment
another demo volume with the Predict panel, correct it and add it.
"""

from __future__ import annotations

from pathlib import Path

import slicer

from AutoSegCoreLib.case_loading import LoadedCase
from AutoSegCoreLib.synthetic_cases import SAMPLE_NAME, load_demo_case

CATEGORY = "AutoSeg"
CACHE_SUBFOLDER = "AutoSeg"


def demo_cache_folder() -> Path:
    """Where the demo dataset is generated: Slicer's cache folder (kept between sessions)."""
    return Path(slicer.app.cachePath) / CACHE_SUBFOLDER


def load_sample(_source: object = None, index: int = 0) -> LoadedCase:
    """Sample Data's custom downloader: the demo case ``index`` in the scene (both nodes)."""
    return load_demo_case(demo_cache_folder(), index)


def register_sample_data(thumbnail: Path) -> None:
    """Adds the "AutoSeg synthetic CT" entry to Sample Data (at Slicer's startupCompleted)."""
    import SampleData  # noqa: PLC0415 - a Slicer module, importable only once Slicer has started

    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category=CATEGORY,
        sampleName=SAMPLE_NAME,
        uris=[],  # nothing to download: the downloader below makes the data
        fileNames=[],
        nodeNames=[],
        thumbnailFileName=str(thumbnail),
        customDownloader=load_sample,
    )
