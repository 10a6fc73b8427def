"""The command line, ``kaggle-kit``: the commands that run kernels locally (``main``) and those that push, follow
and rehearse them (``kernels``), behind one error boundary."""

from kaggle_kit.cli.main import _build_parser, main

__all__ = ["main", "_build_parser"]
