"""stream_predict on 2 processes (torchrun, gloo, CPU): the same call writes the same bytes as one process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_images

pytestmark = pytest.mark.e2e

SCRIPT = """
import os, sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
import torch.distributed as dist
if "RANK" in os.environ:
    dist.init_process_group("gloo")
import kaggle_kit as kk
from conftest import make_learner

images = sorted(Path({images!r}).glob("*.png"))[: {n}]
if dist.is_initialized() and dist.get_rank() == 1 and os.environ.get("RANK_1_ITEMS") == "reversed":
    images = images[::-1]
if dist.is_initialized() and dist.get_rank() == 1 and os.environ.get("RANK_1_ITEMS") == "fewer":
    images = images[:-1]
learn = make_learner("tiny", sorted(Path({images!r}).glob("*.png"))[:16])  # seeded: the same weights on every rank
if dist.is_initialized() and dist.get_rank() == 1:
    time.sleep(1.5)  # a late rank: a write before the others' shares arrived would show
rows = lambda items, preds: [(p.stem, int(x.argmax()), f"{{float(x.max()):.5f}}") for p, x in zip(items, preds)]
summary = kk.stream_predict(learn, images, kk.CsvSink("submission.csv", rows, ["id", "label", "score"]), bs=4,
                            chunk_size=8, progress=False)
rank = os.environ.get("RANK", "-")  # each rank's summary, beside working/ (not an output)
Path(f"../summary-rank-{{rank}}.txt").write_text(f"done {{summary.done}} complete {{summary.complete}}")
if dist.is_initialized():
    dist.destroy_process_group()
    os._exit(0)  # past the interpreter's teardown, where gloo's threads may still abort ("terminate called ...")
"""


def _run(tmp_path, name, script, ranks, env=None, ok=True):
    root = tmp_path / name
    (root / "working").mkdir(parents=True)
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"] if ranks > 1 else []
    env = {**os.environ, "KAGGLE_KIT_ROOT": str(root), "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run([sys.executable, *launcher, str(script)], cwd=root / "working", env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
    return root / "working", proc.stdout + proc.stderr


@pytest.mark.parametrize("n", [37, 1], ids=["37 items, bs 4", "fewer items than ranks"])
def test_two_ranks_write_what_one_process_writes_and_only_rank_0_writes(n, tmp_path):
    images = make_images(tmp_path / "images", 37)
    script = tmp_path / "predict.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), images=str(images[0].parent), n=n))

    one, _ = _run(tmp_path, "one", script, 1)
    two, _ = _run(tmp_path, "two", script, 2)

    assert (two / "submission.csv").read_bytes() == (one / "submission.csv").read_bytes()
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())  # rank 1 made no file
    said = {r: (two.parent / f"summary-rank-{r}.txt").read_text() for r in (0, 1)}
    assert said == {0: f"done {n} complete True", 1: f"done {n} complete True"}  # rank 1 returns rank 0's summary
    lines = (two / "submission.csv").read_text().splitlines()
    assert len(lines) == n + 1
    assert len({line.split(",")[0] for line in lines[1:]}) == n  # no row twice, none missing


@pytest.mark.parametrize("given", ["reversed", "fewer"])
def test_ranks_given_other_items_all_stop_in_one_line_and_nothing_is_written(given, tmp_path):
    images = make_images(tmp_path / "images", 12)
    script = tmp_path / "predict.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), images=str(images[0].parent), n=12))

    working, said = _run(tmp_path, "two", script, 2, env={"RANK_1_ITEMS": given}, ok=False)

    assert said.count("RanksDisagreeError: rank 1 was given other items than rank 0") == 2, said  # both ranks said it
    assert list(working.iterdir()) == []  # nothing written, not even the lock's empty file
