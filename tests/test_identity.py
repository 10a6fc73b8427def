"""A prediction run's identity is the same in every process: checked across two real processes."""

import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kaggle_kit as kk
from kaggle_kit.predict.identity import IdentityError, callable_identity, changed_paths, items_digest, relative_item
from kaggle_kit.predict.sinks import CsvSink

SIGNATURES = """
import functools, json, sys
import numpy as np
import kaggle_kit as kk
from kaggle_kit.predict.identity import IdentityError
from kaggle_kit.imaterialist.submission import SubmissionRows
from kaggle_kit.predict.sinks import CsvSink


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
    "kit writer": kk.top_k_rows(["a", "b"], k=2),
    "closure over an array and a set": (lambda limits, names: lambda items, preds: [(n in names) for n in items])(
        np.array([0.1, 0.2]), {"x", "y", "z"}
    ),
    "lambda with a set constant": lambda items, preds: [i in {"a", "b", "c", "d"} for i in items],
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
    assert first["function"]["to_rows"]["function"] == "__main__.rows"
    assert first["kit writer"]["to_rows"]["settings"] == {
        "vocab": ["a", "b"],
        "k": 2,
        "item_id": first["kit writer"]["to_rows"]["settings"]["item_id"],
    }
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

    assert callable_identity(to_rows)["function"] == f"{__name__}.{to_rows.__qualname__}"
    assert callable_identity(None) is None


def _lambdas():  # two lambdas of one scope: the same "<lambda>" name, other behaviour
    return lambda items, preds: [(1,)], lambda items, preds: [(2,)]


class _Rows:
    def __init__(self, label):
        self.label = label

    def to_rows(self, items, preds):
        return [(self.label,)]


def _scaled(factor):
    def to_rows(items, preds):
        return [(factor,)]

    return to_rows


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (lambda: kk.top_k_rows(["a", "b"], k=1), lambda: kk.top_k_rows(["a", "b"], k=2)),
        (lambda: kk.tags_rows(["a", "b"], 0.0), lambda: kk.tags_rows(["a", "b"], 0.99)),
        (lambda: _lambdas()[0], lambda: _lambdas()[1]),
        (lambda: _Rows("OLD").to_rows, lambda: _Rows("NEW").to_rows),
        (lambda: _scaled(1), lambda: _scaled(2)),
        (lambda: _scaled(np.array([1.0, 2.0])), lambda: _scaled(np.array([1.0, 2.5]))),
        (lambda: functools.partial(_scaled(1), [1]), lambda: functools.partial(_scaled(1), [2])),
    ],
    ids=["top_k k", "tags thresholds", "two lambdas", "bound methods", "closure value", "closure array", "partial"],
)
def test_callables_that_behave_differently_never_share_an_identity(one, other):
    assert callable_identity(one()) == callable_identity(one())
    assert callable_identity(one()) != callable_identity(other())


def test_a_closure_over_an_unidentifiable_object_is_refused_naming_it():
    opaque = object()

    def to_rows(items, preds):
        return [(opaque,)]

    with pytest.raises(IdentityError, match="'opaque'"):
        callable_identity(to_rows)


SCRIPT = """
NAMES = {names!r}
CFG = {{"k": {k!r}, "reserve_s": {reserve!r}}}


def name_of(x):
    return NAMES[int(x)] + PREFIX


PREFIX = {prefix!r}


def count_down(n):
    return 0 if n <= 0 else count_down(n - 1)


def to_rows(items, preds):
    count_down(1)
    return [(str(i), name_of(p), CFG["k"], CFG.get("k")) for i, p in zip(items, preds)]
"""


def _to_rows(names=("dog", "cat"), k=1, reserve=60, prefix="", body=None):
    """`to_rows` of a freshly run script (a new module namespace, as in the next kernel)."""
    namespace = {"__name__": "kernel_script"}
    source = (body or SCRIPT).format(names=list(names), k=k, reserve=reserve, prefix=prefix)
    exec(compile(source, "kernel.py", "exec"), namespace)
    return callable_identity(namespace["to_rows"])


@pytest.mark.parametrize("changed", [
    {"names": ("cat", "dog")},  # the list a helper reads
    {"prefix": "!"},  # a plain value the helper reads
    {"k": 2},  # a settings dict's key it reads
    {"body": SCRIPT.replace("NAMES[int(x)] + PREFIX", "NAMES[-int(x)] + PREFIX")},  # the helper's code
])  # fmt: skip
def test_what_a_helper_called_by_to_rows_reads_and_does_counts(changed):
    assert _to_rows() == _to_rows()  # a new namespace with the same code and values is the same run
    assert _to_rows(**changed) != _to_rows()


@pytest.mark.parametrize(("changed", "said"), [
    ({"names": ("cat", "dog")}, 'sink to_rows reads name_of reads NAMES ["dog", "cat"] (now ["cat", "dog"])'),
    ({"prefix": "!"}, 'sink to_rows reads name_of reads PREFIX "" (now "!")'),
    ({"k": 2}, "sink to_rows reads CFG['k'] 1 (now 2)"),
])  # fmt: skip
def test_a_refusal_names_the_global_that_changed_and_who_read_it(changed, said):
    assert changed_paths(_to_rows(), _to_rows(**changed), "sink to_rows") == [said]


def test_a_settings_dict_counts_only_by_the_keys_to_rows_reads():
    assert _to_rows(reserve=600) == _to_rows(reserve=60)  # the time reserve may change between kernels


def test_an_object_whose_repr_hides_a_changed_state_is_not_the_same_act():
    class Scaled:
        def __init__(self, factor):
            self.factor = factor

        def __call__(self, x):
            return x * self.factor

        def __repr__(self):
            return "Scaled()"

    assert callable_identity(Scaled(2.0)) == callable_identity(Scaled(2.0))
    assert callable_identity(Scaled(2.0)) != callable_identity(Scaled(3.0))
