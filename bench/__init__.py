"""The benchmark: the seed's latency study for torch-eager, torch-compile, jax-jit and jax-eager,
with training steps, whole networks, and every ratio with a confidence interval over several
processes.

Run it with ``python -m bench``; see :mod:`bench.__main__` for the commands. A pipeline:
suites are declarations (:mod:`bench.suites`, in the vocabulary of :mod:`bench.plan`), run by
one runner (:mod:`bench.study`, :mod:`bench.runner`, :mod:`bench.workers`) into the results
schema (:mod:`bench.schema`); the analysis (:mod:`bench.analysis`, :mod:`bench.stats`,
:mod:`bench.findings`) reads them and the renderers (:mod:`bench.report`, :mod:`bench.tables`,
:mod:`bench.plots`, :mod:`bench.compare`) show them. Importing this package, or anything
from the schema on, imports neither torch nor jax.
"""

from bench.plan import BACKENDS
from bench.suites import SUITES

__all__ = ["BACKENDS", "SUITES"]
