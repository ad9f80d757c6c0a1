"""Slicer-side helpers shared by the AutoSegTrain and AutoSegPredict modules.

The modules never import torch: every torch job runs in a child process (``PythonSlicer -m
autoseg ...``). This package holds what both modules need around that child process, and the
one Slicer-side volume IO (``volume_io``: volumes and label maps to files and back; cases into the
scene with ``case_loading`` and ``segmentation_import``). Modules here may import slicer/qt, but
the Qt-free ones (``process_runner``, ``device_detection``) stay free of both so that they are
tested with plain pytest, without Slicer.
"""
