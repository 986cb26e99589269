"""What the workflow configs plug into MONAI's engines (pytorch-ignite): handlers, inferer, metric helpers.

- :mod:`scripts.engine.checkpoints` -- atomic resumable training checkpoints and best model; resume restores both.
- :mod:`scripts.engine.time_limit` -- stop training at an epoch boundary before a wall-time budget.
- :mod:`scripts.engine.inferers` -- the field-sized sliding-window inferer.
- :mod:`scripts.engine.metrics` -- per-class metric output transforms, segmentation scores, atomic metric reports.
- :mod:`scripts.engine.segmentation_writer` -- the handler that writes label maps, overlays and ``summary.csv``.
- :mod:`scripts.engine.user_errors` -- one line for a user error on the command line.
"""
