"""The HSRS phantom simulator with exact ground truth (``python -m scripts.simulate``).

- :mod:`scripts.simulation.phantom` -- presets and :func:`~scripts.simulation.phantom.simulate_phantom`.
- :mod:`scripts.simulation.dataset` -- a folder of phantoms with its datalist split and ``simulation.json``.
"""
