"""Sequence mixers, one file per family (a package per family of unrelated models, e.g. ``ssm/``).

Each module registers itself by name in :mod:`lrd.registry` (every module under this package is imported on the
first lookup) and subclasses a base of :mod:`lrd.cells.base`: :class:`~lrd.cells.base.RecurrentCell` (nonlinear,
``bptt_scan``), :class:`~lrd.cells.base.LinearRecurrentLayer` (linear, ``linear_scan``) or, without a recurrence,
their root :class:`~lrd.cells.base.Mixer`.
"""
