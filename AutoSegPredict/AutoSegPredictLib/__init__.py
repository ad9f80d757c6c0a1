"""Qt-free logic of the AutoSegPredict module, tested headless with real MRML (slicer-core).

``model_catalog`` describes a trained model from its JSON files, ``volume_io`` writes the input
volumes for the engine, ``segmentation_import`` turns the engine's label file into a segmentation
node, and ``predict_logic`` runs ``autoseg predict`` in a child process and ties the three together.
Nothing here imports torch, Qt or CTK: the Slicer module (AutoSegPredict.py) is a thin panel on top.
"""
