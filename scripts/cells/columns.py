"""The columns of the per-cell table and of the per-image summary: name -> (unit, description).

These two dictionaries are the single definition of both tables: the CSV headers follow their
order and :func:`columns_markdown` renders them for the documentation.
"""

from __future__ import annotations

#: One row per cell per stack.
CELL_COLUMNS: dict[str, tuple[str, str]] = {
    "stack": ("", "stem of the stack's file name"),
    "cell_id": ("", "id of the cell in the instance maps (cells channel; its nucleus has the same id)"),
    "centroid_y": ("px", "row of the cell's centroid"),
    "centroid_x": ("px", "column of the cell's centroid"),
    "touches_border": (
        "true/false",
        "the cell reaches the image edge, so it is cut and its areas and counts are partial",
    ),
    "has_nucleus": (
        "true/false",
        "the cell holds a nucleus; false: a foreground blob without a visible nucleus, made a cell of its own",
    ),
    "cell_area_px": ("px", "area of the cell, nucleus and lipid droplets included"),
    "cell_area_um2": ("µm²", "area of the cell"),
    "nucleus_area_px": ("px", "area of the cell's nucleus (0 without nucleus)"),
    "nucleus_area_um2": ("µm²", "area of the cell's nucleus"),
    "cytoplasm_area_px": ("px", "cell area minus nucleus area (lipid droplets included)"),
    "cytoplasm_area_um2": ("µm²", "cytoplasm area"),
    "n_c_ratio": ("", "nucleus area / cytoplasm area; empty without nucleus or without cytoplasm"),
    "droplet_count": (
        "count",
        "lipid droplets assigned to the cell (each droplet to the cell holding most of its pixels)",
    ),
    "droplet_total_area_px": ("px", "total area of the cell's lipid droplets"),
    "droplet_total_area_um2": ("µm²", "total area of the cell's lipid droplets"),
    "droplet_mean_area_px": ("px", "mean area of the cell's lipid droplets; empty without droplets"),
    "droplet_mean_area_um2": ("µm²", "mean area of the cell's lipid droplets; empty without droplets"),
    "droplet_mean_diameter_um": (
        "µm",
        "mean equivalent diameter (of the disk of the same area) of the cell's lipid droplets; empty without droplets",
    ),
    "droplet_area_fraction": ("", "total droplet area / cytoplasm area; empty without cytoplasm"),
    "lipid_to_protein_cell": (
        "",
        "CH₂ (2850 ± 15 cm⁻¹) / CH₃ (2930 ± 15 cm⁻¹) band integral of the background-corrected spectra summed over the cell",
    ),
    "lipid_to_protein_cytoplasm": (
        "",
        "the same ratio over the cytoplasm (cell minus nucleus, droplets included); empty when there is none",
    ),
    "lipid_to_protein_droplets": ("", "the same ratio over the cell's lipid droplets; empty without droplets"),
}

#: Per-cell values averaged in the per-image summary (mean and median over complete cells).
AGGREGATED = (
    "cell_area_um2",
    "nucleus_area_um2",
    "cytoplasm_area_um2",
    "n_c_ratio",
    "droplet_count",
    "droplet_total_area_um2",
    "droplet_mean_diameter_um",
    "droplet_area_fraction",
    "lipid_to_protein_cell",
    "lipid_to_protein_cytoplasm",
    "lipid_to_protein_droplets",
)

#: One row per stack.
IMAGE_COLUMNS: dict[str, tuple[str, str]] = {
    "stack": ("", "stem of the stack's file name"),
    "height_px": ("px", "image height"),
    "width_px": ("px", "image width"),
    "pixel_size_um": ("µm", "lateral pixel size"),
    "foreground_source": (
        "",
        "'intensity': Otsu threshold of the mean image joined with the labels; "
        "'labels': intensity contrast too low (empty or noise-only field), labelled pixels only",
    ),
    "background_source": (
        "",
        "pixels whose mean spectrum was subtracted: 'outside foreground', or 'dimmest pixels' when the foreground fills the field",
    ),
    "foreground_area_um2": ("µm²", "area of the foreground (cells, debris, labelled pixels)"),
    "cells": ("count", "cells, all rows of the per-cell table for this stack"),
    "complete_cells": ("count", "cells not touching the image edge; the means and medians below are over these"),
    "cells_with_nucleus": ("count", "cells holding a nucleus"),
    "cells_without_nucleus": ("count", "foreground blobs without nucleus made cells (flagged has_nucleus false)"),
    "cells_touching_border": ("count", "cells reaching the image edge"),
    "droplets": ("count", "lipid droplets in the field"),
    "droplets_outside_cells": ("count", "lipid droplets assigned to no cell"),
    **{
        f"{stat}_{name}": (CELL_COLUMNS[name][0], f"{stat} of {name} over complete cells; empty when there is none")
        for name in AGGREGATED
        for stat in ("mean", "median")
    },
}


def columns_markdown(columns: dict[str, tuple[str, str]]) -> str:
    """A Markdown table (column, unit, meaning) of ``columns``, for the documentation."""
    lines = ["| column | unit | meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | {unit} | {text} |" for name, (unit, text) in columns.items()]
    return "\n".join(lines) + "\n"
