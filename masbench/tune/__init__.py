"""``masbench tune``: every optimizer of a grid tuned on the same budget, chosen on validation, reported on fresh seeds.

``space``: the default search space of each optimizer, with the user's overrides (``masbench.grid.search``).
``samplers``: ``quasirandom``, scrambled Sobol points known up front. ``plan``: a tune's optimizer entries, their
search trials as ordinary cells (seed 0, a validation split) and, once chosen, the final cells on fresh seeds.
The choice, per optimizer the trial with the best validation accuracy (test data never take part), is
``masbench.report.choice``: it reads the store's rows, as every report does.
``studies``: Optuna's studies beside the store (``--sampler tpe``, ``--prune``; optional: ``masbench[tune]``);
``optimize``: rounds of trials that are not known up front (TPE's, and any sampler's under ``--prune``), told
back from the store; ``pruning``: the callback that reports each epoch to its trial and prunes.
Nothing is imported here, so that a module of the package imports only what it needs.
"""
