"""Files on disk <-> arrays: everything that knows a file format, and how files are written safely.

- :mod:`scripts.io.errors` -- the errors a user can cause (:class:`~scripts.io.errors.HSRSError` and subclasses).
- :mod:`scripts.io.formats` -- which format a path is, its stem.
- :mod:`scripts.io.sidecar` -- wavenumber sidecar files next to a stack.
- :mod:`scripts.io.reader` -- :class:`~scripts.io.reader.HSRSReader` (MONAI ``ImageReader``) and ``read_hsrs``.
- :mod:`scripts.io.headers` -- what a stack is from its header only (shape, wavenumbers, complete or cut short).
- :mod:`scripts.io.preflight` -- every input of a workflow checked before any work, all problems at once.
- :mod:`scripts.io.atomic` -- atomic, durable writes (temporary file, fsync, rename).
- :mod:`scripts.io.writer` -- atomic writes of stacks and label maps (NIfTI, TIFF, NumPy), output-folder check.
- :mod:`scripts.io.tables` -- per-stack CSV tables that never lose a row (file lock, merge by stem).
- :mod:`scripts.io.datalist` -- MONAI datalists and folder listings.
- :mod:`scripts.io.dataset` -- a dataset that skips the stacks it cannot load (``skip_errors``).
- :mod:`scripts.io.overlay` -- overlay pictures (PNG) of label maps on a stack.
"""
