"""File formats of HSRS stacks and label maps: which format a path is and its stem; HSRSInputError (from errors)."""

from __future__ import annotations

from pathlib import Path

from scripts.io.errors import HSRSInputError

#: File endings of stacks and label maps, double endings first.
STACK_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".npy")


NIFTI_SUFFIXES = (".nii", ".nii.gz")
TIFF_SUFFIXES = (".tif", ".tiff")
NUMPY_SUFFIXES = (".npy",)
#: NIfTI header-extension code used for the JSON metadata (6 = "comment").
NIFTI_EXTENSION_CODE = 6


def stack_format(path: str | Path) -> str:
    """``"nifti"``, ``"tiff"``, ``"tiff_folder"`` or ``"numpy"`` from the path; raises for anything else."""
    p = Path(path)
    if p.is_dir():
        return "tiff_folder"
    name = p.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(TIFF_SUFFIXES):
        return "tiff"
    if name.endswith(NUMPY_SUFFIXES):
        return "numpy"
    raise HSRSInputError(
        f"{p}: unsupported file type; HSRS stacks are read from .nii/.nii.gz, .tif/.tiff, .npy or a folder of "
        "single-page TIFF frames."
    )


def stack_stem(path: str | Path) -> str:
    """File name without its stack ending (``a/cell.nii.gz`` → ``cell``); a folder's name for a folder of frames.

    Examples:
        >>> stack_stem("a/cell_01.nii.gz"), stack_stem("a/cell_02.tif"), stack_stem("a/cell_03")
        ('cell_01', 'cell_02', 'cell_03')
    """
    name = Path(path).name
    for suffix in STACK_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
