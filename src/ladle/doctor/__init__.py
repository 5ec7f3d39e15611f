"""``ladle doctor``: run your loader briefly under a few settings and say what bounds it.

:func:`diagnose` takes a factory returning a :class:`ladle.DataLoader` (or the loader itself),
runs it under a small sweep of ``num_workers``, ``worker_type``, ``prefetch_factor`` and batch
sizes, and returns a :class:`Diagnosis`: each setting's throughput, peak memory of the process
tree and stats, the stage that bounds throughput, and the recommended setting as code; a plot
of throughput and memory against the worker count and the batch size on request. The command
``ladle doctor script.py`` does the same for a script's ``make_loader``.
"""

from __future__ import annotations

from ladle.doctor.diagnosis import Diagnosis
from ladle.doctor.sweep import diagnose
from ladle.doctor.trial import Setting, Trial

__all__ = ["Diagnosis", "Setting", "Trial", "diagnose"]
