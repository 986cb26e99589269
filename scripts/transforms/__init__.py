"""MONAI transforms for HSRS stacks (K, H, W): array versions and ``…d`` dictionary versions.

- :mod:`scripts.transforms.array` -- spectral resampling, background removal, normalisation, augmentations.
- :mod:`scripts.transforms.dictionary` -- their dictionary versions, referenced from the configs.
- :mod:`scripts.transforms.label_checks` -- :class:`~scripts.transforms.label_checks.CheckLabelMapd`.
"""
