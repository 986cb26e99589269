"""HSRS sub-cellular segmentation bundle: the Python package referenced from ``configs/``.

Modules (one concept each):

- :mod:`scripts.spectral_axis` -- the canonical wavenumber grid and wavenumber-axis checks.
- :mod:`scripts.raman_spectra` -- reference C–H Raman spectra (lipid, protein, DNA, water).
- :mod:`scripts.reader` -- :class:`~scripts.reader.HSRSReader`, a MONAI ``ImageReader`` for HSRS stacks.
- :mod:`scripts.writer` -- writing HSRS stacks and label maps (NIfTI, TIFF, NumPy).
- :mod:`scripts.transforms` -- spectral transforms and augmentations (array + dictionary versions).
- :mod:`scripts.simulate` -- HSRS phantom simulator with exact ground truth.
- :mod:`scripts.phasor` -- the optimized spectral phasor segmenter (parameters, segmenter, CLI);
  :mod:`scripts.phasor_fit` (parameter search), :mod:`scripts.phasor_job` (folder runs, pseudo-labels),
  :mod:`scripts.phasor_plot`, :mod:`scripts.phasor_background`, :mod:`scripts.phasor_compat` (phasorpy 0.7/0.8).
- :mod:`scripts.networks` -- the hybrid-UNet and the baselines.
- :mod:`scripts.datalist`, :mod:`scripts.checks`, :mod:`scripts.metrics`, :mod:`scripts.checkpoints`,
  :mod:`scripts.outputs` -- pieces the workflow configs wire together.
- :mod:`scripts.benchmark` -- the benchmark that writes ``docs/results.md``.
"""

__version__ = "0.1.0"
