"""Command line of the HSRS phantom simulator: ``python -m scripts.simulate --out DIR --num N --seed S``.

Writes ``DIR/images/<stem>``, ``DIR/labels/<stem>``, ``DIR/instances/<stem>.tif`` and ``DIR/datalist.json``
(``training``/``validation``/``test``), plus ``DIR/simulation.json``; the same seed gives the same bytes.
The physics: :mod:`scripts.simulation.phantom` and ``docs/simulation.md``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from scripts.simulation.dataset import DTYPES, simulate_dataset
from scripts.simulation.phantom import PRESETS
from scripts.spectra.axis import CANONICAL_NUM_FRAMES, CANONICAL_RANGE

logger = logging.getLogger(__name__)

Range = tuple[float, float]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.simulate", description="Simulate HSRS phantoms with exact ground-truth label maps."
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (images/, labels/, datalist.json)")
    parser.add_argument("--num", type=int, required=True, help="number of stacks")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    parser.add_argument(
        "--size", type=int, nargs="+", default=[512], metavar="PX", help="H [W] in pixels (default 512)"
    )
    parser.add_argument("--frames", type=int, default=CANONICAL_NUM_FRAMES, help="spectral frames K (default 64)")
    parser.add_argument(
        "--wavenumber-range",
        type=float,
        nargs=2,
        default=list(CANONICAL_RANGE),
        metavar=("FIRST", "LAST"),
        help="Raman shift of the first and last frame, cm⁻¹ (give it high-to-low for descending stacks)",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="default",
        help="difficulty (easy, default, hard), a tissue section (tissue) or the training mix "
        "(randomized: cells, tissue and organisms, every instrument effect) or raw spectral-focusing data "
        "(raw_spectral_focusing: pulse-overlap envelope, 8-bit, no wavenumbers)",
    )
    parser.add_argument("--format", choices=["nii.gz", "tif", "npy"], default="nii.gz", dest="file_format")
    parser.add_argument(
        "--dtype",
        choices=list(DTYPES),
        default="float32",
        help="float32 (simulator units), uint16 (x2000) or native (a digitised stack's own integer levels, "
        "e.g. uint8 for the 8-bit raw_spectral_focusing preset)",
    )
    parser.add_argument("--pixel-size", type=float, default=0.25, help="pixel size in µm (default 0.25)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing images/labels in --out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    height, width = (args.size * 2)[:2]
    t0 = time.perf_counter()
    datalist = simulate_dataset(
        args.out,
        args.num,
        args.seed,
        height,
        width,
        args.frames,
        args.wavenumber_range,
        args.preset,
        args.file_format,
        args.dtype,
        args.pixel_size,
        args.overwrite,
    )
    sizes = {k: len(v) for k, v in datalist.items()}
    print(f"wrote {args.num} stacks to {args.out} in {time.perf_counter() - t0:.1f} s; split {sizes}")


if __name__ == "__main__":
    main()
