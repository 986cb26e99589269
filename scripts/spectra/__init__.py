"""The spectral axis and its chemistry, shared by every stage (no file I/O).

- :mod:`scripts.spectra.axis` -- the canonical wavenumber grid, wavenumber-axis checks, the logged
  assumption for stacks without wavenumbers.
- :mod:`scripts.spectra.reference` -- reference C–H Raman spectra of lipid, protein, DNA and water.
"""
