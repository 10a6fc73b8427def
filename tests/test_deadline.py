import json
import math
from pathlib import Path

import pytest
import torch
from conftest import make_images, make_learner
from fastai.callback.core import Callback
from fastai.torch_core import set_seed

from kaggle_kit.kernel import Kernel
from kaggle_kit.limits import KernelLimits
from kaggle_kit.status import KernelStatus, read_status, write_status
from kaggle_kit.train.checkpoint import CheckpointError
from kaggle_kit.train.deadline import Deadline, DeadlineError


class Clockwork(Callback):
    """Moves the fake clock: `per_batch_s` after each training batch, a jump past the cutoff at a chosen point."""

    order = 60  # before Deadline (65) looks at the clock

    def __init__(self, clock, per_batch_s=0.0, jump_after_batch=None, jump_after_epoch=None):
        self.clock, self.per_batch_s = clock, per_batch_s
        self.jump_after_batch, self.jump_after_epoch = jump_after_batch, jump_after_epoch
        self.batches = 0

    def after_batch(self):
        if not self.training:
            return
        self.batches += 1
        self.clock.advance(self.per_batch_s)
        if self.batches == self.jump_after_batch:
            self.clock.advance(10**7)

    def after_epoch(self):
        if self.epoch == self.jump_after_epoch:
            self.clock.advance(10**7)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_images(tmp_path_factory.mktemp("deadline-images"), 24)


def _kernel(root, clock, hours=1.0):
    (root / "working").mkdir(parents=True, exist_ok=True)
    return Kernel(root, KernelLimits(time_s=hours * 3600), started_at=clock.now, clock=clock)


def _train(images, root, clock, method="fit_one_cycle", n_epoch=3, deadline=None, clockwork=None, lr=1e-2,
           fit_kwargs=None, change=None, **kwargs):  # fmt: skip
    learn = make_learner("tiny", images, augment=True)
    if change is not None:
        change(learn)
    deadline = deadline or Deadline(every=10**6, reserve=0, safety=0, kernel=_kernel(root, clock), **kwargs)
    cbs = [deadline, *([clockwork] if clockwork else [])]
    with learn.no_bar(), learn.no_logging():
        getattr(learn, method)(n_epoch, lr, cbs=cbs, **(fit_kwargs or {}))
    return learn, deadline


def _same_weights(a, b):
    return all(
        torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize("method", ["fit_one_cycle", "fit"])
@pytest.mark.parametrize("stop", ["mid-epoch", "epoch-end"])
def test_stopped_then_resumed_run_ends_bitwise_identical(method, stop, images, tmp_path, fake_clock):
    reference, _ = _train(images, tmp_path / "reference", fake_clock, method)
    jump = {"jump_after_batch": 7} if stop == "mid-epoch" else {"jump_after_epoch": 0}

    first, first_deadline = _train(
        images, tmp_path / "run", fake_clock, method, clockwork=Clockwork(fake_clock, **jump)
    )
    status_after_stop = read_status(tmp_path / "run/working")
    fake_clock.now += 10**8  # the next kernel starts later: a fresh time budget
    resumed, resumed_deadline = _train(images, tmp_path / "run", fake_clock, method)

    assert first_deadline.stopped
    assert not first_deadline.finished
    assert status_after_stop["status"] == "needs-resume"
    assert (status_after_stop["epoch"], status_after_stop["iteration"]) == ((1, 2) if stop == "mid-epoch" else (1, 0))
    assert resumed_deadline.finished
    assert _same_weights(reference, resumed)
    assert resumed.recorder.values == reference.recorder.values
    assert torch.equal(torch.stack(resumed.recorder.losses), torch.stack(reference.recorder.losses))
    assert read_status(tmp_path / "run/working")["status"] == "trained"


def test_a_run_that_only_validates_the_epoch_its_predecessor_trained_moves_the_status_on(images, tmp_path,
                                                                                         fake_clock):  # fmt: skip
    # stopped after the epoch's last batch, before its validation: the next run validates it and stops at once
    _train(images, tmp_path, fake_clock, clockwork=Clockwork(fake_clock, jump_after_batch=5))
    before = read_status(tmp_path / "working")
    fake_clock.now += 10**8
    _learn, deadline = _train(images, tmp_path, fake_clock, clockwork=Clockwork(fake_clock, jump_after_epoch=0))
    after = read_status(tmp_path / "working")

    assert deadline.stopped
    assert (before["epoch"], before["iteration"]) == (0, 5)
    assert (after["epoch"], after["iteration"]) == (1, 0)  # progress a chain must see: the validation is not redone


def test_a_finished_fit_is_skipped_with_its_weights_loaded_and_a_done_job_stays_done(images, tmp_path, fake_clock):
    trained, _ = _train(images, tmp_path, fake_clock)
    write_status(tmp_path / "working", "done", stage=0, epoch=2, iteration=6)  # the kernel went on and predicted
    counter = Clockwork(fake_clock)

    again, deadline = _train(images, tmp_path, fake_clock, clockwork=counter)

    assert deadline.finished
    assert counter.batches == 0
    assert _same_weights(trained, again)
    assert KernelStatus.load(tmp_path / "working").status == "done"  # the rerun found the job done and left it so


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(images, tmp_path, fake_clock, caplog):
    reference, _ = _train(images, tmp_path / "reference", fake_clock)
    every_batch = Clockwork(fake_clock, per_batch_s=60, jump_after_batch=8)
    _train(
        images,
        tmp_path / "run",
        fake_clock,
        deadline=Deadline(every=1, reserve=0, safety=0, kernel=_kernel(tmp_path / "run", fake_clock)),
        clockwork=every_batch,
    )
    checkpoints = sorted((tmp_path / "run/working/checkpoints").glob("ckpt-*.pth"))
    checkpoints[-1].write_bytes(checkpoints[-1].read_bytes()[:1000])

    fake_clock.now += 10**8
    resumed, _ = _train(images, tmp_path / "run", fake_clock)

    assert [p.name[:23] for p in checkpoints] == ["ckpt-s00-e0001-i0000002", "ckpt-s00-e0001-i0000003"]
    assert "fails its checksum" in caplog.text
    assert _same_weights(reference, resumed)


def test_progressive_resizing_resumes_in_the_right_stage(images, tmp_path, fake_clock):
    def two_stages(root, clockwork=None):
        learn = make_learner("tiny", images, augment=True, size=24)
        deadline = Deadline(every=10**6, reserve=0, safety=0, kernel=_kernel(root, fake_clock))
        learn.add_cb(deadline)
        with learn.no_bar(), learn.no_logging():
            learn.fit_one_cycle(2, 1e-2)  # stage 0 at 24 px
            learn.dls = make_learner("tiny", images, augment=True, size=32).dls
            learn.fit_one_cycle(2, 1e-3, cbs=clockwork)  # stage 1 at 32 px
        return learn, deadline

    reference, _ = two_stages(tmp_path / "reference")
    _, stopped = two_stages(tmp_path / "run", Clockwork(fake_clock, jump_after_batch=7))
    fake_clock.now += 10**8
    resumed, deadline = two_stages(tmp_path / "run")

    assert stopped.stopped
    assert stopped.stage == 1
    assert deadline.finished
    assert _same_weights(reference, resumed)


def test_resuming_a_different_fit_is_a_clear_error(images, tmp_path, fake_clock):
    _train(images, tmp_path, fake_clock, clockwork=Clockwork(fake_clock, jump_after_batch=3))
    fake_clock.now += 10**8

    with pytest.raises(CheckpointError, match="different fit .*n_epoch: 3 then, 4 now"):
        _train(images, tmp_path, fake_clock, n_epoch=4)


def _no_bias(learn):
    from torch import nn

    learn.model[-1] = nn.Linear(8, 2, bias=False)


def _sgd(learn):
    from fastai.optimizer import SGD

    learn.opt_func = SGD


@pytest.mark.parametrize(("changed", "said"), [
    ({"lr": 3e-2}, "lr schedule 0.0004 -> 0.01 at 25% -> 1e-07 then, 0.0012 -> 0.03 at 25% -> 3e-07 now"),
    ({"fit_kwargs": {"div": 5.0}}, "lr schedule 0.0004 -> 0.01 at 25% -> 1e-07 then, 0.002 -> 0.01 at 25% -> 1e-07"),
    ({"fit_kwargs": {"pct_start": 0.5}}, "lr schedule 0.0004 -> 0.01 at 25% -> 1e-07 then, 0.0004 -> 0.01 at 50%"),
    ({"fit_kwargs": {"wd": 0.3}}, "hypers: [{'eps': 1e-05, 'sqr_mom': 0.99, 'wd': 0.01}] then, [{'eps': 1e-05, "),
    ({"change": _sgd}, "optimizer: 'Adam' then, 'SGD' now"),
    ({"change": _no_bias}, "model: parameters of other shapes"),
])  # fmt: skip
def test_resuming_with_a_changed_schedule_optimiser_or_model_is_one_line_naming_it(changed, said, images, tmp_path,
                                                                                  fake_clock):  # fmt: skip
    _train(images, tmp_path, fake_clock, clockwork=Clockwork(fake_clock, jump_after_batch=7))
    fake_clock.now += 10**8

    with pytest.raises(CheckpointError) as error:
        _train(images, tmp_path, fake_clock, **changed)

    ours = str(error.value).splitlines()[-1]  # fastai puts its own line before the callback's error
    assert "was written by a different fit" in ours
    assert said in ours


def test_a_kernel_with_less_time_left_than_its_reserve_refuses_to_train_in_one_line(images, tmp_path, fake_clock):
    from kaggle_kit.train.deadline import DeadlineError

    kernel = _kernel(tmp_path, fake_clock, hours=1.0)
    fake_clock.advance(40 * 60)  # 20 minutes left, 30 reserved for prediction
    counter = Clockwork(fake_clock)

    with pytest.raises(DeadlineError) as error:
        _train(images, tmp_path, fake_clock, clockwork=counter,
               deadline=Deadline(every=10**6, reserve=30, safety=0, kernel=kernel))  # fmt: skip

    ours = str(error.value).splitlines()[-1]
    assert "Deadline: 1200 s left, 1800 s needed for one checkpointed batch (reserve 1800 + safety 0" in ours
    assert "cannot make progress" in ours
    assert counter.batches == 0
    assert read_status(tmp_path / "working") is None  # nothing claimed: the status is left as it was


def test_the_default_safety_margin_scales_with_the_kernels_time_limit(images, tmp_path, fake_clock):
    rehearsal = _kernel(tmp_path / "short", fake_clock, hours=40 / 3600)  # a 40-second rehearsal run
    fake_clock.advance(20)
    _learn, deadline = _train(images, tmp_path / "short", fake_clock, n_epoch=1,
                              deadline=Deadline(every=10**6, reserve="6s", kernel=rehearsal))  # fmt: skip
    nine_hours = _kernel(tmp_path / "long", fake_clock, hours=9)
    fake_clock.advance(9 * 3600 - 50)  # 50 s left: under the minute a 9-hour kernel keeps

    with pytest.raises(DeadlineError) as error:
        _train(images, tmp_path / "long", fake_clock, deadline=Deadline(every=10**6, reserve=0, kernel=nine_hours))

    assert deadline.finished  # 20 s left of 40: 6 s reserve and 0.8 s safety leave time to train
    assert "(reserve 0 + safety 60" in str(error.value)


def test_resume_false_starts_over(images, tmp_path, fake_clock):
    _train(images, tmp_path, fake_clock, clockwork=Clockwork(fake_clock, jump_after_batch=3))
    fake_clock.now += 10**8
    counter = Clockwork(fake_clock)

    _, deadline = _train(images, tmp_path, fake_clock, clockwork=counter, resume=False)

    assert deadline.finished
    assert counter.batches == 15


def test_a_simulated_nine_hour_kernel_stops_where_the_reserve_begins(images, tmp_path, fake_clock):
    batch_s, reserve_min, every_min = 600.0, 60.0, 30.0  # each batch "takes" 10 minutes
    kernel = _kernel(tmp_path, fake_clock, hours=9)
    deadline = Deadline(every=every_min, reserve=reserve_min, safety=1, kernel=kernel)

    learn, _ = _train(
        images,
        tmp_path,
        fake_clock,
        n_epoch=20,
        deadline=deadline,
        clockwork=Clockwork(fake_clock, per_batch_s=batch_s),
    )

    # it stops after the first batch that leaves no more than reserve + margin (1 min safety + measured work)
    stop_batch = math.ceil((9 * 3600 - reserve_min * 60 - 60) / batch_s)
    n_iter = len(learn.dls.train)
    status = read_status(tmp_path / "working")
    assert deadline.stopped
    assert (status["epoch"], status["iteration"]) == divmod(stop_batch, n_iter)
    assert kernel.remaining_s() >= reserve_min * 60
    timer_saves = (stop_batch - 1) // int(every_min * 60 / batch_s)  # every 3 batches, before the stopping one
    assert deadline.saves == timer_saves + 1  # plus the final save at the stop
    assert len(learn.recorder.values) == stop_batch // n_iter  # whole epochs that fit


def test_the_deadline_stops_before_a_real_emulated_time_limit_leaving_the_reserve(run_kernel, tmp_path, images):
    # The reserve is set from the time left once the learner exists, so a slow start (a busy machine) only shortens
    # the training; the emulator's real limit is far away and only there to catch a kernel that does not stop.
    script = f"""
        import json, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        from fastai.callback.core import Callback
        from conftest import make_learner
        import kaggle_kit as kk
        from kaggle_kit.train.deadline import Deadline

        class Slow(Callback):
            def after_batch(self):
                time.sleep(0.05)

        images = sorted(Path({str(images[0].parent)!r}).glob("*.png"))
        learn = make_learner("tiny", images)
        kernel = kk.Kernel.current()
        reserve_s = kernel.remaining_s() - 40  # about 25 s of training: 40 s less the 15 s safety margin
        deadline = Deadline(reserve=reserve_s / 60, safety=0.25)
        with learn.no_bar(), learn.no_logging():
            learn.fit(1000, 1e-2, cbs=[deadline, Slow()])
        Path("../after.json").write_text(json.dumps({{"remaining": kernel.remaining_s(), "reserve": reserve_s,
                                                      "stopped": deadline.stopped, "epochs": learn.epoch,
                                                      "checkpoints": len(list(Path("checkpoints").glob("*.pth")))}}))
    """

    run = run_kernel(script, time="15min", memory="4GiB")

    assert run.report.verdict == "ok", run.explain()
    after = json.loads((tmp_path / "sandbox-kernel-0/after.json").read_text())
    assert after["stopped"]
    assert after["epochs"] < 999
    assert after["remaining"] >= after["reserve"]
    assert after["checkpoints"] >= 1
    assert read_status(run.report.working_dir)["status"] == "needs-resume"


def test_predicting_with_a_deadline_attached_is_not_a_fit(images, tmp_path, fake_clock):
    kernel = _kernel(tmp_path, fake_clock)
    learn = make_learner("tiny", images)
    deadline = Deadline(every=10**6, reserve=0, safety=0, kernel=kernel)
    learn.add_cb(deadline)
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-2)
        files_after_fit = sorted(p.name for p in (tmp_path / "working/checkpoints").iterdir())
        learn.get_preds(dl=learn.dls.test_dl(images[:4]))
        learn.validate()
        learn.fit(1, 1e-2)  # a second fit is the next stage

    assert sorted(p.name for p in (tmp_path / "working/checkpoints").iterdir())[:2] == files_after_fit[:2]
    assert deadline.stage == 1
    assert read_status(tmp_path / "working")["status"] == "trained"


def test_with_dataloader_workers_the_resumed_loss_curve_matches(images, tmp_path, fake_clock):
    def train(root, clockwork=None):
        learn = make_learner(
            "tiny", images, num_workers=2
        )  # deterministic item transforms: workers' seeds don't matter
        deadline = Deadline(every=10**6, reserve=0, safety=0, kernel=_kernel(root, fake_clock))
        with learn.no_bar(), learn.no_logging():
            learn.fit_one_cycle(3, 1e-2, cbs=[deadline, *([clockwork] if clockwork else [])])
        return learn

    reference = train(tmp_path / "reference")
    train(tmp_path / "run", Clockwork(fake_clock, jump_after_batch=7))
    fake_clock.now += 10**8
    resumed = train(tmp_path / "run")

    expected, got = torch.stack(reference.recorder.losses), torch.stack(resumed.recorder.losses)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)


class StopAfterFirstEpoch(Callback):
    """What EarlyStoppingCallback does when it gives up: cancel the fit after an epoch."""

    order = 70  # after Deadline's own epoch-end work

    def after_epoch(self):
        from fastai.callback.core import CancelFitException

        raise CancelFitException()


def test_a_fit_ended_by_early_stopping_counts_as_finished(images, tmp_path, fake_clock):
    _, deadline = _train(images, tmp_path, fake_clock, clockwork=StopAfterFirstEpoch())
    status_after_first = read_status(tmp_path / "working")["status"]
    counter = Clockwork(fake_clock)

    _, again = _train(images, tmp_path, fake_clock, clockwork=counter)

    assert deadline.finished
    assert status_after_first == "trained"
    assert again.finished
    assert counter.batches == 0
    assert read_status(tmp_path / "working")["status"] == "trained"  # a skipped, finished fit stays finished


class Crash(Callback):
    """Raises `error` after the `at`-th training batch, as an OOM or a Ctrl-C in a notebook would."""

    def __init__(self, error, at):
        self.error, self.at, self.batches = error, at, 0

    def after_batch(self):
        if self.training:
            self.batches += 1
            if self.batches == self.at:
                raise self.error


def _loader_state(learn):
    """The training DataLoader's own attributes (not those fastai's iteration sets) and the callbacks' kinds.

    (``no_bar()`` gives the learner a new ProgressCallback, so callbacks compare by kind, not identity.)
    """
    own = {k: id(v) for k, v in learn.dls.train.__dict__.items() if k not in ("rng", "it", "_DataLoader__idxs")}
    return own, sorted(type(cb).__name__ for cb in learn.cbs)


@pytest.mark.parametrize("error", [RuntimeError("CUDA out of memory"), KeyboardInterrupt()], ids=["oom", "ctrl-c"])
@pytest.mark.parametrize("resumed", [False, True], ids=["fresh", "resumed-mid-epoch"])
def test_a_fit_that_raises_leaves_the_learner_as_it_was(error, resumed, images, tmp_path, fake_clock):
    root = tmp_path / "run"
    if resumed:  # a checkpoint mid-epoch 1, so the crashing fit replays the rest of that epoch's order
        _train(images, root, fake_clock, clockwork=Clockwork(fake_clock, jump_after_batch=7))
        fake_clock.now += 10**8
    learn = make_learner("tiny", images, augment=True)
    learn.add_cb(Deadline(every=10**6, reserve=0, safety=0, kernel=_kernel(root, fake_clock)))
    before = _loader_state(learn)

    with learn.no_bar(), learn.no_logging(), pytest.raises(type(error)):
        learn.fit_one_cycle(3, 1e-2, cbs=Crash(error, at=2))

    assert _loader_state(learn) == before
    fresh = make_learner("tiny", images, augment=True)
    start = {k: v.clone() for k, v in fresh.model.state_dict().items()}
    for each in (learn, fresh):  # from the same weights and seeds, the crashed learner trains as a fresh one does
        each.remove_cbs([cb for cb in each.cbs if isinstance(cb, Deadline)])
        each.model.load_state_dict(start)
        each.opt = None
        set_seed(1)
        each.dls.train.rng.seed(1)
        with each.no_bar(), each.no_logging():
            each.fit(1, 1e-2)
    assert _same_weights(learn, fresh)


@pytest.mark.parametrize(("setting", "message"), [
    ({"every": float("nan")}, "give a duration"), ({"every": -1}, "give a duration"),
    ({"safety": float("inf")}, "give a duration"), ({"every": "30"}, r"every='30'\) is not a duration: say the unit"),
    ({"reserve": "20"}, "say the unit"),
])  # fmt: skip
def test_a_deadline_period_that_is_not_a_duration_is_refused(setting, message, tmp_path):
    from kaggle_kit.errors import KaggleKitError

    with pytest.raises(KaggleKitError, match=message):
        Deadline(**setting, kernel=Kernel(tmp_path))


def test_deadline_times_say_their_unit_or_are_minutes(tmp_path):
    named = Deadline(every="90s", reserve="2min", safety="30s", kernel=Kernel(tmp_path))
    minutes = Deadline(every=1.5, reserve=2, safety=0.5, kernel=Kernel(tmp_path))
    for deadline in (named, minutes):
        assert (deadline.every_s, deadline.safety_s, deadline._reserve_s()) == (90.0, 30.0, 120.0)


def test_a_finished_stage_found_in_an_attached_output_travels_on_in_this_kernels_output(images, tmp_path, fake_clock):
    """Run 2 of a chain only predicts (training was finished in run 1's output, attached); run 3 attaches run 2's
    output alone, and must find the finished model there instead of training from scratch."""
    trained, _ = _train(images, tmp_path / "run1", fake_clock)
    for before, run in (("run1", "run2"), ("run2", "run3")):
        (tmp_path / run / "input/notebooks/tester").mkdir(parents=True)
        (tmp_path / run / "input/notebooks/tester/kernel").symlink_to(tmp_path / before / "working")
        learn, deadline = _train(images, tmp_path / run, fake_clock)

        assert deadline.finished
        assert deadline.saves == 0  # no batch trained
        assert _same_weights(learn, trained)
        assert list((tmp_path / run / "working/checkpoints").glob("ckpt-*.pth")), run


class CpuScaler(Callback):
    """A real GradScaler on the CPU (fastai's MixedPrecision disables its own there), created as MixedPrecision
    creates it (before the fit, before the Deadline looks), whose scale moves with every step."""

    order = 10

    def before_fit(self):
        self.learn.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        self.learn.scaler.scale(torch.ones(()))  # its scale exists from here on

    def after_step(self):
        self.learn.scaler.update(self.learn.scaler.get_scale() * 1.5)


def test_a_resumed_fit_goes_on_with_the_grad_scalers_moved_scale(images, tmp_path, fake_clock):
    def scaled(learn):
        learn.add_cb(CpuScaler())

    reference, _ = _train(images, tmp_path / "reference", fake_clock, change=scaled)
    _train(images, tmp_path / "run", fake_clock, change=scaled, clockwork=Clockwork(fake_clock, jump_after_batch=7))
    fake_clock.now += 10**8
    resumed, deadline = _train(images, tmp_path / "run", fake_clock, change=scaled)

    assert deadline.finished
    assert reference.scaler.get_scale() > 1024.0 * 1.5**7  # it moved at every step
    assert resumed.scaler.get_scale() == reference.scaler.get_scale()  # not 1024 again at the resume
    assert _same_weights(reference, resumed)
