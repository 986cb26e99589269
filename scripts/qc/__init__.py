"""Quality check per image: how far a stack lies from what the network was trained on, and why.

Issue 13, item 4. Every segmented stack gets an out-of-distribution score (``ood_score``), a flag
(``qc_flag``) and its reason (``qc_reason``) in ``summary.csv``, and a flagged stack one WARNING line
naming its file. The score combines

- **spectral features** of the raw stack (:mod:`scripts.qc.features`, computed by
  :class:`scripts.qc.transforms.QCSpectralFeaturesd` right after the reader): how well its foreground
  spectrum fits the lipid / protein / DNA / water references on the axis in use, the fitted shares,
  spectral contrast to noise, the share of saturated voxels, the non-Raman background relative to
  the Raman signal;
- **model features** of the network's output (:func:`scripts.qc.features.model_features`): mean
  softmax entropy, predicted nucleus and lipid-droplet area and, optionally (``qc_tta``), the
  disagreement between the labels of the image and of its mirror image;

each as a robust z-score against the same features of the training stacks
(:mod:`scripts.qc.reference`, ``models/qc_reference.json``, regenerated with ``python -m scripts.qc``).
:class:`scripts.qc.handler.QualityCheck` is the ignite handler of ``configs/inference.yaml``
(switch ``qc``).
"""
