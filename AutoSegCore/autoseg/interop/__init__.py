"""Interoperability with nnU-Net v2: run its trained model folders without installing nnunetv2.

nnU-Net's files are read as data only: its ``plans.json`` is translated into AutoSeg's plans (a
setting AutoSeg cannot reproduce is refused by name), its checkpoints are unpickled with
``weights_only=True`` and a short allow-list of numpy scalar types, and its parameter names are
mapped onto AutoSeg's network, which computes the same function. Nothing here imports nnunetv2.
"""
