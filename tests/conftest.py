"""Test-wide settings: strict dtype promotion is not forced globally (Flax internals), but float64 stays off."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
