from kaggle_kit.status import mark_done, read_status, write_status


def test_mark_done_keeps_the_training_details(tmp_path):
    write_status(tmp_path, "trained", stage=1, epoch=3, iteration=10)

    mark_done(tmp_path, submission="submission.csv")

    status = read_status(tmp_path)
    assert (status["status"], status["stage"], status["epoch"], status["submission"]) == (
        "done",
        1,
        3,
        "submission.csv",
    )


def test_no_status_file_reads_as_none(tmp_path):
    assert read_status(tmp_path) is None


def test_a_status_file_that_is_not_an_object_reads_as_none_and_mark_done_replaces_it(tmp_path):
    from kaggle_kit.status import STATUS_NAME

    (tmp_path / STATUS_NAME).write_text("[1, 2]")

    assert read_status(tmp_path) is None
    mark_done(tmp_path, epoch=3)
    assert read_status(tmp_path)["status"] == "done"
    assert read_status(tmp_path)["epoch"] == 3


def test_mark_done_keeps_needs_resume_unless_told(tmp_path, caplog):
    write_status(tmp_path, "needs-resume", stage=0, epoch=2, iteration=5)

    mark_done(tmp_path, submission="submission.csv")

    assert read_status(tmp_path)["status"] == "needs-resume"
    assert "training stopped at stage/epoch/batch 0/2/5 to be resumed; the status stays needs-resume" in caplog.text
    mark_done(tmp_path, allow_unfinished=True)
    assert read_status(tmp_path)["status"] == "done"


def test_a_run_that_only_predicted_says_from_which_model_not_none_positions(tmp_path):
    from kaggle_kit.status import KernelStatus

    (tmp_path / "other").mkdir()
    mark_done(tmp_path, predicted_from="the attached model")
    mark_done(tmp_path / "other")

    predicted = KernelStatus.load(tmp_path).where()
    bare = KernelStatus.load(tmp_path / "other").where()

    assert predicted == "predicted from the attached model"
    assert bare == "no training position"


def test_a_named_training_says_which_model_its_position_belongs_to(tmp_path):
    from kaggle_kit.status import KernelStatus, write_status

    write_status(tmp_path, "needs-resume", stage=1, epoch=2, iteration=1, training="segmenter")
    (tmp_path / "plain").mkdir()
    write_status(tmp_path / "plain", "needs-resume", stage=0, epoch=1, iteration=3)

    assert KernelStatus.load(tmp_path).where() == "segmenter stage/epoch/batch 1/2/1"
    assert KernelStatus.load(tmp_path / "plain").where() == "stage/epoch/batch 0/1/3"


def test_every_status_a_run_writes_carries_that_runs_id_and_no_earlier_ones(tmp_path, monkeypatch):
    from kaggle_kit.status import RUN_ID_ENV, KernelStatus

    monkeypatch.setenv(RUN_ID_ENV, "run-1")
    write_status(tmp_path, "trained", stage=0, epoch=3, iteration=0)
    monkeypatch.setenv(RUN_ID_ENV, "run-2")  # the next run, the same working dir (or its output attached)
    mark_done(tmp_path)

    status = KernelStatus.load(tmp_path)
    assert status.run_id == "run-2"
    assert "run_id" not in status.extra
    monkeypatch.delenv(RUN_ID_ENV)  # outside a chain: no id, never the last one's
    mark_done(tmp_path)
    assert KernelStatus.load(tmp_path).run_id is None
