"""``python -m scripts.io.ome_zarr SRC DST.ome.zarr [--chunk 512]``: rewrite a stack as an OME-Zarr chunked for mosaics.

Reads any stack the bundle reads in parts (:mod:`scripts.io.mosaic`) region by region and writes the
OME-Zarr chunk by chunk into a temporary folder renamed into place, so memory stays bounded and an
interrupted conversion leaves nothing under the target's name.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from scripts.io.formats import stack_stem
from scripts.io.mosaic import GIB, open_lazily
from scripts.io.ome_zarr import write_ome_zarr


def convert(source: str | Path, target: str | Path, chunk: int = 512, memory_gib: float = 4.0) -> Path:
    """Convert a stack the bundle reads in parts (see :mod:`scripts.io.mosaic`) into an OME-Zarr chunked for mosaics."""
    lazy = open_lazily(source, memory_gib * GIB)
    try:
        return write_ome_zarr(target, lazy, lazy.wavenumbers, lazy.pixel_size_um, chunk, dtype=lazy.dtype)
    finally:
        lazy.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.io.ome_zarr",
        description="Convert an HSRS stack into an OME-Zarr chunked for mosaics (read and written in bounded memory).",
    )
    parser.add_argument("source", help="stack: uncompressed .tif/.nii, .npy, tiled TIFF or OME-Zarr")
    parser.add_argument("target", help="the OME-Zarr folder to write, e.g. field.ome.zarr")
    parser.add_argument("--chunk", type=int, default=512, help="chunk side in px (all frames per chunk); default 512")
    parser.add_argument("--memory_gib", type=float, default=4.0, help="memory for a source that is read whole")
    args = parser.parse_args(argv)
    out = convert(args.source, args.target, args.chunk, args.memory_gib)
    print(f"{args.source} -> {out} ({stack_stem(out)}: chunks of {args.chunk}×{args.chunk} px × all frames)")


if __name__ == "__main__":
    main()
