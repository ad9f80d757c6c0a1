"""Qt-free logic of the AutoSegTrain module: dataset folders, label values and case export.

Kept apart from the module file so it runs (and is tested) with real MRML under pytest, without
the Slicer application, Qt or torch.
"""
