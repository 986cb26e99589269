"""Command line of the optimized spectral phasor: ``python -m scripts.phasor {fit,segment} ...``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from scripts.phasor.fit import DEFAULT_BUDGET, fit_command
from scripts.phasor.job import PhasorJob


def main(argv: list[str] | None = None) -> None:
    """``python -m scripts.phasor {fit,segment} ...``; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m scripts.phasor", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="tune PhasorParameters on a labelled datalist (maximise mean Dice)")
    fit.add_argument("--datalist", type=Path, required=True, help="MONAI datalist JSON with image and label paths")
    fit.add_argument("--split", default="training", help="datalist section to fit on (default: training)")
    fit.add_argument("--out", type=Path, required=True, help="parameters file to write (.yaml or .json)")
    fit.add_argument("--seed", type=int, default=0, help="seed of the search (default 0)")
    fit.add_argument("--budget", type=int, default=None, help="number of parameter sets to try")
    fit.add_argument("--start", type=Path, default=None, help="parameters file to start from (default: class defaults)")
    seg = sub.add_parser("segment", help="segment stacks and write label maps")
    seg.add_argument("stacks", type=Path, nargs="+", help="HSRS stacks (any format scripts.io.reader reads)")
    seg.add_argument("--out", type=Path, required=True, help="output folder")
    seg.add_argument("--parameters", type=Path, default=None, help="parameters file (default: the tuned defaults)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "fit":
            fit_command(
                args.datalist, args.split, args.out, args.seed, args.budget or DEFAULT_BUDGET, args.start, argv=argv
            )
        else:
            PhasorJob(args.stacks, args.out, parameters_file=args.parameters).run()
    except (OSError, ValueError, RuntimeError) as e:  # user errors: the message says what to do
        parser.exit(2, f"{parser.prog} {args.command}: error: {e}\n")


if __name__ == "__main__":
    main()
