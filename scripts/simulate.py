"""HSRS phantom simulator with exact ground truth: ``python -m scripts.simulate --out DIR --num N --seed S``.

Each phantom is a field of view of exfoliated cells imaged by hyperspectral SRS in the C–H
window. The ground-truth label map (0 background, 1 nucleus, 2 lipid droplet) is rasterised from
the geometry *before* any blur or noise; the stack is then built from physics, in this order
(every effect, its parameter range per difficulty preset and the source of the numbers are
documented in ``docs/simulation.md``):

1. geometry: irregular cells alone and in touching clusters, one nucleus per cell (with nucleoli),
   lipid droplets (LDs) 1–12 px across in the cytoplasm (some cells none), out-of-focus LDs,
   debris, granular cytoplasm texture;
2. concentration maps of lipid, protein, DNA and water, blurred by the optical PSF;
3. spectra: reference Raman spectra (:mod:`scripts.spectra.reference`) broadened by the spectral
   resolution and shifted by a small calibration error, mixed linearly per pixel;
4. non-Raman background (cross-phase modulation, two-photon absorption), strongest at the
   low-delay end of the frame axis, towards the field edges and at object edges;
5. per-frame laser power drift, detector offset;
6. noise: shot noise of the probe beam (signal independent), laser intensity noise (proportional
   to the signal) and read noise, over a range of SNR.

The same seed gives the same bytes. Output: ``DIR/images/<stem>``, ``DIR/labels/<stem>``,
``DIR/instances/<stem>.tif`` (cell, nucleus and lipid-droplet instance maps) and a MONAI datalist
``DIR/datalist.json`` (``training``/``validation``/``test``), plus ``DIR/simulation.json`` with
every phantom's sampled parameters (SNR, background level ...).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from scripts.simulation.dataset import simulate_dataset
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
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default", help="difficulty preset")
    parser.add_argument("--format", choices=["nii.gz", "tif", "npy"], default="nii.gz", dest="file_format")
    parser.add_argument("--dtype", choices=["float32", "uint16"], default="float32")
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
