"""Run specifications: what defines a cell, its canonical name and its key.

A ``RunSpec`` is frozen and rejects unknown keys. Everything that changes the
numbers a run produces is in it (dataset, model, optimizer and its
hyperparameters, batch size, epochs, seed, data options); how it is executed
(device, data directory, mixed precision, checkpoints) is in ``masbench.engine.ExecOptions``.

``spec.key`` hashes the canonical form of a spec (the run: a cell and its
seed): only the fields that matter for its optimizer and data, with defaults
resolved, so that the same run gets the same key however it was written.
``spec.config_key`` hashes the same canonical form without the seed: it is the
cell's identity, which reports, ``compare`` and the regression gate group by.
``spec.name`` is the run's readable name,
``mas[lambda_adam=0.3,lambda_sgd=0.7,lr=0.001]``, keys sorted; two cells may
share a name (other epochs, batch size or data options), never a config key.

Path-based data (``csv:PATH``, its ``test_file``, ``imagefolder:PATH``) enter the
canonical form twice: as written, and as ``data_fingerprint``, a hash of their
content (``masbench.data.identity``) computed when the spec is made. Relative paths
are relative to the validation context's ``data_base`` (``make_spec(context, ...)``;
a sweep passes the benchmarks file's folder), else the working directory. So
``csv:data.csv`` in two folders holding different files is two cells, and the same
file in two clones is one. The fingerprint is no field: nobody can set it.

A mix's text (``mix:adam=0.3,sgd=0.7``: ``parse_mix``, ``mix_text``, ``resolve_weights``) is read and written
here too, torch-free: it is the canonical form of a spec's ``optimizer`` when that is a mix.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError, ValidationInfo, field_validator, model_validator

from masbench.errors import MasbenchError
from masbench.optimizer_names import OPTIMIZER_NAMES, is_known, is_path
from masbench.text.lambda_schedule import normalise_lambda_schedule, parse_lambda_schedule
from masbench.text.limits import MAX_NAME, MAX_SCALE, STR_LIMITS, check_ranges, check_str
from masbench.text.numbers import is_mantissa
from masbench.text.shown import one_line, shown

ENDPOINT_LAMBDAS = {"adam": (1.0, 0.0), "adamw": (1.0, 0.0), "sgd": (0.0, 1.0)}


def _plugin_named(name: str) -> bool:
    from masbench.plugins import find

    return find("optimizers", name) is not None


class RunSpec(BaseModel):
    """One cell: optimizer x lambda x model x dataset x seed, and everything else that sets its numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    benchmark: str | None = None
    dataset: str = "digits"
    model: str = "mlp"
    optimizer: str = "mas"  # a registered name or an import path (masbench.optim.registry), resolved to one name
    optimizer_args: dict[str, Any] = {}  # its other keyword arguments, typed by its signature (optim.arguments)
    weights: dict[str, Any] | None = None  # mix's {component: weight} (optimizer "mix:adam=0.3,sgd=0.7" sets it)
    lr: float = 1e-3
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: float | None = None  # None: the optimizer's own default (AdamW's is 0.01)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    amsgrad: bool = False
    lambda_adam: float = 0.5
    lambda_sgd: float = 0.5
    bias_correction: str = "step"
    lambda_schedule: str = "constant"
    lr_schedule: str = "constant"  # optim.lr_schedules; a constant one stays out of the key, as before it existed
    batch_size: int = 128
    epochs: int = 10
    seed: int = 0
    pretrained: str | None = None  # text models (None: bert-base-uncased); tv: models' weights (None: none)
    max_length: int = 128
    text_column: str | None = None
    label_column: str | None = None
    test_file: str | None = None
    test_fraction: float = 0.2
    train_subset: int | None = None
    test_subset: int | None = None
    val_fraction: float | None = None  # a validation split held out of train (data.validation); in the key when set
    # Set by validation, never given: the path-based data's content fingerprint (None for named data sets).
    _data_fingerprint: str | None = PrivateAttr(default=None)
    _identified: bool = PrivateAttr(default=False)

    @field_validator("*")
    @classmethod
    def _no_negative_zero(cls, value: Any) -> Any:
        """-0.0 as 0.0: they are equal, but JSON writes ``-0.0``, which would make another key for the same cell."""
        if isinstance(value, float):
            return value + 0.0  # -0.0 + 0.0 is 0.0; every other float is unchanged
        if isinstance(value, tuple):
            return tuple(v + 0.0 if isinstance(v, float) else v for v in value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _split_mix(cls, values: Any) -> Any:
        """``optimizer: mix:adam=0.3,sgd=0.7`` is optimizer ``mix`` with those weights."""
        if isinstance(values, dict) and is_mix(values.get("optimizer")):
            if values.get("weights") is not None:
                raise ValueError(f"Invalid optimizer {shown(values['optimizer'])}: weights are given twice "
                                 f"(in the optimizer's text and as weights)")
            values = {**values, "optimizer": "mix", "weights": parse_mix(values["optimizer"])}
        return values

    @field_validator("weights")
    @classmethod
    def _resolve_weights(cls, value: dict[str, Any] | None) -> dict[str, float] | None:
        return None if value is None else resolve_weights(value)

    @field_validator("optimizer")
    @classmethod
    def _resolve_optimizer(cls, value: str) -> str:
        # An import path, or a plugin's name, is resolved (imported) here, to its one name (a plugin whose class
        # is adam's is adam); a registered or unknown name is checked in _check_names, after the ranges, so that
        # a bad number is refused before torch is imported.
        if not is_path(value) and (value in OPTIMIZER_NAMES or not _plugin_named(value)):
            return value
        from masbench.optim import resolve_optimizer

        return resolve_optimizer(value)

    @field_validator("optimizer_args")
    @classmethod
    def _type_optimizer_args(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if not value or "optimizer" not in info.data:  # none, or the optimizer is invalid: its error is the one shown
            return value
        from masbench.optim import typed_arguments

        return typed_arguments(info.data["optimizer"], value, cls.model_fields)

    @field_validator("lambda_schedule")
    @classmethod
    def _normalise_lambda_schedule(cls, value: str) -> str:
        return normalise_lambda_schedule(value)

    @field_validator("lr_schedule")
    @classmethod
    def _normalise_lr_schedule(cls, value: str) -> str:
        check_str("lr_schedule", value, STR_LIMITS["lr_schedule"])
        if value == "constant":
            return value
        from masbench.optim import normalise_lr_schedule

        return normalise_lr_schedule(value)

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> RunSpec:
        self._check_values()
        self._check_names()
        context = info.context or {}
        if context.get("identify_data", True):
            self._identify_data(context.get("data_base"), context.get("fingerprints"))
        return self

    def _check_values(self) -> None:
        """Every number and string within its range (``masbench.text.limits``): no import, so bad input fails fast."""
        check_ranges(self.model_dump(exclude_none=True))
        for i, beta in enumerate(self.betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid betas[{i}]: {shown(beta)} (must be in [0, 1))")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"Invalid test_fraction: {shown(self.test_fraction)} (must be in (0, 1))")
        if self.val_fraction is not None:
            from masbench.data.validation import check_val_fraction

            check_val_fraction(self.val_fraction)
        if self.nesterov and self.optimizer in ("mas", "sgd") and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(f"Invalid nesterov: it needs momentum > 0 and dampening = 0 "
                             f"(got momentum={self.momentum}, dampening={self.dampening})")
        if self.lambda_schedule != "constant" and (self.lambda_adam, self.lambda_sgd) != (0.5, 0.5):
            # A linear schedule sets λa (λs = 1 − λa): these would be a second cell of the same numbers, and the
            # report would show the run as MAS at these λ.
            raise ValueError(f"Invalid lambda_adam={self.lambda_adam}, lambda_sgd={self.lambda_sgd} with "
                             f"lambda_schedule {self.lambda_schedule!r}: the schedule sets the lambdas; drop them")
        if (self.optimizer == "mix") != (self.weights is not None):
            if self.weights is None:
                raise ValueError("Invalid optimizer mix: give its weights, e.g. mix:adam=0.5,sgd=0.5")
            raise ValueError(f"Invalid weights for optimizer {shown(self.optimizer)}: only mix has weights")
        if self.lr_schedule != "constant":
            from masbench.optim import check_lr_schedule

            check_lr_schedule(self.lr_schedule, self.epochs)

    def _check_names(self) -> None:
        """The data set, model, optimizer, bias correction and schedule exist, and go together."""
        from masbench.data import dataset_kind
        from masbench.models import model_entry, model_settings
        from masbench.optim import SPEC_OPTIMIZERS, check_builds, resolve_optimizer
        from masbench.optim.functional import BIAS_CORRECTIONS

        try:
            kind = dataset_kind(self.dataset)
            entry = model_entry(self.model)
            model_settings(self.model, self.pretrained)  # tv:'s weights exist
        except MasbenchError as error:
            raise ValueError(str(error)) from None
        if kind not in entry.kinds:
            raise ValueError(f"Invalid model {shown(self.model)} for dataset {shown(self.dataset)}: it takes "
                             f"{' or '.join(entry.kinds)} data, the dataset is {kind}")
        resolve_optimizer(self.optimizer)  # a plain name: registered?
        if self.optimizer not in SPEC_OPTIMIZERS or self.optimizer_args or self.optimizer == "mix":
            check_builds(self.optimizer, self.optimizer_hparams())
        if self.bias_correction not in BIAS_CORRECTIONS:
            raise ValueError(f"Invalid bias_correction: {shown(self.bias_correction)} "
                             f"(valid: {', '.join(BIAS_CORRECTIONS)})")
        if parse_lambda_schedule(self.lambda_schedule).kind != "constant" and self.optimizer != "mas":
            raise ValueError(f"Invalid lambda_schedule {self.lambda_schedule!r} for optimizer {self.optimizer!r}: "
                             f"only mas has lambdas")
        if len(self.name) > MAX_NAME:
            raise ValueError(f"Invalid run: its name {shown(self.name)} is {len(self.name)} characters "
                             f"(the store holds {MAX_NAME}); shorten the lambda schedule or the values")

    def _identify_data(self, base: Path | str | None, cache: dict | None) -> None:
        from masbench.data import data_fingerprint

        self._data_fingerprint = data_fingerprint(self.dataset, self.data_options(), base, cache)
        self._identified = True

    # --- derived views -----------------------------------------------------------------------

    @property
    def data_fingerprint(self) -> str | None:
        """The content fingerprint of path-based data (``missing`` if absent when planned); None for named sets."""
        return self._data_fingerprint

    @property
    def kind(self) -> str:
        from masbench.data import dataset_kind

        return dataset_kind(self.dataset)

    @property
    def lambdas(self) -> tuple[float, float]:
        """(lambda_adam, lambda_sgd) as the optimizer uses them: fixed at the endpoints for the baselines.

        Optimizers that are neither MAS nor one of its endpoints have no lambdas: (0, 0) in the store's columns.
        """
        if self.optimizer == "mas":
            return self.lambda_adam, self.lambda_sgd
        return ENDPOINT_LAMBDAS.get(self.optimizer, (0.0, 0.0))

    @property
    def resolved_pretrained(self) -> str | None:
        from masbench.models import DEFAULT_PRETRAINED, model_settings

        if self.kind == "text":
            return self.pretrained or DEFAULT_PRETRAINED
        return model_settings(self.model, self.pretrained).get("pretrained")  # tv:'s weights, else None

    def optimizer_hparams(self, with_args: bool = True) -> dict[str, Any]:
        """The keyword arguments for ``build_optimizer(self.optimizer, ...)``, defaults resolved.

        The spec's fields that the optimizer takes (``lr`` alone for those other than mas, sgd, adam and
        adamw), then, ``with_args``, its ``optimizer_args``.
        """
        from masbench.optim import optimizer_defaults, select_hyperparameters

        values = self.model_dump()
        if self.weight_decay is None:
            default = optimizer_defaults(self.optimizer).get("weight_decay", 0.0)
            values["weight_decay"] = None if default is None else float(default)  # mix: each component's own
        if self.optimizer == "mix":  # eps and betas left at masbench's defaults: each component's own (Adagrad's
            for name in ("eps", "betas"):  # eps 1e-10, Lion's betas (0.9, 0.99)), so that weight 1 is that optimizer
                if values[name] == type(self).model_fields[name].default:
                    values[name] = None
        hparams = select_hyperparameters(self.optimizer, values)
        hparams.pop("foreach", None)
        hparams.pop("fused", None)
        return {**hparams, **self.optimizer_args} if with_args else hparams

    def data_options(self) -> dict[str, Any]:
        """The keyword arguments for ``load_dataset`` that matter for this dataset."""
        options: dict[str, Any] = {}
        if self.kind == "text":
            options.update(pretrained=self.resolved_pretrained, max_length=self.max_length)
        if self.dataset.startswith("csv:"):
            options.update(text_column=self.text_column, label_column=self.label_column, test_file=self.test_file)
            if self.test_file is None:
                options["test_fraction"] = self.test_fraction
        if self.train_subset is not None:
            options["train_subset"] = self.train_subset
        if self.test_subset is not None:
            options["test_subset"] = self.test_subset
        return options

    def canonical(self) -> dict[str, Any]:
        """The fields that define this cell, and nothing else: the input of ``key``."""
        out: dict[str, Any] = dict(
            benchmark=self.benchmark, dataset=self.dataset, model=self.model, optimizer=self.optimizer,
            batch_size=self.batch_size, epochs=self.epochs, seed=self.seed,
        )
        out.update({k: list(v) if isinstance(v, tuple) else v for k, v in self.optimizer_hparams(False).items()})
        if self.optimizer == "mas":
            out["lambda_schedule"] = self.lambda_schedule
        out.update(self._open_settings())
        out.update(self.data_options())
        if self.kind != "text":  # tv:'s weights (a text model's pretrained is among the data options)
            from masbench.models import model_settings

            out.update(model_settings(self.model, self.pretrained))
        if self.val_fraction is not None:  # absent when not set, so that the cells without one keep their keys
            out["val_fraction"] = self.val_fraction
        if not self._identified:
            raise RuntimeError(f"{self.describe()} was validated without identifying its data: it has no key")
        if self._data_fingerprint is not None:
            out["data_fingerprint"] = self._data_fingerprint
        return out

    def _open_settings(self) -> dict[str, Any]:
        """Optimizer arguments (nested: no argument can shadow a field) and a schedule other than constant;
        absent when not given, so that the cells that have neither keep their keys."""
        out: dict[str, Any] = {}
        if self.optimizer_args:
            out["optimizer_args"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.optimizer_args.items()}
        if self.lr_schedule != "constant":
            out["lr_schedule"] = self.lr_schedule
        return out

    def __hash__(self) -> int:
        # Hashable as before optimizer_args (a dict) joined the fields: equal specs dump alike.
        return hash(json.dumps(self.model_dump(mode="json"), sort_keys=True))

    @property
    def key(self) -> str:
        """The run's identity: the hash of ``canonical()``, seed included."""
        return canonical_hash(self.canonical())

    @property
    def config_key(self) -> str:
        """The cell's identity: the hash of ``canonical()`` without the seed (the runs of a cell differ by seed)."""
        return config_key_of(self.canonical())

    @property
    def name(self) -> str:
        """``optimizer[k=v,...]``: lr, and the hyperparameters that differ from the optimizer's defaults, keys sorted.

        MAS always shows its lambdas; a lambda schedule shows instead of them.
        """
        from masbench.optim import optimizer_defaults

        # A mix is named by its weights, and shows the settings that differ from MAS's, which it shares.
        defaults = optimizer_defaults("mas" if self.optimizer == "mix" else self.optimizer)
        shown = {}
        for k, v in self.optimizer_hparams().items():
            if self.optimizer == "mix" and (k == "weights" or v is None):
                continue
            if self.optimizer == "mas" and k in ("lambda_adam", "lambda_sgd"):
                if self.lambda_schedule == "constant":
                    shown[k] = v
            elif k == "lr" or k not in defaults or defaults[k] != v:
                shown[k] = v
        if self.optimizer == "mas" and self.lambda_schedule != "constant":
            shown["lambda_schedule"] = self.lambda_schedule
        if self.lr_schedule != "constant":
            shown["lr_schedule"] = self.lr_schedule
        inner = ",".join(f"{k}={_format(shown[k])}" for k in sorted(shown))
        head = mix_text(self.weights) if self.optimizer == "mix" and self.weights else self.optimizer
        return f"{head}[{inner}]"

    def describe(self) -> str:
        """One line for messages: the name, the data, the model and the seed."""
        return f"{self.name} on {self.dataset}/{self.model} seed {self.seed}"


def canonical_hash(canonical: dict[str, Any]) -> str:
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def config_key_of(canonical: dict[str, Any]) -> str:
    """The cell key of a stored run's canonical config (``masbench.store.migrate.v1_config_key`` is a frozen copy
    of this function as version 2 of the store used it)."""
    return canonical_hash({k: v for k, v in canonical.items() if k != "seed"})


def _format(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "/".join(_format(v) for v in value)
    return repr(value) if isinstance(value, str) else str(value)


def make_spec(context: dict[str, Any] | None = None, /, **values: Any) -> RunSpec:
    """``RunSpec(**values)``, with a one-line ``MasbenchError`` naming the value instead of pydantic's report.

    ``context``: ``data_base``, the folder relative data paths are relative to (default: the working
    directory); ``fingerprints``, a dict that specs made together share, so that each data path is
    fingerprinted once; ``identify_data=False`` to check the values alone (such a spec has no key).
    """
    try:
        return RunSpec.model_validate(values, context=context)
    except ValidationError as error:
        raise MasbenchError(validation_message(error)) from None


# A mix's text, torch-free: ``mix:adam=0.3,sgd=0.5,rmsprop=0.2``, what ``--optimizer``, a sweep's baselines and a
# run's name use. ``parse_mix`` reads it into ``{component: weight}``, ``mix_text`` writes it back (components in
# order, weights as Python prints them), so that one mix is one text and one cell.

MIX_PREFIX = "mix:"
# The components that take the product form (masbench.optim.mix_kinds.KINDS, held together by a test).
PRODUCT_KINDS = ("adam", "sgd", "adamw", "adamax", "nadam", "rmsprop", "adagrad", "lion")
MAX_MIX_COMPONENTS = 16
MIX_FORM = "mix:NAME=WEIGHT,NAME=WEIGHT,... (e.g. mix:adam=0.3,sgd=0.5,rmsprop=0.2)"


def is_mix(text: object) -> bool:
    return isinstance(text, str) and text.startswith(MIX_PREFIX)


def parse_mix(text: str) -> dict[str, float]:
    """``mix:adam=0.3,sgd=0.7`` -> ``{"adam": 0.3, "sgd": 0.7}``; ValueError names the bad part in one line."""
    body = text[len(MIX_PREFIX):] if is_mix(text) else None
    if not body:
        raise ValueError(f"Invalid mix {shown(text)}: no components ({MIX_FORM})")
    out: dict[str, float] = {}
    for item in body.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"Invalid mix {shown(text)}: {shown(item)} is not NAME=WEIGHT ({MIX_FORM})")
        if name in out:
            raise ValueError(f"Invalid mix {shown(text)}: component {shown(name)} is given twice")
        out[name] = _weight(text, name, value)
    check_components(text, out)
    return out


def check_components(where: str, weights: dict[str, float]) -> None:
    """Names known (plain names; import paths are resolved later), at most MAX_MIX_COMPONENTS, not all zero."""
    if not weights:
        raise ValueError(f"Invalid mix {shown(where)}: no components ({MIX_FORM})")
    if len(weights) > MAX_MIX_COMPONENTS:
        raise ValueError(f"Invalid mix {shown(where)}: {len(weights)} components (at most {MAX_MIX_COMPONENTS})")
    for name in weights:
        if name in ("mix", "mas"):
            raise ValueError(f"Invalid mix {shown(where)}: component {name} cannot be mixed (mas is mix:adam=A,sgd=S)")
        if not is_path(name) and name not in PRODUCT_KINDS and not is_known(name):  # a plugin's name too
            valid = ", ".join(n for n in dict.fromkeys(PRODUCT_KINDS + OPTIMIZER_NAMES) if n not in ("mas", "mix"))
            raise ValueError(f"Invalid mix {shown(where)}: unknown component {shown(name)} (valid: {valid}, or an "
                             f"import path package.module:Class, or a plugin's)")
    if not any(weights.values()):
        raise ValueError(f"Invalid mix {shown(where)}: every weight is zero (at least one must be > 0)")


_NONZERO = re.compile(r"[1-9]")


def _weight(text: str, name: str, value: object) -> float:
    if isinstance(value, bool):
        number = math.nan
    else:
        text_value = value.strip() if isinstance(value, str) else value
        if isinstance(text_value, str) and not is_mantissa(text_value):
            number = math.nan  # digits 0-9 only: float() would take "1_0" as 10 and "０.3" as 0.3
        else:
            try:
                number = float(text_value)  # type: ignore[arg-type]
            except (TypeError, ValueError, OverflowError):
                number = math.nan
    if number == 0.0 and isinstance(value, str) and _NONZERO.search(value.split("e")[0].split("E")[0]):
        number = math.nan  # 1e-400 underflows to 0: a weight given as non-zero must not vanish
    if not (math.isfinite(number) and 0.0 <= number <= MAX_SCALE):
        raise ValueError(f"Invalid mix {shown(text)}: weight {shown(value)} of {shown(name)} "
                         f"(must be a finite number in [0, {MAX_SCALE:g}] in digits 0-9, 0 or not so small "
                         f"that it is 0)")
    return number + 0.0


def check_weights(weights: object) -> dict[str, float]:
    """A mapping of weights from YAML or Python, checked as ``parse_mix`` checks text."""
    if not isinstance(weights, dict):
        raise ValueError(f"Invalid weights: {shown(weights)} (a mapping component: weight, e.g. adam: 0.5)")
    where = mix_text(weights) if all(isinstance(k, str) for k in weights) else shown(weights)
    for name, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):  # "0.5" in YAML is text, not a weight
            raise ValueError(f"Invalid mix {where}: weight {shown(value)} of {shown(name)} is not a number")
    out = {str(name): _weight(where, str(name), value) for name, value in weights.items()}
    check_components(where, out)
    return out


def resolve_weights(weights: object) -> dict[str, float]:
    """Checked weights with each component as its one name (an import path resolved, which imports it), less
    the components of weight 0, which move nothing: ``mix:adam=0.3,sgd=0.7,rmsprop=0`` is one cell with
    ``mix:adam=0.3,sgd=0.7``, and a corner of a simplex one with its single component."""
    out: dict[str, float] = {}
    checked = check_weights(weights)
    for name, weight in checked.items():
        if is_path(name):
            from masbench.optim.mix import component_name

            resolved = component_name(name)
        else:
            resolved = name
        if resolved in out:
            raise ValueError(f"Invalid mix {mix_text(checked)}: {shown(name)} names {resolved}, given twice")
        out[resolved] = weight
    return {name: weight for name, weight in out.items() if weight > 0}


def mix_text(weights: dict[str, object]) -> str:
    """``{"sgd": 0.7, "adam": 0.3}`` -> ``mix:adam=0.3,sgd=0.7``: product kinds in their order, then by name."""
    order = sorted(weights, key=lambda n: (PRODUCT_KINDS.index(n), "") if n in PRODUCT_KINDS else (99, n))
    return MIX_PREFIX + ",".join(f"{name}={weights[name]}" for name in order)


def validation_message(error: ValidationError, where: str = "") -> str:
    """The first problem of a pydantic error, as one line that names the key and the value."""
    return one_line(_first_problem(error, where))


def _first_problem(error: ValidationError, where: str) -> str:
    first = error.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    location = ".".join(str(part) for part in first["loc"])
    prefix = f"{where}: " if where else ""
    if first["type"] == "value_error" or not location:
        return f"{prefix}{message}"
    if first["type"] == "extra_forbidden":
        return f"{prefix}unknown key {shown(location)} (see --help for the valid options)"
    return f"{prefix}invalid {location}: {shown(first.get('input'))} ({message})"
