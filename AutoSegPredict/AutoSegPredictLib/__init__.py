"""Qt-free logic of the AutoSegPredict module, tested headless with real MRML (slicer-core).

``model_catalog`` describes a trained model (AutoSeg's or nnU-Net v2's folder, or a model zip) by
the engine's own torch-free rules, ``predict_logic`` runs ``autoseg predict`` in a child process
and imports its result (``AutoSegCoreLib.segmentation_import``: a new segmentation node or a
chosen one), and ``training_case`` adds a corrected result to the model's dataset
(``AutoSegCoreLib.case_export``, shared with the Train module). Volume files are written and read
by ``AutoSegCoreLib.volume_io``. Nothing here imports torch, Qt or CTK: the Slicer module
(AutoSegPredict.py, AutoSegPredictLib/predict_panel.py) is a thin panel on top.
"""
