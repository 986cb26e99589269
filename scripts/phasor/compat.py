"""Where phasorpy keeps its phasor filters: one import for phasorpy 0.7 and 0.8+.

phasorpy 0.7 (the last release for Python 3.11) defines :func:`phasor_filter_median` and
:func:`phasor_threshold` in ``phasorpy.phasor``; 0.8 moved them to ``phasorpy.filter``. Import
them from here::

    from scripts.phasor.compat import phasor_filter_median, phasor_threshold

Everything else the bundle uses (``phasorpy.phasor.phasor_from_signal`` and
``phasor_transform``, ``phasorpy.cluster``, ``phasorpy.component``, ``phasorpy.cursor``,
``phasorpy.plot``) lives in the same place in both versions.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

#: Modules searched in order: the new home first, so 0.8+ never reaches a deprecated alias.
FILTER_MODULES: tuple[str, ...] = ("phasorpy.filter", "phasorpy.phasor")


def import_phasor_filters(modules: Sequence[str] = FILTER_MODULES) -> tuple[Callable, Callable]:
    """Return ``(phasor_filter_median, phasor_threshold)`` from the first module that defines both.

    Parameters
    ----------
    modules : sequence of str
        Module names to try in order (default :data:`FILTER_MODULES`).

    Returns
    -------
    tuple of callable
        ``phasor_filter_median`` and ``phasor_threshold``.

    Raises
    ------
    ImportError
        If no module in ``modules`` can be imported and defines both functions.

    Examples
    --------
    >>> median, threshold = import_phasor_filters()
    >>> median.__name__, threshold.__name__
    ('phasor_filter_median', 'phasor_threshold')
    """
    tried = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            tried.append(f"{name} ({e})")
            continue
        median = getattr(module, "phasor_filter_median", None)
        threshold = getattr(module, "phasor_threshold", None)
        if callable(median) and callable(threshold):
            return median, threshold
        tried.append(f"{name} (no phasor_filter_median/phasor_threshold)")
    raise ImportError(
        "cannot find phasorpy's phasor filters; tried " + ", ".join(tried) + ". Install phasorpy>=0.7 "
        "(`pip install -r requirements.txt`)."
    )


phasor_filter_median, phasor_threshold = import_phasor_filters()

__all__ = ["FILTER_MODULES", "import_phasor_filters", "phasor_filter_median", "phasor_threshold"]
