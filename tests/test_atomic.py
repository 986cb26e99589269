"""scripts.io.atomic: a failed or interrupted write leaves the previous file whole and says why in one line."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from scripts.io.atomic import atomic_path, remove_stale_temporaries
from scripts.io.errors import HSRSOutputError
from scripts.io.writer import write_label_map


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_keeps_the_previous_file_and_names_the_file(tmp_path, monkeypatch):
    target = tmp_path / "cell.tif"
    write_label_map(tmp_path / "cell", np.ones((8, 8), np.uint8), formats=("tif",))
    before = target.read_bytes()
    import tifffile

    monkeypatch.setattr(tifffile, "imwrite", _disk_full)
    with pytest.raises(
        HSRSOutputError, match=r"cell\.tif: cannot write this file \(No space left on device\); the disk is full"
    ):
        write_label_map(tmp_path / "cell", np.zeros((8, 8), np.uint8), formats=("tif",))
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell.tif"]  # no temporary file left


def test_a_failing_fsync_is_a_write_error_too(tmp_path, monkeypatch):
    (tmp_path / "t.csv").write_text("old\n")
    monkeypatch.setattr(os, "fsync", _disk_full)
    with pytest.raises(HSRSOutputError, match=r"t\.csv: cannot write"), atomic_path(tmp_path / "t.csv") as tmp:
        tmp.write_text("new\n")
    assert (tmp_path / "t.csv").read_text() == "old\n"


def test_output_folder_removed_during_the_run_is_a_clear_error(tmp_path):
    gone = tmp_path / "out"
    with pytest.raises(
        HSRSOutputError, match=r"out/x\.nii\.gz: cannot write this file: its folder .*out does not exist"
    ):
        write_label_map(gone / "x", np.zeros((4, 4), np.uint8), formats=("nii.gz",))


def test_an_exception_in_the_body_leaves_no_trace(tmp_path):
    (tmp_path / "a.json").write_text("{}")

    def write_half_then_fail():
        with atomic_path(tmp_path / "a.json") as tmp:
            tmp.write_text('{"half": ')
            raise KeyError("boom")

    with pytest.raises(KeyError):
        write_half_then_fail()
    assert (tmp_path / "a.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_stale_temporaries_of_a_killed_writer_are_removed_by_name(tmp_path):
    stale = tmp_path / ".checkpoint_epoch=3.pt.abc123.part.pt"
    other = tmp_path / ".model.pt.xyz.part.pt"
    for p in (stale, other):
        p.write_bytes(b"")
    assert remove_stale_temporaries(tmp_path, "checkpoint_epoch=3.pt") == [stale]
    assert sorted(Path(p).name for p in tmp_path.iterdir()) == [other.name]
