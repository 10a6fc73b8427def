"""The shipped kernel scripts, installed with the package as ``kaggle_kit.kernels`` (``kaggle_kit.templates``).

Each folder is one kernel a Kaggler reads and adapts: ``kernel.py`` and its ``kernel-metadata.json``.
"""
