"""The benchmark: the seed's latency study for torch-eager, torch-compile and jax-jit.

Run it with ``python -m bench``; see :mod:`bench.__main__` for the flags.
"""

from bench.backends import BACKENDS
from bench.suites import SUITES

__all__ = ["BACKENDS", "SUITES"]
