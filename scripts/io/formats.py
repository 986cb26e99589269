"""File formats of HSRS stacks and label maps: which format a path is and its stem; HSRSInputError (from errors).

An OME-Zarr (``.ome.zarr`` / ``.zarr``) is a folder too, told from a folder of TIFF frames by its ending.
"""

from __future__ import annotations

from pathlib import Path

from scripts.io.errors import HSRSInputError

#: File endings of stacks and label maps, double endings first.
STACK_SUFFIXES: tuple[str, ...] = (
    ".nii.gz",
    ".nii",
    ".ome.tiff",
    ".ome.tif",
    ".tiff",
    ".tif",
    ".npy",
    ".ome.zarr",
    ".zarr",
)


NIFTI_SUFFIXES = (".nii", ".nii.gz")
TIFF_SUFFIXES = (".tif", ".tiff")
NUMPY_SUFFIXES = (".npy",)
ZARR_SUFFIXES = (".zarr",)
#: NIfTI header-extension code used for the JSON metadata (6 = "comment").
NIFTI_EXTENSION_CODE = 6


def stack_format(path: str | Path) -> str:
    """``"nifti"``, ``"tiff"``, ``"tiff_folder"``, ``"numpy"`` or ``"zarr"`` (OME-Zarr) from the path; raises for
    anything else."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith(ZARR_SUFFIXES):
        return "zarr"
    if p.is_dir():
        return "tiff_folder"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(TIFF_SUFFIXES):
        return "tiff"
    if name.endswith(NUMPY_SUFFIXES):
        return "numpy"
    raise HSRSInputError(
        f"{p}: unsupported file type; HSRS stacks are read from .nii/.nii.gz, .tif/.tiff, .npy, an OME-Zarr "
        "(.ome.zarr/.zarr folder) or a folder of single-page TIFF frames."
    )


def stack_stem(path: str | Path) -> str:
    """File name without its stack ending (``a/cell.nii.gz`` → ``cell``); a folder's name for a folder of frames.

    Examples:
        >>> stack_stem("a/cell_01.nii.gz"), stack_stem("a/cell_02.tif"), stack_stem("a/cell_03"), stack_stem("b.ome.zarr")
        ('cell_01', 'cell_02', 'cell_03', 'b')
    """
    name = Path(path).name
    for suffix in STACK_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
