"""Adapting the shipped weights to a user's own unlabelled stacks (``configs/adapt.yaml``).

- :mod:`scripts.adapt.split` -- which stacks are adapted on and which are held out for model selection.
- :mod:`scripts.adapt.pseudo_labels` -- pseudo-labels from the network's confident pixels and/or the
  phasor, with a mask of the pixels used; agreement (Dice) between label maps.
- :mod:`scripts.adapt.transforms` -- training transform setting unmasked pixels to the ignore value.
- :mod:`scripts.adapt.loss` -- ``configs/train.yaml``'s Dice + cross-entropy with ignored pixels left out.
- :mod:`scripts.adapt.job` -- :class:`~scripts.adapt.job.AdaptationJob`: the workflow, composed of
  ``configs/inference.yaml``, the phasor and ``configs/train.yaml``.
"""
