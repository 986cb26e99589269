"""Benchmark sections. Each module here measures one thing and returns a :class:`SectionResult`.

A section module defines ``TITLE`` (the Markdown heading) and ``run(quick: bool) -> SectionResult``.
:mod:`scripts.benchmark` runs the requested sections and writes each into its own delimited block
of ``docs/results.md`` (other sections are kept as they were) and into ``docs/results.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SECTIONS = (
    "simulator",
    "model_cost",
    "phasor",
    "workflows",
    "throughput",
    "comparison",
    "recipes",
    "instruments",
    "cells",
    "axis",
    "envelope",
    "shipped",
    "qc",
    "onnx_runtime",
    "adaptation",
)


@dataclass
class SectionResult:
    """What one benchmark section measured.

    Attributes:
        markdown: the section body (tables, notes) without its heading.
        data: the same numbers, machine-readable (JSON-serialisable).
        model_card: optional summary for the performance block of the model card (``docs/README.md``),
            written only by a full run into the repository's ``docs/results.md``.
    """

    markdown: str
    data: dict = field(default_factory=dict)
    model_card: str = ""


def markdown_table(header: list[str], rows: list[list]) -> str:
    """Render ``rows`` under ``header`` as a GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def mean_sd(values) -> dict:
    """``{"mean", "sd", "n"}`` of the defined values (None and NaN left out; NaNs and n = 0 when none is)."""
    import numpy as np

    v = [x for x in values if x is not None and not math.isnan(x)]
    if not v:
        return {"mean": math.nan, "sd": math.nan, "n": 0}
    return {"mean": float(np.mean(v)), "sd": float(np.std(v)), "n": len(v)}
