"""Search spaces per optimizer: the defaults, and the user's overrides on top.

Defaults (3 decades of lr, log-uniform, around what works for each; ``masbench tune --show-space`` prints them):

======== ================================ ==========================================================
sgd      lr log 1e-3..1, momentum [0, .99] plain SGD's useful rates are 10-1000x Adam's
adam     lr log 1e-5..1e-2                torch's default 1e-3 in the upper middle
adamw    lr log 1e-5..1e-2                as Adam
mas      lr log 1e-4..1e-1, momentum       MAS's lr drives both its Adam part and its SGD part, so its
         [0, .99], lambda_adam [0, 1]     range spans both optimizers' (the upper decade of Adam's, the lower
                                          of SGD's); lambda_adam is tuned unless ``--lambdas`` holds it
mix      lr log 1e-4..1e-1                a mix of optimizers, as MAS (its weights are the grid's)
others   lr log default/100..default*10   around the default lr of the optimizer's signature (1e-3 if none):
                                          for Adam's 1e-3 that is Adam's own range above
======== ================================ ==========================================================

Momentum is uniform in [0, 0.99] where the optimizer takes it from the run spec (sgd, mas). An override
(``--search``, a benchmark's ``search:``) replaces or adds one parameter of one optimizer's space; the
others stay. Spaces are ``{param: Dimension}`` in the parameters' sorted order, so that a sampler's columns
never depend on the order the overrides were written in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from masbench.grid.search import Dimension

MOMENTUM = Dimension("momentum", "uniform", 0.0, 0.99)
LAMBDA_ADAM = Dimension("lambda_adam", "uniform", 0.0, 1.0)
HAND_SET = {
    "sgd": (Dimension("lr", "log", 1e-3, 1.0), MOMENTUM),
    "adam": (Dimension("lr", "log", 1e-5, 1e-2),),
    "adamw": (Dimension("lr", "log", 1e-5, 1e-2),),
    "mas": (Dimension("lr", "log", 1e-4, 1e-1), MOMENTUM, LAMBDA_ADAM),
    "mix": (Dimension("lr", "log", 1e-4, 1e-1),),
}
FALLBACK_LR = 1e-3  # an optimizer whose signature gives no default lr


def default_space(optimizer: str) -> dict[str, Dimension]:
    """The default search space of ``optimizer`` (a registered name or a resolved import path's name).

    >>> default_space("adam")
    {'lr': Dimension(name='lr', kind='log', low=1e-05, high=0.01, choices=())}
    """
    if optimizer in HAND_SET:
        return {d.name: d for d in HAND_SET[optimizer]}
    from masbench.optim import optimizer_defaults

    default = optimizer_defaults(optimizer).get("lr")
    lr = float(default) if isinstance(default, (int, float)) and not isinstance(default, bool) and default > 0 \
        else FALLBACK_LR
    return {"lr": Dimension("lr", "log", float(f"{lr / 100:.4g}"), float(f"{lr * 10:.4g}"))}


def entry_space(optimizer: str, overrides: Mapping[str, Mapping[str, Dimension]] | None = None,
                held: Iterable[str] = ()) -> dict[str, Dimension]:
    """The space of one entry of a tune: ``optimizer``'s default with ``overrides[optimizer]`` on top, less the
    parameters ``held`` (lambda_adam where ``--lambdas`` or a lambda schedule sets it), in sorted order."""
    space = {**default_space(optimizer), **(overrides or {}).get(optimizer, {})}
    held = set(held)
    return {name: space[name] for name in sorted(space) if name not in held}


def space_text(space: Mapping[str, Dimension]) -> str:
    """``lr=log:0.001:1 momentum=uniform:0:0.99``: how ``--show-space`` and the dry run print a space."""
    return " ".join(f"{name}={dim.text()}" for name, dim in space.items()) or "(nothing to search)"
