"""A chain's measure of progress and its estimate of what is left (kaggle_kit.push.estimate)."""

import pytest

from kaggle_kit.push.estimate import estimate, made_progress, place


def _run(epoch, iteration=0, *, epochs=10, batches=100, stage=0, training=None, used=3600.0, **extra):
    return {"stage": stage, "epoch": epoch, "iteration": iteration, "epochs": epochs, "batches": batches,
            "training": training, "time_used_s": used, **extra}  # fmt: skip


def test_a_steady_fit_is_estimated_from_its_first_run():
    guess = estimate([_run(3)], gpu=True)

    assert (guess.run, guess.runs) == (1, 4)  # 30% a run: 3 more
    assert guess.seconds_left == pytest.approx(3 * 3600)
    assert guess.describe() == "run 1 of about 4; about 3.0 GPU hours left to go"


def test_runs_of_different_lengths_and_a_rehearsals_scale():
    guess = estimate([_run(2, used=100.0), _run(4, used=50.0)], gpu=False, time_scale=240)

    assert guess.runs == 5  # 2 epochs a run, 6 left: 3 more
    assert guess.seconds_left == pytest.approx(3 * 75.0 * 240)
    assert guess.left() == "about 15 hours left to go"


def test_a_run_that_moved_on_to_the_next_fit_counts_what_it_finished_of_the_last():
    first = _run(8, training="segmenter")
    second = _run(2, training="attributes", epochs=4, batches=10)

    assert made_progress(first, second) == pytest.approx(0.2 + 0.5)


def test_predictions_are_progress_too():
    first = _run(10, predicted=100, items=1000)  # the fit is done; 10% of the predictions
    second = _run(10, predicted=600, items=1000)

    assert made_progress(first, second) == pytest.approx(0.5)
    assert estimate([first, second], gpu=True).runs == 3  # 0.4 left at 0.3 a run
    assert place(second)[2] == pytest.approx(0.6)


@pytest.mark.parametrize(("checkpoint", "progress"), [("ckpt-b.pth", True), ("ckpt-a.pth", False), (None, False)])
def test_the_same_position_is_progress_only_with_a_new_checkpoint(checkpoint, progress):
    before = _run(3, 50, checkpoint="ckpt-a.pth")

    assert (made_progress(before, _run(3, 50, checkpoint=checkpoint)) > 0) is progress


def test_a_script_without_the_fits_size_has_no_estimate_but_a_position():
    bare = {"stage": 0, "epoch": 1, "iteration": 0, "time_used_s": 10.0}

    assert estimate([bare], gpu=True) is None
    assert made_progress(bare, {**bare, "epoch": 2}) > 0  # it moved: not stuck, however little it says
    assert made_progress(bare, bare) == 0.0


def test_after_a_failed_run_the_count_goes_on_from_the_chains_own_run_number():
    runs = [_run(3, run=1), _run(6, run=3)]  # run 2 failed: it is not among the runs that made progress

    guess = estimate(runs, gpu=True)

    assert guess.run_of() == "run 3 of about 5"  # 3 epochs a run, 4 left: 2 more after run 3
