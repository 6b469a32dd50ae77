"""Sequence mixers, one file per family. Each registers its modules by name in :mod:`lrd.registry`."""
