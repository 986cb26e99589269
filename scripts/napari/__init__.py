"""The bundle in napari: an npe2 plugin (manifest ``napari.yaml``) to open, segment, inspect and correct HSRS stacks.

- :mod:`scripts.napari.layers` -- the reader and the writer: every stack format of the bundle as an image layer
  (spectral axis as a slider, wavenumbers and pixel size in the metadata and scale, the axis check's verdict);
  label layers to the bundle's TIFF / OME-Zarr label formats; the label layers of a result (class names, colours).
- :mod:`scripts.napari.segmentation` -- one stack through the inference workflow's own objects
  (``configs/inference.yaml``: preprocessing, network, inferer, post-processing, QC, per-cell readout; the
  mosaic path for large fields) or through the phasor, with progress and cancellation.
- :mod:`scripts.napari.phasor` -- the phasor of one stack kept between edits: histogram, cursors moved by hand,
  the label map again, the parameters saved for ``configs/phasor.yaml``.
- :mod:`scripts.napari.corrections` -- corrected label maps into a datalist folder (split kept) and the
  fine-tuning run of ``configs/train.yaml`` on it, with its progress.
- :mod:`scripts.napari.widgets` -- the Qt dock widgets (segment, phasor, corrections); the only module that
  needs Qt and napari at import time.

Everything but :mod:`scripts.napari.widgets` imports without Qt; napari is imported inside the functions that
make layers for it. Install: ``pip install -e ".[napari]"`` (``docs/napari.md``).
"""
