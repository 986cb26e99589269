"""HSRS sub-cellular segmentation bundle: the Python package referenced from ``configs/``.

Modules (one concept each):

- :mod:`scripts.spectral_axis` -- the canonical wavenumber grid and wavenumber-axis checks.
- :mod:`scripts.raman_spectra` -- reference C–H Raman spectra (lipid, protein, DNA, water).
- :mod:`scripts.reader` -- :class:`~scripts.reader.HSRSReader`, a MONAI ``ImageReader`` for HSRS stacks.
- :mod:`scripts.writer` -- writing HSRS stacks and label maps (NIfTI, TIFF, NumPy).
- :mod:`scripts.transforms` -- spectral transforms and augmentations (array + dictionary versions).
- :mod:`scripts.simulate` -- HSRS phantom simulator with exact ground truth.
- :mod:`scripts.networks` -- the hybrid-UNet and the baselines.
- :mod:`scripts.benchmark` -- the benchmark that writes ``docs/results.md``.
"""

__version__ = "0.1.0"
