"""Hypothesis profiles: ``ci`` (the default, derandomised, fast) and ``thorough`` (local runs).

    HYPOTHESIS_PROFILE=thorough pytest tests/test_properties.py
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
