"""The package and, as ``kaggle_kit.kernels``, the repository's ``kernels/`` (the scripts ``init`` copies and the
demos run), so a pip-installed kit has them. Everything else is in setup.cfg."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["kaggle_kit", "kaggle_kit.*"]), "kaggle_kit.kernels"],
    package_dir={"kaggle_kit.kernels": "kernels"},
    package_data={"kaggle_kit.kernels": ["*/*.py", "*/*.json"]},
)
