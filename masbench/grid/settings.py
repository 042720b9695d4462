"""Optimizer settings that a grid gives per optimizer or as an axis: ``lr``, ``momentum``, ``weight_decay``.

Each takes one of three forms, on the command line and in the benchmarks file alike:

    a number      lr: 0.003                     --lr 3e-3                every cell
    an axis       lr: [1e-3, 3e-3, 1e-2]        --lr 1e-3,3e-3,1e-2      every optimizer at every value
    a map         lr: {adam: 1e-3, sgd: 0.1}    --lr adam=1e-3,sgd=0.1   each optimizer its own value

A map's names resolve as baselines do (``optimizer_name``: plain names, import paths, ``mix:...``); ``mas``
names every MAS cell, and ``others`` every optimizer the map does not name. An optimizer a map leaves out
keeps the value beneath it (``layer``: the benchmark's ``lr:`` under a flag, else the spec's default).
A cell's spec holds the one value it got, so that a value given per optimizer or on an axis makes the
same cell, and key, as the same value given alone.

>>> per_optimizer({"sgd": 0.1, "others": 0.003}, ["adam", "sgd", "mas"], "lr")
{'adam': [0.003], 'sgd': [0.1], 'mas': [0.003]}
>>> per_optimizer([0.001, 0.01], ["adam", "sgd"], "lr")
{'adam': [0.001, 0.01], 'sgd': [0.001, 0.01]}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import product
from typing import Any

from masbench.grid.mix_weights import join_mix_items
from masbench.grid.optimizers import optimizer_name
from masbench.spec import is_mix, mix_text, parse_mix
from masbench.text.numbers import number
from masbench.text.shown import shown

PER_OPTIMIZER = ("lr", "momentum", "weight_decay")  # the spec fields a grid may give per optimizer or as an axis
OTHERS = "others"  # in a map: every optimizer it does not name
FORMS = "a number, a list of numbers (an axis), or values per optimizer (adam=1e-3,sgd=0.1)"


def flag_of(what: str) -> str:
    return f"--{what.replace('_', '-')}"


def check_setting(value: Any, what: str) -> float | list[float] | dict[str, float] | None:
    """A setting (typed already: a float, a list of floats or a map of floats) in its normal form: an axis
    non-empty with each value once, a map's names resolved (``optimizer_name``), each once; ValueError."""
    if isinstance(value, list):
        if not value:
            raise ValueError(f"Invalid {what}: [] (an axis lists one value or more, e.g. [0.001, 0.003])")
        twice = next((v for i, v in enumerate(value) if v in value[:i]), None)
        if twice is not None:
            raise ValueError(f"Invalid {what}: {shown(value)} gives {shown(twice)} twice (give each once)")
    if isinstance(value, dict):
        if not value:
            raise ValueError(f"Invalid {what}: {{}} (a value per optimizer, e.g. {{adam: 0.001, sgd: 0.1}})")
        return resolve_names(value, what)
    return value


def resolve_names(values: Mapping[Any, Any], what: str) -> dict[str, Any]:
    """A map's optimizers as their one names (``torch.optim.SGD`` is ``sgd``; ``others`` stays); ValueError
    for a name that is no optimizer, or two names of one optimizer."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if not isinstance(name, str):
            raise ValueError(f"Invalid {what}: {shown(name)} is not an optimizer's name (a value per optimizer, "
                             f"e.g. {{adam: 0.001, sgd: 0.1}})")
        resolved = name if name == OTHERS else optimizer_name(name, f"optimizer in {what}")
        if is_mix(resolved):
            resolved = mix_name(parse_mix(resolved))
        if resolved in out:
            raise ValueError(f"Invalid {what}: {shown(name)} names {resolved}, given twice")
        out[resolved] = value
    return out


def parse_setting(text: str, flag: str) -> float | list[float] | dict[str, float]:
    """A sweep's ``--lr`` (``--momentum``, ``--weight-decay``): ``3e-3``, ``1e-3,3e-3`` or ``adam=1e-3,sgd=0.1``
    (a mix's weights stay whole: ``mix:adam=0.5,sgd=0.5=1e-3``); ValueError names the bad part.

    >>> parse_setting("1e-3,3e-3", "--lr"), parse_setting("sgd=0.1,others=3e-3", "--lr")
    ([0.001, 0.003], {'sgd': 0.1, 'others': 0.003})
    """
    items = [item.strip() for item in text.split(",")]
    if "" in items:
        raise ValueError(f"Invalid {flag}: {shown(text)} has an empty item ({FORMS})")
    if not any("=" in item for item in items):
        values = [_number(item, text, flag) for item in items]
        return values[0] if len(values) == 1 else check_setting(values, flag)
    out: dict[str, float] = {}
    for item in _mix_entries(items):
        name, sep, value = item.rpartition("=")
        if not sep or not name.strip():
            raise ValueError(f"Invalid {flag}: {shown(text)}: {shown(item)} is not OPTIMIZER=VALUE (give one "
                             f"number, a list of numbers, or a value per optimizer, not both)")
        name = name.strip()
        if name in out:
            raise ValueError(f"Invalid {flag}: {shown(text)} gives {shown(name)} twice (give each once)")
        out[name] = _number(value, text, flag)
    return check_setting(out, flag)


def _mix_entries(items: list[str]) -> list[str]:
    """Comma-split ``OPTIMIZER=VALUE`` items with each mix's entry whole: ``mix:adam=0.5,sgd=0.5=1e-3`` holds one
    ``=`` per weight and one for its value."""
    out: list[str] = []
    for item in join_mix_items(items):
        if item.startswith("mix:"):  # join_mix_items ran on: the entries after the value are their own
            parts = item.split(",")
            weights = next((i for i, part in enumerate(parts) if part.count("=") == 2), len(parts) - 1)
            out += [",".join(parts[:weights + 1]), *parts[weights + 1:]]
        else:
            out.append(item)
    return out


def _number(item: str, text: str, flag: str) -> float:
    try:
        return number(item)
    except ValueError:
        raise ValueError(f"Invalid {flag}: {shown(text)}: {shown(item)} is not a number in digits 0-9 "
                         f"({FORMS})") from None


def layer(under: Any, over: Any, what: str) -> Any:
    """``over`` (a flag's value, a grid's) on top of ``under`` (the file's, the benchmark's): a map keeps the
    values beneath it for the optimizers it does not name, unless it has ``others``, which names them all;
    a number or an axis replaces them.

    >>> layer(0.003, {"sgd": 0.1}, "lr"), layer({"sgd": 0.1}, {"adam": 1e-3}, "lr")
    ({'others': 0.003, 'sgd': 0.1}, {'sgd': 0.1, 'adam': 0.001})
    >>> layer({"adam": 1e-3, "sgd": 0.1}, {"sgd": 0.2, "others": 3e-3}, "lr")
    {'sgd': 0.2, 'others': 0.003}
    """
    if not isinstance(over, dict) or under is None:
        return over
    if isinstance(under, list) and OTHERS not in over:
        raise ValueError(f"Invalid {what}: {shown(over)} gives values per optimizer over the axis {shown(under)}: "
                         f"give an axis or values per optimizer, not both (or name every optimizer, with others=)")
    over = resolve_names(over, what)
    if isinstance(under, dict) and OTHERS not in over:
        return {**resolve_names(under, what), **over}
    if isinstance(under, dict):  # others= over a map: every optimizer the map named and the flag does not
        return over
    return over if isinstance(under, list) else {OTHERS: under, **over}  # an axis under is named by others=


def layer_settings(under: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``{**under, **over}``, with each per-optimizer setting layered (``layer``); ValueError."""
    out = {**under, **over}
    for what in PER_OPTIMIZER:
        if what in under and what in over:
            out[what] = layer(under[what], over[what], what)
    return out


def values_for(value: Any, optimizer: str) -> list[float | None]:
    """The values optimizer ``optimizer`` takes of a setting: one (None: not set, the spec's default), or an axis."""
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return [value.get(optimizer, value.get(OTHERS))]
    return [value]


def stray_names(value: Any, optimizers: Iterable[str]) -> list[str]:
    """The names of a map that are not among ``optimizers`` (``others`` is always valid)."""
    optimizers = set(optimizers)
    return [name for name in value if name != OTHERS and name not in optimizers] if isinstance(value, dict) else []


def stray_message(what: str, name: str, optimizers: Iterable[str], where: str = "grid") -> str:
    return (f"{what} for {shown(name)}: it is not an optimizer of the {where} (its optimizers: "
            f"{', '.join(optimizers) or 'none'}; others names the rest)")


def per_optimizer(value: Any, optimizers: Iterable[str], what: str, *, strict: bool = True,
                  ) -> dict[str, list[float | None]]:
    """``{optimizer: [values]}``: what each of ``optimizers`` (a grid's: baselines, ``mas``, mixes as their text)
    takes of a setting given as a number, an axis or a map (``check_setting``'s form); None is "not set":
    the spec's default. ``strict``: a map's name that is none of ``optimizers`` is a ValueError naming it
    and them (a sweep of several grids checks its names over all of them, and each grid skips the others')."""
    optimizers = list(optimizers)
    strays = stray_names(value, optimizers)
    if strict and strays:
        raise ValueError(stray_message(what, strays[0], optimizers))
    return {name: values_for(value, name) for name in optimizers}


def config_optimizer(config: Mapping[str, Any]) -> str:
    """The name a map gives a grid's optimizer configuration: its optimizer, a mix by its weights."""
    if config["optimizer"] == "mix" and config.get("weights"):
        return mix_name(config["weights"])
    return config["optimizer"]


def mix_name(weights: Mapping[str, float]) -> str:
    """A mix as its cell's name shows it: its weights less those of 0 (``mix:sgd=1.0`` for a simplex's corner)."""
    return mix_text({name: weight for name, weight in weights.items() if weight > 0})


def with_settings(configs: list[dict[str, Any]], settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each optimizer configuration at each of its values of the per-optimizer ``settings`` (``{lr: ..}``):
    configuration-major, the settings' values in their order; a value that is not set is left out."""
    out = []
    for config in configs:
        name = config_optimizer(config)
        choices = [[(what, v) for v in values_for(settings[what], name)]
                   for what in PER_OPTIMIZER if settings.get(what) is not None]
        out += [{**config, **{what: v for what, v in combo if v is not None}} for combo in product(*choices)]
    return out


def axis_length(value: Any) -> int:
    """How many values every optimizer takes of a setting: an axis's length, else 1."""
    return len(value) if isinstance(value, list) else 1


def check_reach(settings: Mapping[str, Any]) -> None:
    """A map that names an optimizer for a setting it does not take from the spec (``momentum`` for adam,
    for rmsprop, which takes its own as an optimizer argument) would be dropped silently: ValueError."""
    from masbench.optim import argument_names
    from masbench.spec import RunSpec

    fields = RunSpec.model_fields
    for what, value in settings.items():
        for name in value if isinstance(value, dict) else []:
            if name == OTHERS:
                continue
            optimizer = "mix" if is_mix(name) else name
            if what in spec_settings(optimizer):
                continue
            hint = (f"give it as an argument: --optimizer-arg {name}:{what}=VALUE, or optimizer_args: "
                    f"{{{name}: {{{what}: VALUE}}}}" if what in argument_names(optimizer, fields)
                    else f"{name} has no {what}")
            raise ValueError(f"Invalid {what} for {shown(name)}: it does not reach {name} ({hint})")


def check_optimizer_args(args: Mapping[str, Mapping[str, Any]] | None) -> None:
    """An optimizer argument that the grid sets per optimizer (``--optimizer-arg sgd:lr=0.1``) is refused, naming
    the setting that gives it (``--lr sgd=0.1``); ValueError. Others (``rmsprop:momentum=0.9``: rmsprop takes
    only lr from the spec) are arguments."""
    for name, values in (args or {}).items():
        taken = spec_settings("mix" if is_mix(name) else name)
        for key, value in values.items():
            if key in PER_OPTIMIZER and key in taken:
                raise ValueError(f"Invalid optimizer argument {shown(key)} for {name}: the grid sets it per "
                                 f"optimizer, give {flag_of(key)} {name}={value} (in a benchmarks file, "
                                 f"{key}: {{{name}: {value}}})")


def spec_settings(optimizer: str) -> set[str]:
    """The run spec's fields that ``optimizer`` takes (the others' own settings are optimizer arguments)."""
    from masbench.optim import select_hyperparameters
    from masbench.spec import RunSpec

    return set(select_hyperparameters(optimizer, dict.fromkeys(RunSpec.model_fields)))
