"""Atomic, durable file writes: a temporary file in the target folder, flushed to disk, renamed over the target.

A reader of the target (another process, the next run, a user) sees either the previous complete
file or the new complete file, never a partial one, whatever happens during the write: an
exception, a full disk, ``kill -9``, a power cut after the rename returned. The previous file is
replaced only by the rename, so it is never deleted before its successor is complete.

Writing fails with :class:`~scripts.io.errors.HSRSOutputError` naming the file (disk full, folder
removed during the run, no permission); nothing is changed at the target then.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from scripts.io.errors import HSRSError, HSRSOutputError

#: Tests only: seconds to pause before and after the body of every atomic write, so that a test
#: can kill a process while it is saving. Unset (the default) means no pause.
PAUSE_ENV = "HSRS_TEST_SAVE_PAUSE_S"

_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or choose another --output_dir",
    errno.EDQUOT: "the disk quota is used up: free some space or choose another --output_dir",
    errno.EFBIG: "the file is larger than this process may write (file-size limit): raise the limit or free space",
    errno.ENOENT: "the folder was removed or moved while the run was writing: restore it or choose another --output_dir",
    errno.EACCES: "no permission to write there: choose another --output_dir",
    errno.EPERM: "no permission to write there: choose another --output_dir",
    errno.EROFS: "the file system is read-only: choose another --output_dir",
}


def write_error(path: str | Path, error: OSError) -> HSRSOutputError:
    """An :class:`HSRSOutputError` for a failed write of ``path``, saying why and what to do."""
    hint = _HINTS.get(
        error.errno or -1, "is the disk full or the folder gone? check the free space and the output folder"
    )
    return HSRSOutputError(
        f"{path}: cannot write this file ({error.strerror or error}); {hint}. The file was left as it was."
    )


def fsync_folder(folder: str | Path) -> None:
    """Flush a folder's entries (a rename in it) to disk; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:  # some file systems cannot sync a folder; the rename is still atomic
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def commit_file(tmp: str | Path, path: str | Path) -> None:
    """Flush the complete file ``tmp`` to disk and rename it onto ``path`` (same folder), then flush the folder."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_folder(Path(path).parent)


def pause_for_tests() -> None:
    """Sleep ``$HSRS_TEST_SAVE_PAUSE_S`` seconds when that is set (tests that kill a process mid-save)."""
    pause = os.environ.get(PAUSE_ENV)
    if pause:
        time.sleep(float(pause))


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffixes); when the body succeeds, make it ``path`` durably.

    The body writes the complete file to the yielded path (any library, by name). On success the
    file is flushed to disk (fsync), renamed onto ``path`` and the folder is flushed. On any error
    the temporary file is removed and an existing ``path`` is left untouched; an ``OSError`` (disk
    full, folder removed, no permission) becomes :class:`~scripts.io.errors.HSRSOutputError` naming
    ``path``.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise HSRSOutputError(
            f"{path}: cannot write this file: its folder {path.parent} does not exist (removed or moved while the run "
            "was writing?); restore it or choose another --output_dir."
        )
    suffix = "".join(path.suffixes[-2:]) if path.name.lower().endswith(".nii.gz") else path.suffix
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + suffix, dir=path.parent)
    except OSError as e:
        raise write_error(path, e) from e
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    try:
        pause_for_tests()
        yield tmp_path
        pause_for_tests()
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        commit_file(tmp_path, path)
    except HSRSError:
        raise
    except OSError as e:
        raise write_error(path, e) from e
    finally:
        tmp_path.unlink(missing_ok=True)


def is_temporary(path: str | Path) -> bool:
    """True for the temporary files :func:`atomic_path` creates (left behind only when a process is killed)."""
    name = Path(path).name
    return name.startswith(".") and ".part" in name


def remove_stale_temporaries(folder: str | Path, target_name: str) -> list[Path]:
    """Remove temporary files of ``target_name`` left in ``folder`` by a killed writer; returns them.

    Only for folders with a single writer (a training's checkpoint folder): in a folder that two
    runs write at once, the other run's temporary file is live.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(f".{glob_escape(target_name)}.*.part*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def glob_escape(name: str) -> str:
    """``name`` with glob wildcards escaped (checkpoint names hold ``=`` and may hold ``[``)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
