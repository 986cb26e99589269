"""The optimized spectral phasor: the paper's baseline and pseudo-label maker (``python -m scripts.phasor``).

- :mod:`scripts.phasor.parameters` -- :class:`~scripts.phasor.parameters.PhasorParameters`, every tunable.
- :mod:`scripts.phasor.cursors` -- reference phasors and the per-image cursor placement.
- :mod:`scripts.phasor.background` -- cell-free mask and background-surface removal.
- :mod:`scripts.phasor.refine` -- optional spatial refinement (Phasor-MRF style: per-class models + Potts prior, ICM).
- :mod:`scripts.phasor.compat` -- phasorpy 0.7 / ≥ 0.8 function locations.
- :mod:`scripts.phasor.segmenter` -- :class:`~scripts.phasor.segmenter.PhasorSegmenter` (the method, step by step).
- :mod:`scripts.phasor.fit` -- the reproducible parameter search on labelled stacks.
- :mod:`scripts.phasor.plot` -- the phasor plot of one result.
- :mod:`scripts.phasor.job` -- folders of stacks: label maps, plots, statistics, pseudo-label datalist.
"""
