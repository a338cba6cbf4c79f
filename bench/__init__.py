"""The benchmark: the seed's latency study for torch-eager, torch-compile, jax-jit and jax-eager,
with training steps, whole networks, and every ratio with a paired bootstrap confidence interval.

Run it with ``python -m bench``; see :mod:`bench.__main__` for the flags. A suite is data
(:mod:`bench.suites`), run by one runner (:mod:`bench.runner`); the statistics live in
:mod:`bench.stats`, the figures in :mod:`bench.plots`, the tables and findings in :mod:`bench.report`.
"""

from bench.backends import BACKENDS
from bench.suites import SUITES

__all__ = ["BACKENDS", "SUITES"]
