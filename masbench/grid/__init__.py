"""The grid layer: the benchmarks file, grids and their axes (optimizers, lambdas, mix weights, seed budgets),
safe YAML, ``Cell`` and pack planning; what a sweep will run, decided before anything runs.

``benchmarks``: ``benchmarks.yaml`` -> benchmarks -> cells (``plan_sweep``, ``Cell``). ``grids``: a grid's
settings, counted and expanded. ``optimizers``: a grid's optimizer axis. ``lambdas``: lambda_adam grids.
``mix_weights``: grids over the mix simplex. ``seed_budget``: seeds per cell and ``--until-ci``.
``safe_yaml``: the bounded YAML loader. ``packs``: what ``sweep --dry-run`` says of packing.
"""
