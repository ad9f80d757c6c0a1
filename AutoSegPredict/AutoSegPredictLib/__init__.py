"""Qt-free logic of the AutoSegPredict module, tested headless with real MRML (slicer-core).

``model_catalog`` describes a trained model from its JSON files, ``segmentation_import`` turns the
engine's label file into a segmentation node, and ``predict_logic`` runs ``autoseg predict`` in a
child process and ties them together (volume files are written and read by
``AutoSegCoreLib.volume_io``, which the Train module shares).
Nothing here imports torch, Qt or CTK: the Slicer module (AutoSegPredict.py) is a thin panel on top.
"""
