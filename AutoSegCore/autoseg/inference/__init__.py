"""Inference: sliding-window prediction of preprocessed arrays and export back to the image grid.

``sliding_window`` turns a network into whole-volume logits (tiles, mirroring, Gaussian weighting);
``export`` undoes preprocessing (resampling, cropping, transposition) and writes label files. Both
are shared by the training's final validation and by the predictor, so this package never imports
``autoseg.training``. Nothing is imported here: ``export`` is torch-free and stays cheap to import,
and callers import the submodule they need.
"""

from __future__ import annotations
