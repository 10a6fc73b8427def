"""ProgressManifest and SinkLock: what a manifest proves about its sink's file, and one writer per sink."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from kaggle_kit.errors import ResumeMismatchError
from kaggle_kit.predict.progress import (
    ProgressError,
    ProgressManifest,
    RunFingerprint,
    SinkBusyError,
    SinkLock,
    manifest_path_for,
)
from kaggle_kit.predict.sinks import ArraySink, CsvSink

FINGERPRINT = RunFingerprint(items="abc", n_items=12)


def _rows(items, preds):
    return [(item, f"{float(p.sum()):.3f}") for item, p in zip(items, preds, strict=True)]


def _write(sink, chunks, total=12):
    """Write `chunks` (lists of item names) through `sink`, committing each as stream_predict does."""
    manifest = ProgressManifest(FINGERPRINT, total)
    sink.open(total, None)
    done = 0
    for chunk in chunks:
        preds = np.arange(len(chunk) * 3, dtype=np.float32).reshape(len(chunk), 3) + done
        sink.write(chunk, preds, np.ones(len(chunk), bool), np.arange(done, done + len(chunk)))
        done += len(chunk)
        manifest.record(done, sink.commit(), [])
        manifest.commit(manifest_path_for(sink.paths()[0]))
    sink.close()
    return manifest


def _chunks(n=3, size=4):
    return [[f"img{i * size + j}" for j in range(size)] for i in range(n)]


@pytest.fixture(params=["csv", "npy"])
def written(request, tmp_path):
    sink = (
        CsvSink(tmp_path / "sub.csv", _rows, ["id", "score"])
        if request.param == "csv"
        else ArraySink(tmp_path / "preds.npy")
    )
    manifest = _write(sink, _chunks())
    return sink, manifest


def _reload(sink):
    return ProgressManifest.load(manifest_path_for(sink.paths()[0]), FINGERPRINT)


def test_an_untouched_file_verifies_every_commit(written):
    sink, manifest = written

    assert _reload(sink).verified(sink.path).done == manifest.done == 12


def test_a_file_cut_inside_the_last_chunk_rewinds_to_the_commit_before(written):
    sink, manifest = written
    cut = manifest.commits[-1].bytes - 5
    os.truncate(sink.path, cut)

    assert _reload(sink).verified(sink.path).done == 8


def test_a_changed_byte_in_the_second_chunk_rewinds_to_the_first(written):
    sink, manifest = written
    data = bytearray(sink.path.read_bytes())
    data[manifest.commits[0].bytes + 2] ^= 0x01
    sink.path.write_bytes(bytes(data))

    assert _reload(sink).verified(sink.path).done == 4


def test_a_missing_or_emptied_file_starts_over(written):
    sink, _manifest = written
    sink.path.write_bytes(b"")
    assert _reload(sink).verified(sink.path).done == 0
    sink.path.unlink()
    assert _reload(sink).verified(sink.path).done == 0


def test_resume_logs_the_rewind_and_commits_the_verified_record(written, caplog):
    sink, manifest = written
    os.truncate(sink.path, manifest.commits[1].bytes + 1)
    path = manifest_path_for(sink.path)

    resumed = _reload(sink).resume(sink.path, path)

    assert resumed.done == 8
    assert "rewinding from item 12 to 8" in caplog.text
    assert json.loads(path.read_text())["done"] == 8


def test_a_finished_csv_with_bytes_appended_is_cut_back(tmp_path, caplog):
    sink = CsvSink(tmp_path / "sub.csv", _rows, ["id", "score"])
    _write(sink, _chunks())
    before = sink.path.read_bytes()
    with open(sink.path, "ab") as f:
        f.write(b"img99,1.000\n")

    resumed = _reload(sink).resume(sink.path, manifest_path_for(sink.path))

    assert resumed.complete
    assert sink.path.read_bytes() == before
    assert "cutting it back" in caplog.text


@pytest.mark.parametrize("content", ["[]", "{}", '{"version": 2}', "not json", '{"version": 1, "done": 3}'])
def test_a_malformed_manifest_is_a_one_line_error_naming_what_to_delete(content, tmp_path):
    path = tmp_path / "sub.csv.progress.json"
    path.write_text(content)

    with pytest.raises(ProgressError, match=r"sub.csv.progress.json .*pass restart=True") as info:
        ProgressManifest.load(path, FINGERPRINT)
    assert "\n" not in str(info.value)


def test_a_manifest_of_another_run_is_a_mismatch(written):
    sink, _manifest = written

    with pytest.raises(ResumeMismatchError, match="another run: items"):
        ProgressManifest.load(manifest_path_for(sink.path), dataclasses.replace(FINGERPRINT, items="xyz"))


def test_a_second_lock_on_a_sink_fails_at_once_naming_the_holder(tmp_path):
    path = tmp_path / "sub.csv"
    with SinkLock(path), pytest.raises(SinkBusyError, match=f"being written by process {os.getpid()}"):
        SinkLock(path).__enter__()
    with SinkLock(path):  # released when the first call ends
        pass


def test_a_lock_held_by_another_process_names_its_pid(tmp_path):
    path = tmp_path / "sub.csv"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from kaggle_kit.predict.progress import SinkLock
            with SinkLock(Path({str(path)!r})):
                print("locked", flush=True)
                sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SinkBusyError, match=f"process {holder.pid};"):
            SinkLock(path).__enter__()
    finally:
        holder.communicate("done\n", timeout=60)


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw["commits"][0].update(bytes="100"),
        lambda raw: raw.update(total=float("1e999")),
        lambda raw: raw.update(fingerprint=[]),
        lambda raw: raw["commits"][0].update(sha256=5),
        lambda raw: raw.update(skipped=[1]),
    ],
    ids=["string bytes", "total 1e999", "fingerprint a list", "sha256 a number", "skipped not objects"],
)
def test_a_manifest_field_of_the_wrong_type_is_one_progress_error(damage, tmp_path):
    path = tmp_path / "out.csv.progress.json"
    fingerprint = RunFingerprint(items="x")
    manifest = ProgressManifest(fingerprint, 12)
    manifest.record(4, {"rows": 4, "bytes": 10, "sha256": "ab"}, [])
    manifest.commit(path)
    raw = json.loads(path.read_text())
    damage(raw)
    path.write_text(json.dumps(raw))

    with pytest.raises(ProgressError, match="is not a readable progress manifest"):
        ProgressManifest.load(path, fingerprint)
