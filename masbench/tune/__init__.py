"""``masbench tune``: every optimizer of a grid tuned on the same budget, chosen on validation, reported on fresh seeds.

``space``: the default search space of each optimizer, with the user's overrides (``masbench.grid.search``).
``samplers``: ``quasirandom``, scrambled Sobol points known up front. ``plan``: a tune's optimizer entries, their
search trials as ordinary cells (seed 0, a validation split) and, once chosen, the final cells on fresh seeds.
``choice``: per optimizer, the trial with the best validation accuracy; test data never take part.
Nothing is imported here, so that a module of the package imports only what it needs.
"""
