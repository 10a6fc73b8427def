import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kaggle_kit.errors import KaggleKitError, OutputLimitError, ResumeMismatchError, UsageError
from kaggle_kit.kernel import Kernel
from kaggle_kit.limits import KernelLimits
from kaggle_kit.predict.chunks import ChunkLimits
from kaggle_kit.predict.sinks import ArraySink, CsvSink, merge_shards
from kaggle_kit.predict.stream import is_placeholder, progress_path, stream_predict
from kaggle_kit.status import KernelStatus, mark_done


def _reference(learn, items, **kwargs):
    with learn.no_bar():
        return learn.get_preds(dl=learn.dls.test_dl(items), **kwargs)


def _files(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def _label_rows(items, preds):
    return [
        (p.stem, "" if is_placeholder(x) else int(np.argmax(x)), f"{np.nanmax(x):.6f}")
        for p, x in zip(items, preds, strict=True)
    ]


@pytest.mark.parametrize("kind", ["single", "multi", "seg"])
def test_predictions_equal_fastai_get_preds(kind, learners, images, kernel_here):
    learn = learners(kind)
    sink = ArraySink(kernel_here.working_dir / "preds.npy")

    summary = stream_predict(learn, images, sink, kernel=kernel_here, progress=False)

    expected = _reference(learn, images)[0].numpy()
    got = np.load(kernel_here.working_dir / "preds.npy")
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert summary.complete
    assert summary.done == len(images)
    assert summary.chunks >= 2  # a probe chunk, then adapted ones


def test_half_precision_storage_is_numpys_rounding_of_fastais_predictions(learners, images, kernel_here):
    learn = learners("seg")

    stream_predict(learn, images, ArraySink(kernel_here.working_dir / "half.npy", dtype="float16"),
                   kernel=kernel_here, progress=False)  # fmt: skip

    got = np.load(kernel_here.working_dir / "half.npy")
    expected = _reference(learn, images)[0].numpy().astype(np.float16)  # cast in torch before the copy: same bits
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got.view(np.uint16), expected.view(np.uint16))


@pytest.mark.parametrize("kind", ["single", "seg"])
def test_decoded_predictions_equal_fastai_decoded(kind, learners, images, kernel_here):
    learn = learners(kind)

    stream_predict(
        learn, images, ArraySink(kernel_here.working_dir / "dec.npy"), decode=True, kernel=kernel_here, progress=False
    )

    expected = _reference(learn, images, with_decoded=True)[2].numpy()
    np.testing.assert_array_equal(np.load(kernel_here.working_dir / "dec.npy"), expected)


def test_dataframe_items_are_accepted(images, kernel_here):
    from fastai.vision.all import CategoryBlock, ColReader, DataBlock, ImageBlock, Resize, resnet18, vision_learner

    frame = pd.DataFrame({"path": images, "label": [p.name.split("_")[1] for p in images]})
    block = DataBlock(
        (ImageBlock, CategoryBlock), get_x=ColReader("path"), get_y=ColReader("label"), item_tfms=Resize(32)
    )
    learn = vision_learner(block.dataloaders(frame, bs=4, num_workers=0), resnet18, pretrained=False)

    stream_predict(learn, frame, ArraySink(kernel_here.working_dir / "p.npy"), kernel=kernel_here, progress=False)

    np.testing.assert_allclose(
        np.load(kernel_here.working_dir / "p.npy"), _reference(learn, frame)[0].numpy(), rtol=1e-5, atol=1e-6
    )


def test_flip_tta_averages_plain_and_flipped_masks(learners, images, kernel_here):
    learn = learners("seg")
    items = images[:4]

    stream_predict(
        learn, items, ArraySink(kernel_here.working_dir / "tta.npy"), tta="hflip", kernel=kernel_here, progress=False
    )

    plain = _reference(learn, items)[0]
    dl = learn.dls.test_dl(items)
    learn.model.eval()
    import torch

    with torch.no_grad():
        xb = dl.one_batch()[0]
        flipped = learn.loss_func.activation(learn.model(xb.flip(-1))).flip(-1).cpu()
    np.testing.assert_allclose(
        np.load(kernel_here.working_dir / "tta.npy"), ((plain + flipped) / 2).numpy(), rtol=1e-4, atol=1e-5
    )


def test_output_files_stay_at_two_whatever_the_number_of_items(learners, images, kernel_here):
    learn = learners("single")
    many = images * 5  # 120 items, 30 batches

    summary = stream_predict(
        learn,
        many,
        CsvSink("sub.csv", _label_rows, ["id", "label", "score"]),
        chunk_size=4,
        kernel=kernel_here,
        progress=False,
    )

    assert summary.chunks == 30
    assert summary.writer_seconds > 0  # reported, so a writer that holds up prediction can be seen
    assert _files(kernel_here.working_dir) == ["sub.csv", "sub.csv.progress.json"]
    assert len(pd.read_csv(kernel_here.working_dir / "sub.csv")) == 120


def _slow_label_rows(items, preds):
    import time

    time.sleep(2.0)  # a writer far slower than predicting 4 tiny images: the loop must wait for it, and say so
    return _label_rows(items, preds)


def test_a_writer_slower_than_prediction_shows_in_the_time_waited_for_it(learners, images, kernel_here):
    sink = CsvSink("sub.csv", _slow_label_rows, ["id", "label", "score"])
    summary = stream_predict(learners("single"), images[:8], sink, chunk_size=4, kernel=kernel_here, progress=False)

    assert summary.chunks == 2
    assert summary.writer_waited_seconds > 0
    assert summary.writer_seconds >= 2.0 * summary.chunks


def test_a_full_working_dir_is_refused_before_predicting(learners, images, tmp_path, monkeypatch):
    kernel = Kernel(tmp_path, KernelLimits(max_files=3))
    (tmp_path / "working").mkdir()
    monkeypatch.chdir(tmp_path / "working")
    for i in range(2):
        (tmp_path / "working" / f"old{i}.txt").write_text("x")

    with pytest.raises(OutputLimitError, match="would make 4 files"):
        stream_predict(
            learners("single"),
            images,
            CsvSink("sub.csv", _label_rows, ["id", "label", "score"]),
            kernel=kernel,
            progress=False,
        )
    assert not (tmp_path / "working/sub.csv").exists()


def test_a_complete_run_is_not_repeated(learners, images, kernel_here):
    sink = CsvSink("sub.csv", _label_rows, ["id", "label", "score"])
    stream_predict(learners("single"), images, sink, kernel=kernel_here, progress=False)
    before = (kernel_here.working_dir / "sub.csv").read_bytes()

    again = stream_predict(learners("single"), images, sink, kernel=kernel_here, progress=False)

    assert (again.complete, again.predicted, again.done) == (True, 0, len(images))
    assert (kernel_here.working_dir / "sub.csv").read_bytes() == before


def test_resuming_with_other_items_is_a_clear_error(learners, images, kernel_here):
    sink = CsvSink("sub.csv", _label_rows, ["id", "label", "score"])
    stream_predict(learners("single"), images[:12], sink, kernel=kernel_here, progress=False)

    with pytest.raises(ResumeMismatchError, match=r"another run: items .*; number of items 12 \(now 24\); pass"):
        stream_predict(learners("single"), images, sink, kernel=kernel_here, progress=False)


def test_resuming_with_another_shard_or_model_is_a_clear_error(learners, images, kernel_here):
    sink = ArraySink("p.npy")
    stream_predict(learners("single"), images, sink, shard=(0, 2), kernel=kernel_here, progress=False)

    with pytest.raises(ResumeMismatchError, match=r"shard \[0, 2\] \(now \[1, 2\]\)"):
        stream_predict(learners("single"), images, sink, shard=(1, 2), kernel=kernel_here, progress=False)
    with pytest.raises(ResumeMismatchError, match="another run: model weights"):
        stream_predict(learners("multi"), images, sink, shard=(0, 2), kernel=kernel_here, progress=False)


def test_restart_starts_a_run_of_another_model_over_with_that_models_predictions(learners, images, kernel_here):
    sink = CsvSink("sub.csv", _label_rows, ["id", "label", "score"])
    stream_predict(learners("single"), images[:12], sink, kernel=kernel_here, progress=False)
    other = learners("multi")  # another model: the saved progress is not its own
    with pytest.raises(ResumeMismatchError, match="restart=True"):
        stream_predict(other, images, sink, kernel=kernel_here, progress=False)

    summary = stream_predict(other, images, sink, kernel=kernel_here, progress=False, restart=True)

    assert (summary.complete, summary.resumed_at, summary.done) == (True, 0, len(images))
    alone = CsvSink("alone.csv", _label_rows, ["id", "label", "score"])
    stream_predict(other, images, alone, kernel=kernel_here, progress=False)
    assert (kernel_here.working_dir / "sub.csv").read_bytes() == (kernel_here.working_dir / "alone.csv").read_bytes()


def test_a_run_out_of_time_commits_and_the_next_call_finishes_it(learners, images, tmp_path, fake_clock, monkeypatch):
    (tmp_path / "working").mkdir()
    monkeypatch.chdir(tmp_path / "working")
    kernel = Kernel(tmp_path, KernelLimits(time_s=100.0), started_at=fake_clock.now, clock=fake_clock)
    sink = CsvSink("sub.csv", _label_rows, ["id", "label", "score"])
    fake_clock.advance(98)  # 2 s left, under the reserve (5% of 100 s): one chunk, then stop

    first = stream_predict(learners("single"), images, sink, chunk_size=4, kernel=kernel, progress=False)
    mark_done(kernel.working_dir)  # an unguarded script: the job is not done, the status must say so
    after_first = KernelStatus.load(kernel.working_dir)
    fake_clock.now -= 98
    second = stream_predict(learners("single"), images, sink, chunk_size=4, kernel=kernel, progress=False)
    mark_done(kernel.working_dir)

    assert (first.complete, first.done) == (False, 4)
    assert after_first.status == "needs-resume"
    assert after_first.where() == "predictions 4 of 24 into sub.csv"
    assert (second.complete, second.resumed_at, second.predicted) == (True, 4, 20)
    assert KernelStatus.load(kernel.working_dir).status == "done"
    expected = _label_rows(images, _reference(learners("single"), images)[0].numpy())
    assert pd.read_csv("sub.csv", dtype=str, keep_default_na=False).values.tolist() == [
        [a, str(b), c] for a, b, c in expected
    ]


def test_the_default_reserve_scales_with_the_kernels_time_limit(learners, images, tmp_path, fake_clock, monkeypatch):
    (tmp_path / "working").mkdir()
    monkeypatch.chdir(tmp_path / "working")
    short = Kernel(tmp_path, KernelLimits(time_s=40.0), started_at=fake_clock.now - 20, clock=fake_clock)
    long = Kernel(tmp_path, KernelLimits(time_s=9 * 3600.0), started_at=fake_clock.now - (9 * 3600 - 50),
                  clock=fake_clock)  # fmt: skip

    rehearsal = stream_predict(learners("single"), images, CsvSink("short.csv", _label_rows, ["id", "label", "score"]),
                               chunk_size=4, kernel=short, progress=False)  # fmt: skip
    nine_hours = stream_predict(learners("single"), images, CsvSink("long.csv", _label_rows, ["id", "label", "score"]),
                                chunk_size=4, kernel=long, progress=False)  # fmt: skip

    assert rehearsal.complete  # 20 s left of 40: 2 s kept free, not a minute
    assert (nine_hours.complete, nine_hours.done) == (False, 4)  # 50 s left of 9 h: under the minute kept free


def test_shards_merged_equal_the_unsharded_run(learners, images, kernel_here):
    learn = learners("single")
    whole = CsvSink("whole.csv", _label_rows, ["id", "label", "score"])
    stream_predict(learn, images, whole, kernel=kernel_here, progress=False)
    parts = []
    for i in range(3):
        parts.append(CsvSink(f"part{i}.csv", _label_rows, ["id", "label", "score"]))
        stream_predict(learn, images, parts[-1], shard=(i, 3), kernel=kernel_here, progress=False)

    merged = merge_shards([p.path for p in parts], "merged.csv", keys=[p.stem for p in images], key_column="id")

    assert merged.read_bytes() == whole.path.read_bytes()


def test_array_shards_merge_row_by_row(learners, images, kernel_here):
    learn = learners("multi")
    stream_predict(learn, images, ArraySink("whole.npy"), kernel=kernel_here, progress=False)
    for i in range(2):
        stream_predict(learn, images, ArraySink(f"s{i}.npy"), shard=(i, 2), kernel=kernel_here, progress=False)

    merge_shards(["s0.npy", "s1.npy"], "merged.npy")

    np.testing.assert_array_equal(np.load("merged.npy"), np.load("whole.npy"))
    assert os.stat("merged.npy").st_mode & 0o777 == os.stat("whole.npy").st_mode & 0o777  # not mkstemp's 0600


def test_bad_images_get_placeholders_and_are_listed(learners, images, kernel_here, tmp_path):
    learn = learners("single")
    zero = tmp_path / "zero.png"
    zero.write_bytes(b"")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(images[0].read_bytes()[:60])
    text = tmp_path / "text.jpg"
    text.write_text("not an image at all")
    items = [*images[:5], zero, images[5], truncated, text, *images[6:10]]

    summary = stream_predict(learn, items, ArraySink("p.npy"), kernel=kernel_here, progress=False)

    got = np.load("p.npy")
    assert sorted(s.item for s in summary.skipped) == sorted(map(str, [zero, truncated, text]))
    assert [s.index for s in summary.skipped] == [5, 7, 8]
    assert all(is_placeholder(got[i]) for i in (5, 7, 8))
    good = [i for i in range(len(items)) if i not in (5, 7, 8)]
    expected = _reference(learn, [items[i] for i in good])[0].numpy()
    np.testing.assert_allclose(got[good], expected, rtol=1e-5, atol=1e-6)
    saved = json.loads(progress_path(ArraySink("p.npy")).read_text())
    assert len(saved["skipped"]) == 3


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"shard": (2, 2)}, r"shard=\(2, 2\) must be \(i, n\)"),
    ({"tta": "rotate"}, "unknown augmentation 'rotate'"),
])  # fmt: skip
def test_bad_arguments_fail_before_any_work(kwargs, message, learners, images, kernel_here):
    with pytest.raises(Exception, match=message):
        stream_predict(learners("single"), images, ArraySink("p.npy"), kernel=kernel_here, progress=False, **kwargs)
    assert _files(kernel_here.working_dir) == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"memory_fraction": 1.5}, "memory_fraction=1.5 must be between 0 and 1"),
    ({"commit_every_s": 0}, "commit_every_s=0 must be positive"),
])  # fmt: skip
def test_bad_chunk_limits_are_refused_where_they_are_written(kwargs, message):
    with pytest.raises(UsageError, match=message):
        ChunkLimits(**kwargs)


def test_chunk_limits_bound_each_chunks_predictions(learners, images, kernel_here):
    """2 float32 activations per item, 3 chunk-sized buffers at worst: 100 bytes is at most 4 items a chunk."""
    summary = stream_predict(learners("single"), images, ArraySink("p.npy"), bs=2, kernel=kernel_here,
                             progress=False, chunk_limits=ChunkLimits(max_bytes=100))  # fmt: skip
    assert summary.complete
    assert max(summary.chunk_sizes[1:]) <= 4, summary.chunk_sizes  # the first is the probe (2 batches)


# --- resume you can trust: the files are checked, not the manifest's word ---------------------------------------


def _sink(kind):
    if kind == "csv":
        return CsvSink("out.csv", _label_rows, ["id", "label", "score"])
    return ArraySink("out.npy")


@pytest.fixture(scope="module")
def tiny(images):
    from conftest import make_learner

    return make_learner("tiny", images[:16])


@pytest.fixture(scope="module")
def uninterrupted(tiny, images, tmp_path_factory):
    """The bytes of an uninterrupted run, per sink kind."""
    out = {}
    for kind in ("csv", "npy"):
        root = tmp_path_factory.mktemp(f"uninterrupted-{kind}")
        (root / "working").mkdir()
        sink = _sink(kind)
        sink.path = root / "working" / sink.path.name
        stream_predict(tiny, images[:12], sink, chunk_size=4, kernel=Kernel(root), progress=False)
        out[kind] = sink.path.read_bytes()
    return out


def _partial_run(learn, items, kind, tmp_path, fake_clock, calls=2):
    """`calls` calls that each commit one chunk of 4 and stop for lack of time, as a kernel near its cutoff does."""
    kernel = Kernel(tmp_path, KernelLimits(time_s=100.0), started_at=fake_clock.now - 98, clock=fake_clock)
    for _ in range(calls):
        summary = stream_predict(learn, items, _sink(kind), chunk_size=4, kernel=kernel, progress=False)
    assert summary.done == 4 * calls
    assert not summary.complete
    return summary


_DAMAGES = {
    "deleted": lambda p: p.unlink(),
    "cut 15 bytes short": lambda p: os.truncate(p, p.stat().st_size - 15),
    "cut to 100 bytes": lambda p: os.truncate(p, 100),
    "one byte changed": lambda p: p.write_bytes(_flip(p.read_bytes(), 140)),
    "longer and different": lambda p: p.write_bytes(p.read_bytes() + b"x,1,0.5\n"),
}


def _flip(data: bytes, at: int) -> bytes:
    data = bytearray(data)
    data[at] ^= 0x01
    return bytes(data)


@pytest.mark.parametrize("finished", [False, True], ids=["unfinished", "finished"])
@pytest.mark.parametrize("damage", list(_DAMAGES))
@pytest.mark.parametrize("kind", ["csv", "npy"])
def test_tampered_files_are_never_reported_complete(kind, damage, finished, tiny, images, uninterrupted, kernel_here,
                                                    fake_clock, caplog):  # fmt: skip
    items = images[:12]
    if finished:
        stream_predict(tiny, items, _sink(kind), chunk_size=4, kernel=kernel_here, progress=False)
    else:
        _partial_run(tiny, items, kind, kernel_here.root, fake_clock)
    path = kernel_here.working_dir / _sink(kind).path.name
    _DAMAGES[damage](path)

    summary = stream_predict(tiny, items, _sink(kind), chunk_size=4, kernel=kernel_here, progress=False)

    assert summary.complete
    assert path.read_bytes() == uninterrupted[kind]
    # bytes past the last commit of an unfinished run are not progress: dropping them is the normal resume
    only_uncommitted = not finished and (
        damage == "longer and different" or (kind, damage) == ("npy", "cut 15 bytes short")
    )
    assert (path.name in caplog.text) != only_uncommitted  # one log line says what was lost and what happens


def test_a_partial_run_resumes_byte_identical_in_a_new_process(tiny, images, uninterrupted, kernel_here, fake_clock):
    _partial_run(tiny, images[:12], "csv", kernel_here.root, fake_clock)
    script = kernel_here.root / "finish.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from conftest import make_images, make_learner
        from pathlib import Path
        from test_predict import _label_rows
        from kaggle_kit.kernel import Kernel
        from kaggle_kit.predict.stream import stream_predict
        from kaggle_kit.predict.sinks import CsvSink

        images = sorted(Path({str(images[0].parent)!r}).glob("*.png"))[:12]
        learn = make_learner("tiny", sorted(Path({str(images[0].parent)!r}).glob("*.png"))[:16])
        summary = stream_predict(learn, images, CsvSink("out.csv", _label_rows, ["id", "label", "score"]),
                                 chunk_size=4, kernel=Kernel(Path({str(kernel_here.root)!r})), progress=False)
        print(summary.resumed_at, summary.complete)
    """)
    )

    done = subprocess.run([sys.executable, str(script)], cwd=kernel_here.working_dir, capture_output=True, text=True,
                          timeout=600)  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["8", "True"], done.stdout + done.stderr
    assert (kernel_here.working_dir / "out.csv").read_bytes() == uninterrupted["csv"]


def test_a_second_call_on_a_busy_sink_fails_at_once_and_the_first_finishes(tiny, images, uninterrupted, kernel_here):
    from kaggle_kit.predict.progress import SinkBusyError, SinkLock

    sink = _sink("csv")
    with SinkLock(kernel_here.working_dir / "out.csv"), pytest.raises(SinkBusyError, match="being written by"):
        stream_predict(tiny, images[:12], sink, chunk_size=4, kernel=kernel_here, progress=False)

    stream_predict(tiny, images[:12], sink, chunk_size=4, kernel=kernel_here, progress=False)
    assert sink.path.read_bytes() == uninterrupted["csv"]


def test_stale_temp_files_of_a_killed_commit_are_removed(tiny, images, kernel_here):
    litter = kernel_here.working_dir / ".out.csv.progress.json.k3j9x0aa.tmp"
    litter.write_text("{")

    stream_predict(tiny, images[:4], _sink("csv"), kernel=kernel_here, progress=False)

    assert _files(kernel_here.working_dir) == ["out.csv", "out.csv.progress.json"]


_RESUME_SCRIPT = """
import json, sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from conftest import make_learner
import kaggle_kit as kk
from kaggle_kit.errors import ResumeMismatchError
from kaggle_kit.kernel import Kernel
from kaggle_kit.limits import KernelLimits
from kaggle_kit.predict.chunks import ChunkLimits
from kaggle_kit.predict.stream import stream_predict
from kaggle_kit.predict.sinks import CsvSink

VOCAB = [f"c{{i}}" for i in range(100)]
TO_ROWS = {{
    "top-1": kk.top_k_rows(VOCAB, k=1),
    "top-2": kk.top_k_rows(VOCAB, k=2),
    "lambda-a": lambda items, preds: [(Path(i).stem, "a") for i in items],
    "lambda-b": lambda items, preds: [(Path(i).stem, "b") for i in items],
    "score": lambda items, preds: [(Path(i).stem, f"{{p[0]:.6f}}") for i, p in zip(items, preds)],
}}
images = sorted(Path({images!r}).glob("*.png"))
learn = make_learner("tiny", images[:16])
for root, mode, name in json.loads(sys.argv[1]):  # the steps, one after the other (each kernel its own root)
    root = Path(root)
    # a kernel 5 s before its cutoff commits one chunk and stops, as a killed-then-resumed kernel would have
    late = mode == "partial"
    kernel = Kernel(root, KernelLimits(time_s=100.0), started_at=time.time() - 95) if late else Kernel(root)
    try:
        s = stream_predict(learn, images[:12], CsvSink(root / "working/out.csv", TO_ROWS[name], ["id", "answer"]),
                           chunk_size=4, kernel=kernel, progress=False)
        print(json.dumps({{"done": s.done, "complete": s.complete}}))
    except ResumeMismatchError as exc:  # and the file as the refusal left it
        print(json.dumps({{"refused": str(exc), "out": (root / "working/out.csv").read_text()}}))
"""


def _resume_steps(images, steps: list[tuple[Path, str, str]]) -> list[dict]:
    """Run the (root, mode, to_rows name) `steps` one after the other in one new process; what each returned."""
    script = steps[0][0] / "resume_step.py"
    script.write_text(_RESUME_SCRIPT.format(tests=str(Path(__file__).parent), images=str(images[0].parent)))
    done = subprocess.run([sys.executable, str(script), json.dumps([[str(r), m, n] for r, m, n in steps])],
                          cwd=steps[0][0] / "working", capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.strip().splitlines()[-len(steps) :]]


def _resume_step(root: Path, images, mode: str, name: str) -> dict:
    return _resume_steps(images, [(root, mode, name)])[0]


CHANGES = [
    ("top-1", "top-2", "sink to_rows settings k 1 (now 2);"),
    ("lambda-a", "lambda-b", "sink to_rows code changed;"),
]


def test_a_resume_with_a_changed_to_rows_is_refused_in_a_new_process_naming_it(images, tmp_path):
    roots = [tmp_path / first for first, _changed, _named in CHANGES]  # one kernel per change
    for root in roots:
        (root / "working").mkdir(parents=True)
    partial = _resume_steps(
        images, [(root, "partial", first) for root, (first, _c, _n) in zip(roots, CHANGES, strict=True)]
    )
    before = [(root / "working/out.csv").read_text() for root in roots]

    # a new process: each kernel resumed with the changed to_rows (refused), then with its own (finished)
    steps = [step for root, (first, changed, _n) in zip(roots, CHANGES, strict=True)
             for step in ((root, "finish", changed), (root, "finish", first))]  # fmt: skip
    results = _resume_steps(images, steps)

    assert partial == [{"done": 4, "complete": False}] * len(CHANGES)
    for i, (root, (_first, _changed, named)) in enumerate(zip(roots, CHANGES, strict=True)):
        refused, finished = results[2 * i], results[2 * i + 1]
        assert f"holds progress of another run: {named}" in refused["refused"]
        assert refused["out"] == before[i]  # nothing of the other run written
        assert finished == {"done": 12, "complete": True}
        rows = pd.read_csv(root / "working/out.csv", dtype=str, keep_default_na=False)
        assert len(rows) == 12
        assert rows["answer"].map(lambda a: len(a.split())).nunique() == 1


@pytest.mark.parametrize("order", ["shuffled", "filtered"])
def test_series_items_are_taken_by_position_never_by_label(order, learners, images, kernel_here):
    series = pd.Series([str(p) for p in images])
    series = series.sample(frac=1, random_state=1) if order == "shuffled" else series[series.index % 3 != 0]
    learn = learners("single")

    stream_predict(learn, series, ArraySink("s.npy"), chunk_size=4, kernel=kernel_here, progress=False)

    expected = _reference(learn, list(series))[0].numpy()
    np.testing.assert_allclose(np.load(kernel_here.working_dir / "s.npy"), expected, rtol=1e-5, atol=1e-6)


def test_an_edited_sink_state_is_not_trusted(tiny, images, uninterrupted, kernel_here, fake_clock, caplog):
    _partial_run(tiny, images[:12], "csv", kernel_here.root, fake_clock)
    manifest_file = kernel_here.working_dir / "out.csv.progress.json"
    raw = json.loads(manifest_file.read_text())
    raw["commits"][-1]["sink_state"]["bytes"] -= 30  # the state open() would truncate to, unlike the proven bytes
    manifest_file.write_text(json.dumps(raw))

    summary = stream_predict(tiny, images[:12], _sink("csv"), chunk_size=4, kernel=kernel_here, progress=False)

    assert summary.complete
    assert summary.resumed_at == 4
    assert (kernel_here.working_dir / "out.csv").read_bytes() == uninterrupted["csv"]
    assert "rewinding from item 8 to 4" in caplog.text


@pytest.mark.parametrize(
    ("to_rows", "expected"),
    [
        (lambda items, preds: [{"id": Path(i).stem, "answer": "x"} for i in items], None),
        (lambda items, preds: None, "to_rows returned NoneType, not a list of rows"),
        (lambda items, preds: pd.DataFrame({"id": [Path(i).stem for i in items]}), "without the column\\(s\\) answer"),
        (lambda items, preds: [{"id": "a"} for _ in items], "whose keys are not the columns"),
    ],
    ids=["dicts", "None", "frame missing a column", "dict missing a key"],
)
def test_what_to_rows_returns_is_written_by_column_or_refused_naming_it(to_rows, expected, images, learners,
                                                                        kernel_here):  # fmt: skip
    sink = CsvSink("rows.csv", to_rows, ["id", "answer"])
    if expected is None:
        stream_predict(learners("single"), images[:8], sink, kernel=kernel_here, progress=False)
        rows = pd.read_csv(kernel_here.working_dir / "rows.csv", dtype=str)
        assert list(rows["id"]) == [p.stem for p in images[:8]]
        assert set(rows["answer"]) == {"x"}
        return
    with pytest.raises(KaggleKitError, match=expected):
        stream_predict(learners("single"), images[:8], sink, kernel=kernel_here, progress=False)


def test_a_kernel_whose_training_stopped_to_resume_predicts_nothing_unless_told(learners, images, kernel_here):
    from kaggle_kit.status import write_status

    learn = learners("single")
    write_status(kernel_here.working_dir, "needs-resume", stage=0, epoch=1, iteration=7)  # what a stopped Deadline says
    path = kernel_here.working_dir / "submission.csv"

    refused = stream_predict(learn, images, CsvSink(path, _label_rows, ["id", "label", "p"]), kernel=kernel_here,
                             progress=False)  # fmt: skip

    assert refused.refused.startswith("training stopped at stage/epoch/batch 0/1/7 to be resumed")
    assert (refused.done, refused.complete, refused.files) == (0, False, [])
    assert _files(kernel_here.working_dir) == ["kaggle-kit-status.json"]  # nothing written, not even a manifest

    told = stream_predict(learn, images, CsvSink(path, _label_rows, ["id", "label", "p"]), kernel=kernel_here,
                          progress=False, allow_unfinished=True)  # fmt: skip
    assert told.complete
    assert told.refused is None
    write_status(kernel_here.working_dir, "trained", stage=0, epoch=1, iteration=9)  # the rerun finished training
    again = stream_predict(learn, images, CsvSink(path, _label_rows, ["id", "label", "p"]), kernel=kernel_here,
                           progress=False)  # fmt: skip
    assert (again.refused, again.complete) == (None, True)


def test_a_test_set_with_other_pixels_at_the_same_names_is_predicted_again_in_a_new_process(tmp_path):
    from conftest import make_images
    from PIL import Image, ImageOps

    own = make_images(tmp_path / "own", 12)
    rerun, fresh = tmp_path / "rerun", tmp_path / "fresh"
    for root in (rerun, fresh):
        (root / "working").mkdir(parents=True)
    first = _resume_step(rerun, own, "finish", "score")
    before = (rerun / "working/out.csv").read_bytes()
    for path in own[6:]:  # the private test set: same file names, other pixels (from the 7th item on)
        with Image.open(path) as image:
            ImageOps.invert(image.convert("RGB")).save(path)

    again = _resume_step(rerun, own, "finish", "score")
    whole = _resume_step(fresh, own, "finish", "score")

    assert first == again == whole == {"done": 12, "complete": True}
    after = (rerun / "working/out.csv").read_bytes()
    assert after == (fresh / "working/out.csv").read_bytes()  # as if the new test set had been predicted from scratch
    assert after != before
    assert after.splitlines()[:7] == before.splitlines()[:7]  # header and the unchanged items' rows kept
