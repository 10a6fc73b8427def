"""Run a script as Kaggle runs a bundle: with kaggle_kit importable only from a zip on sys.path (the bundle's own
embedded copy), never from the installed package, whether that install is editable or not.

``run_local(bundle_only=True)`` starts ``python -c <launcher> SCRIPT ARGS...``: the launcher puts a meta-path finder
first, then runs the script as ``__main__``. A script that is not a bundle then fails as on Kaggle:
``No module named 'kaggle_kit'``.
"""

from __future__ import annotations

__all__ = ["bundle_only_launcher"]

_LAUNCHER = """
import importlib.machinery, os, runpy, sys


class _KitFromBundleOnly:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "kaggle_kit":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, [p for p in sys.path if p.endswith(".zip")])
        if spec is None:
            raise ModuleNotFoundError("No module named 'kaggle_kit' (the installed copy is hidden, as on Kaggle: "
                                      "push the bundle, which carries its own)", name=name)
        return spec


sys.meta_path.insert(0, _KitFromBundleOnly)
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def bundle_only_launcher() -> list[str]:
    """The interpreter arguments that go before the script and its arguments."""
    return ["-c", _LAUNCHER]
