"""scripts.engine.user_errors: a user error ends a command line with one line and status 2; a bug keeps its traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from ignite.engine import Engine
from scripts.engine.user_errors import UserErrorHandler, print_user_error
from scripts.io.errors import HSRSInputError, HSRSOutputError

from tests.conftest import REPO

PROGRAM = """
import sys
from scripts.engine import user_errors
from scripts.io.errors import HSRSInputError
user_errors.install()
print("working ...", flush=True)
try:
    raise {inner}
except Exception as e:
    raise RuntimeError("Failed to evaluate ConfigExpression: '$@evaluator.run()'") from e
"""


def _run(inner: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM.format(inner=inner)], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_a_wrapped_user_error_is_one_line_and_status_2():
    result = _run('HSRSInputError("/data/a.nii.gz: every pixel of every frame is 0")')
    assert result.returncode == 2
    assert result.stderr == "error: /data/a.nii.gz: every pixel of every frame is 0\n"
    assert result.stdout == "working ...\n"


def test_any_other_error_keeps_its_traceback():
    result = _run('KeyError("a bug")')
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith("RuntimeError: Failed to evaluate ConfigExpression: '$@evaluator.run()'")


def test_a_dataloader_worker_traceback_is_cut_from_the_message(capsys):
    wrapped = HSRSInputError(
        "Caught HSRSInputError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1\nscripts.io.errors.HSRSInputError: /data/b.tif: cannot read this tiff file\n'
    )
    assert print_user_error(wrapped)
    assert capsys.readouterr().err == "error: /data/b.tif: cannot read this tiff file\n"


def test_the_engine_handler_reraises_user_errors_without_logging_and_logs_bugs(caplog):
    engine = Engine(lambda e, b: None)
    handler = UserErrorHandler()
    user = HSRSOutputError("/out/x.tif: cannot write this file (No space left on device)")
    with pytest.raises(HSRSOutputError):
        handler(engine, user)
    assert "Exception" not in caplog.text
    with pytest.raises(ZeroDivisionError):
        handler(engine, ZeroDivisionError("a bug"))
    assert "Exception: a bug" in caplog.text
