"""A prediction run's identity is the same in every process: checked across two real processes."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from kaggle_kit.identity import IdentityError, callable_identity, items_digest, relative_item
from kaggle_kit.sinks import CsvSink

SIGNATURES = """
import functools, json, sys
from kaggle_kit.identity import IdentityError
from kaggle_kit.imaterialist.submission import SubmissionRows
from kaggle_kit.sinks import CsvSink


def rows(items, preds):
    return []


class Writer:
    def __init__(self, threshold):
        self.threshold = threshold

    def rows(self, items, preds):
        return []

    def signature(self):
        return {"threshold": self.threshold}

    __call__ = rows


class Opaque:
    def __call__(self, items, preds):
        return []


kinds = {
    "function": rows,
    "lambda": lambda items, preds: [],
    "bound method": Writer(0.4).rows,
    "object with signature()": Writer(0.4),
    "partial": functools.partial(rows),
    "SubmissionRows": SubmissionRows([1, 2, 3], None, [1], threshold=0.4),
}
out = {name: CsvSink("sub.csv", fn, ["id"]).signature() for name, fn in kinds.items()}
try:
    CsvSink("sub.csv", Opaque(), ["id"]).signature()
except IdentityError as exc:
    out["object without signature()"] = str(exc)
json.dump(out, sys.stdout)
"""


def _signatures_in_a_new_process(tmp_path: Path, n: int) -> dict:
    script = tmp_path / f"signatures{n}.py"
    script.write_text(SIGNATURES)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_kind_of_to_rows_has_the_same_signature_in_two_processes(tmp_path):
    first, second = _signatures_in_a_new_process(tmp_path, 1), _signatures_in_a_new_process(tmp_path, 2)

    assert first == second
    assert first["function"]["to_rows"] == "__main__.rows"
    assert first["object with signature()"]["to_rows"]["settings"] == {"threshold": 0.4}
    assert first["SubmissionRows"]["to_rows"]["settings"]["post"]["default"]["threshold"] == 0.4
    assert "0x" not in json.dumps(first)


def test_an_object_without_a_stable_name_is_a_clear_error_at_the_call(tmp_path):
    message = _signatures_in_a_new_process(tmp_path, 1)["object without signature()"]

    assert "has no name that stays the same in the next process" in message
    assert "give Opaque a signature() method" in message


def test_different_settings_give_different_signatures():
    from kaggle_kit.imaterialist.submission import SubmissionRows

    low, high = SubmissionRows([1, 2], None, threshold=0.3), SubmissionRows([1, 2], None, threshold=0.6)

    assert CsvSink("s.csv", low, ["id"]).signature() != CsvSink("s.csv", high, ["id"]).signature()


def test_a_partial_with_an_object_argument_is_refused():
    import functools

    with pytest.raises(IdentityError, match="functools.partial"):
        callable_identity(functools.partial(print, object()))


def test_items_under_the_input_dir_are_the_same_wherever_it_is_mounted(tmp_path):
    names = ["test/a.jpg", "test/b.jpg"]
    one, two = tmp_path / "sandbox-1/input", tmp_path / "sandbox-2/input"

    digests = [items_digest([root / "fashion" / n for n in names], [("input", root)]) for root in (one, two)]

    assert digests[0] == digests[1]
    assert relative_item(one / "fashion/test/a.jpg", [("input", one)]) == "input:fashion/test/a.jpg"
    assert items_digest([one / "fashion" / n for n in names]) != items_digest([two / "fashion" / n for n in names])


def test_dataframe_items_are_relative_too(tmp_path):
    frames = [pd.DataFrame({"path": [str(root / "input/x/1.png")], "label": ["a"]}) for root in (tmp_path / "k1",
              tmp_path / "k2")]  # fmt: skip

    digests = [items_digest(f, [("input", root / "input")]) for f, root in zip(frames, (tmp_path / "k1",
               tmp_path / "k2"), strict=True)]  # fmt: skip

    assert digests[0] == digests[1]


def test_kernel_scripts_name_functions_by_module_and_qualname():
    def to_rows(items, preds):
        return []

    assert callable_identity(to_rows) == f"{__name__}.{to_rows.__qualname__}"
    assert callable_identity(None) is None
