"""Reference statistics of the quality check from a training datalist: ``python -m scripts.qc``.

Runs every stack of the datalist's ``training`` list through the inference preprocessing, network
and inferer of ``configs/inference.yaml`` (the weights given), computes its QC features
(:mod:`scripts.qc.features`) and writes their medians and robust spreads, the threshold, the
datalist, the weights and their MD5, and this command to ``models/qc_reference.json``::

    python -m scripts.qc --datalist outputs/sim_default/datalist.json

Regenerate it whenever the weights are retrained (the inference logs a WARNING when the weights'
MD5 differs from the one recorded). ``--features_out`` also writes every stack's features (JSON).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from scripts.io.atomic import atomic_path
from scripts.io.datalist import load_datalist
from scripts.qc.reference import DEFAULT_THRESHOLD, build_reference, file_md5, save_reference
from scripts.qc.runner import BUNDLE_ROOT, FeatureRunner

logger = logging.getLogger("scripts.qc")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.qc", description="Reference statistics of the quality check from a training datalist."
    )
    parser.add_argument("--datalist", type=Path, required=True, help="MONAI datalist JSON (python -m scripts.simulate)")
    parser.add_argument("--key", default="training", help="list of the datalist to use (default: training)")
    parser.add_argument("--weights", type=Path, default=BUNDLE_ROOT / "models" / "model.pt", help="network weights")
    parser.add_argument("--config_file", type=Path, default=BUNDLE_ROOT / "configs" / "inference.yaml")
    parser.add_argument("--output", type=Path, default=BUNDLE_ROOT / "models" / "qc_reference.json")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="ood_score above which to flag")
    parser.add_argument("--tta", action="store_true", help="also record flip_disagreement (one more forward pass)")
    parser.add_argument("--max_stacks", type=int, default=0, help="use at most this many stacks (0: all)")
    parser.add_argument("--features_out", type=Path, default=None, help="also write every stack's features (JSON)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")

    items = load_datalist(args.datalist, args.key)
    items = items[: args.max_stacks] if args.max_stacks > 0 else items
    runner = FeatureRunner(args.config_file, args.weights, args.tta)
    rows, start = [], time.perf_counter()
    for n, item in enumerate(items, 1):
        result = runner(item["image"])
        rows.append({"image": str(item["image"]), **result})
        logger.info("%d/%d %s: %s", n, len(items), Path(item["image"]).name, result["features"])
    info = {
        "datalist": str(args.datalist),
        "key": args.key,
        "weights": args.weights.name,
        "weights_md5": file_md5(args.weights),
        "tta": args.tta,
        "command": "python -m scripts.qc " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    reference = build_reference([r["features"] for r in rows], args.threshold, info)
    save_reference(reference, args.output)
    if args.features_out:
        with atomic_path(args.features_out) as tmp:
            tmp.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    logger.info("%d stacks in %.0f s -> %s", len(rows), time.perf_counter() - start, args.output)


if __name__ == "__main__":
    main()
