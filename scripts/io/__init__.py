"""Files on disk <-> arrays: everything that knows a file format.

- :mod:`scripts.io.formats` -- which format a path is, its stem, :class:`~scripts.io.formats.HSRSInputError`.
- :mod:`scripts.io.sidecar` -- wavenumber sidecar files next to a stack.
- :mod:`scripts.io.reader` -- :class:`~scripts.io.reader.HSRSReader` (MONAI ``ImageReader``) and ``read_hsrs``.
- :mod:`scripts.io.writer` -- atomic writes of stacks and label maps (NIfTI, TIFF, NumPy), output-folder check.
- :mod:`scripts.io.datalist` -- MONAI datalists and folder listings.
- :mod:`scripts.io.overlay` -- overlay pictures (PNG) of label maps on a stack.
"""
