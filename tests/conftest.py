"""Hypothesis profiles: ``ci`` (the default, derandomised, fast) and ``thorough`` (local runs);
one JAX compilation cache for the session.

    HYPOTHESIS_PROFILE=thorough pytest tests/test_properties.py
"""

import atexit
import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings

# JAX's persistent compilation cache, in a folder of this session that every process it starts
# shares (the snippets' fork server, subprocesses; set before anything imports jax): the dozens of
# snippets and commands that build the same networks compile each initializer and step once,
# not once per process. A test that needs cold compiles sets its own folder, as the bench does.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="prcm-tests-jax-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ.update(JAX_COMPILATION_CACHE_DIR=_cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")

settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
