"""The spectral axis and its chemistry, shared by every stage (no file I/O).

- :mod:`scripts.spectra.axis` -- the canonical wavenumber grid, wavenumber-axis checks, the logged
  assumption for stacks without wavenumbers.
- :mod:`scripts.spectra.reference` -- reference C–H Raman spectra of lipid, protein, DNA and water.
- :mod:`scripts.spectra.calibration` -- the spectral axis checked against chemistry: scan direction and
  calibration from a stack's own foreground spectrum, and what to do with stored or missing wavenumbers.
"""
