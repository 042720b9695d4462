"""Deprecated home of the run spec and the benchmarks file: see ``masbench.spec`` and ``masbench.benchmarks``."""

from masbench.benchmarks import *  # noqa: F401,F403
from masbench.benchmarks import BASELINES, Cell, complement, expand_grid, load_benchmarks, parse_lambdas, plan_sweep  # noqa: F401
from masbench.spec import ENDPOINT_LAMBDAS, ExecOptions, RunSpec, make_spec, validation_message  # noqa: F401
