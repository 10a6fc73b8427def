"""Kaggle on your machine: run a kernel script under the kernel's limits (``emulate``), draw the run
(``runplot``), and the demos that run the shipped kernels on synthetic data (``demo``).
"""
