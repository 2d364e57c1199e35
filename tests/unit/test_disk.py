"""Recognising a full disk (harness/disk.py): ENOSPC, a quota, a file-size limit."""

import errno
import resource
import subprocess
import sys

import pytest

from harness import disk
from harness.errors import OutputError


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
def test_out_of_space_errors_become_one_line_naming_the_directory(tmp_path, code):
    with pytest.raises(OutputError, match=rf"^no space left on device in {tmp_path}/accuracy: writing "
                                          r"predictions\.json failed"):
        with disk.full_disk_as_error(tmp_path):
            raise OSError(code, "No space left", str(tmp_path / "accuracy" / "predictions.json"))


def test_other_os_errors_pass_through(tmp_path):
    with pytest.raises(PermissionError):
        with disk.full_disk_as_error(tmp_path):
            raise PermissionError(errno.EACCES, "Permission denied")


def _small_files() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))


def test_a_file_size_limit_is_reported_as_no_space(tmp_path):
    # A real EFBIG: the limit applies to this child process (Python ignores SIGXFSZ, so writes fail).
    code = ("import sys; from pathlib import Path; from harness import environment\n"
            "try:\n    environment.write(Path(sys.argv[1]), {'x': 'y' * 1000})\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60,
                         preexec_fn=_small_files).stdout
    assert out.startswith(f"OutputError no space left on device in {tmp_path}: writing environment.json failed"), out
