"""Test-wide settings: CPU only, and a persistent XLA compilation cache shared by the whole session.

Many tests compile the same small programs (the same model/task/step); the cache lets later tests reuse them.
"""

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

_CACHE_DIR = os.environ.get("LRD_TEST_JAX_CACHE") or os.path.join(tempfile.gettempdir(), "lrd-test-jax-cache")
jax.config.update("jax_compilation_cache_dir", _CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.3)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
