"""Logic of the AutoSegTrain module: the case list, training runs, export, GPU advice, sample data.

Kept apart from the module file so it runs (and is tested) with real MRML under pytest, without
the Slicer application, Qt or torch. Only the ``*_panel.py`` files import Qt (the panel wiring);
writing cases and reading volumes back are shared with the Predict module in AutoSegCoreLib.
"""
