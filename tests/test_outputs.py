import tarfile
import zipfile

import pytest

from kaggle_kit.errors import OutputLimitError
from kaggle_kit.limits import KernelLimits
from kaggle_kit.outputs import OutputBudget


def _files(folder, n, size=10):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"f{i:03d}.bin").write_bytes(b"x" * size)


def test_usage_counts_files_and_bytes_in_subfolders(tmp_path):
    _files(tmp_path / "a", 3, size=100)
    _files(tmp_path / "a/b", 2, size=5)

    usage = OutputBudget(tmp_path, KernelLimits()).usage()

    assert (usage.files, usage.bytes) == (5, 310)


def test_files_left_is_the_limit_minus_what_is_there(tmp_path):
    _files(tmp_path, 7)
    budget = OutputBudget(tmp_path, KernelLimits(max_files=10))

    assert budget.files_left() == 3


def test_a_write_that_would_cross_the_file_limit_is_refused(tmp_path):
    _files(tmp_path, 9)
    budget = OutputBudget(tmp_path, KernelLimits(max_files=10))

    budget.check_new_files(1)
    with pytest.raises(OutputLimitError, match="would make 11 files .* over the kernel's limit of 10"):
        budget.check_new_files(2, what="predictions")


def test_pack_turns_a_folder_into_one_zip_and_removes_it(tmp_path):
    _files(tmp_path / "masks/sub", 30, size=50)
    budget = OutputBudget(tmp_path, KernelLimits(max_files=10))

    archive = budget.pack(tmp_path / "masks")

    assert archive == tmp_path / "masks.zip"
    assert budget.usage().files == 1
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist())[:2] == ["sub/f000.bin", "sub/f001.bin"]
        assert len(zf.namelist()) == 30


def test_pack_can_write_a_tarball_and_keep_the_folder(tmp_path):
    _files(tmp_path / "logs", 4)

    archive = OutputBudget(tmp_path).pack(tmp_path / "logs", tmp_path / "logs.tar.gz", remove=False)

    with tarfile.open(archive) as tar:
        assert len(tar.getnames()) == 4
    assert (tmp_path / "logs").is_dir()
