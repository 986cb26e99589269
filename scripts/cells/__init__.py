"""Per-cell readout of HSRS stacks: cell, nucleus and lipid-droplet instances and a table per cell.

From a semantic label map (0 background, 1 nucleus, 2 lipid droplet — the network's or the
phasor's) and its stack, :func:`measure_cells` finds the instances and measures every cell (areas,
nucleus-to-cytoplasm ratio, lipid droplets, CH₂/CH₃ lipid-to-protein ratio) with whole-image label
sums. Modules, one concept each:

- :mod:`scripts.cells.instances` -- nuclei, cells and lipid droplets as instances.
- :mod:`scripts.cells.bands` -- Raman band integrals and the background they are corrected by.
- :mod:`scripts.cells.columns` -- the table columns: name -> (unit, description).
- :mod:`scripts.cells.measure` -- :func:`measure_cells`, the entry point.
- :mod:`scripts.cells.overlay` -- the overlay figure.
- :mod:`scripts.cells.writers` -- instance TIFF/NIfTI, overlay PNG and tables, written atomically
  (imported on its own: it loads the bundle's I/O stack).
- :mod:`scripts.cells.metrics` -- instance metrics for a benchmark (F1, panoptic quality,
  per-cell droplet errors).
- :mod:`scripts.cells.tables` -- ``cells.csv`` / ``cells_summary.csv`` updated stack by stack
  (a stack's rows replaced, other stacks' rows kept; locked, atomic).
- :mod:`scripts.cells.readout` -- :class:`~scripts.cells.readout.CellReadout`, the readout of one
  segmented stack as a workflow step: measure, write the files, update the tables.
- :mod:`scripts.cells.handler` -- the ignite handler that runs it in ``configs/inference.yaml``
  (``configs/phasor.yaml`` passes it to ``PhasorJob`` as ``post_step``).

Example::

    from scripts.cells import measure_cells
    from scripts.cells.writers import write_cell_outputs

    m = measure_cells(stack, wavenumbers, labels, pixel_size_um=0.25, stem="field_01")
    write_cell_outputs("outputs/cells", m)
"""

from scripts.cells.columns import CELL_COLUMNS, IMAGE_COLUMNS, columns_markdown
from scripts.cells.instances import CellInstances, InstanceParameters, segment_instances
from scripts.cells.measure import CellMeasurement, measure_cells
from scripts.cells.metrics import cell_droplet_errors, instance_f1, match_instances, panoptic_quality

__all__ = [
    "CELL_COLUMNS",
    "IMAGE_COLUMNS",
    "CellInstances",
    "CellMeasurement",
    "InstanceParameters",
    "cell_droplet_errors",
    "columns_markdown",
    "instance_f1",
    "match_instances",
    "measure_cells",
    "panoptic_quality",
    "segment_instances",
]
