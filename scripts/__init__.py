"""HSRS sub-cellular segmentation bundle: the Python package referenced from ``configs/``.

Subpackages follow the data flow, from a stack on disk to label maps and tables
(``docs/architecture.md`` draws it):

- :mod:`scripts.spectra` -- the spectral axis and its chemistry: canonical wavenumber grid, axis
  checks, reference C–H Raman spectra. No file I/O.
- :mod:`scripts.io` -- files: HSRS readers (a MONAI ``ImageReader``), writers of stacks and label
  maps, wavenumber sidecars, datalists, overlay pictures.
- :mod:`scripts.transforms` -- MONAI transforms on stacks: spectral resampling, background,
  normalisation, augmentations (array + dictionary versions), label-map checks.
- :mod:`scripts.networks` -- the hybrid-UNet, its blocks, and the baselines (pure ``nn.Module``).
- :mod:`scripts.engine` -- what the workflow configs plug into MONAI's engines: checkpoints,
  time limit, sliding-window inferer, metric helpers, the segmentation writer handler.
- :mod:`scripts.phasor` -- the optimized spectral phasor: parameters, cursors, segmenter,
  background, fit, folder job, plot (``python -m scripts.phasor``).
- :mod:`scripts.simulation` -- the HSRS phantom simulator with exact ground truth.
- :mod:`scripts.benchmarks` -- the sections of ``docs/results.md``.

Entry modules: ``python -m scripts.simulate`` (phantoms), ``python -m scripts.benchmark``
(tables), ``python -m scripts.phasor`` (phasor fit / segment).
"""

__version__ = "0.4.0"
