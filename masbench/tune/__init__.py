"""``masbench tune``: each optimizer tuned on the same budget, chosen on validation, reported on fresh seeds.

``studies``: Optuna's studies beside the store (``--sampler tpe``, ``--prune``; optional: ``masbench[tune]``);
``optimize``: rounds of trials that are not known up front (TPE's, and any sampler's under ``--prune``),
told back from the store; ``pruning``: the callback that reports each epoch and prunes.
"""
