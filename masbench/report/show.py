"""One run, in full (``masbench show RUN``): its config, environment, status, claim history and epochs.

``RUN`` is a run id (a number) or a prefix of the run's key (hex digits). A number names the run with
that id when there is one, else it is a key prefix; ``key:PREFIX`` is always a key prefix. A prefix
that matches several runs is refused, in one line naming the candidates. The claim
history is what the store keeps of it: ``attempts`` (how many times the run was claimed), the worker
that holds or last held it, and the times it was created, started, last heartbeat, lease end and
finished, all by the database server's clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from masbench.errors import MasbenchError
from masbench.text.numbers import is_digits

HEX = re.compile(r"[0-9a-f]+")
MAX_CANDIDATES = 8
EPOCH_FIELDS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "val_loss", "val_acc", "lr",
                "lambda_adam", "lambda_sgd", "seconds", "samples_per_second")
CLAIM_FIELDS = ("attempts", "worker", "created_at", "started_at", "heartbeat_at", "lease_expires_at", "finished_at")


@dataclass
class RunDetail:
    run: dict[str, Any]  # every column of the runs row
    epochs: list[dict[str, Any]]  # its epoch rows, by epoch
    problems: list[str] = field(default_factory=list)  # what the store's checks find in it (reports leave it out)


def find_run(store, text: str) -> RunDetail:
    """The one run that ``text`` (a run id, or a key prefix) names, with its epochs; else a one-line error."""
    text = text.strip()
    prefix = text.lower().removeprefix("key:")
    if not prefix or not HEX.fullmatch(prefix):
        raise MasbenchError(f"Invalid RUN: {text[:80]!r} (a run id, e.g. 12, or a prefix of a run key in hex digits, "
                            f"e.g. 3fa0 or key:3041)")
    run_id = int(text) if is_digits(text) and len(text) < 10 else None  # an id (32 bits) before a key prefix of digits
    found = store.find_run(run_id, prefix, MAX_CANDIDATES + 1)
    if not found:
        raise MasbenchError(f"no run with id or key prefix {text!r} in {store.masked_url}")
    if len(found) > 1:
        shown = ", ".join(f"{r['id']} (key {r['key']}, {r['name']}, seed {r['seed']})" for r in found[:MAX_CANDIDATES])
        more = " and more" if len(found) > MAX_CANDIDATES else ""
        raise MasbenchError(f"RUN {text!r} is ambiguous: it matches runs {shown}{more} (give a longer key prefix)")
    [run] = found
    return RunDetail(run, [{f: getattr(e, f) for f in EPOCH_FIELDS} for e in store.epochs_of(run["id"])],
                     [problem.detail() for problem in store.problems([run["id"]])])


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if hasattr(value, "isoformat"):
        return value.isoformat(sep=" ", timespec="seconds")
    return str(value)


def detail_sections(detail: RunDetail) -> list[tuple[str, list[tuple[str, str]]]]:
    """The run as titled sections of (field, shown value): run, status, claim history, environment, config."""
    run = detail.run
    config = _object(run.get("config"))
    canonical = _object(config.get("canonical"))
    identity = [(k, _value(run[k])) for k in ("id", "name", "key", "config_key", "benchmark", "dataset", "model",
                                             "optimizer", "lambda_adam", "lambda_sgd", "seed", "epochs")]
    if _object(run.get("weights")):
        identity.append(("weights", ", ".join(f"{k}={_value(v)}" for k, v in run["weights"].items())))
    status = [("status", run["status"]), ("error", _value(run["error"])),
              ("epochs recorded", f"{len(detail.epochs)} of {run['epochs']}")]
    versions = _object(run.get("versions"))
    environment = [("host", _value(run["host"])), ("device", _value(run["device"])),
                   ("git commit", _value(run["git_commit"])),
                   *((f"version {k}", _value(v)) for k, v in sorted(versions.items()))]
    settings = [(k, _compact(v) if isinstance(v, (dict, list)) else _value(v)) for k, v in sorted(canonical.items())]
    problems = [("problems (reports leave the run out)", [(str(i), text) for i, text in
                                                          enumerate(detail.problems, start=1)])] if detail.problems else []
    return [("run", identity), ("status", status), *problems, ("claim history (database server's clock)",
                                                               [(k, _value(run[k])) for k in CLAIM_FIELDS]),
            ("environment", environment), ("config (canonical)", settings)]


def _object(value: Any) -> dict:
    """A JSON column's object; {} for NULL, or for anything else a corrupted row holds (its problems say so)."""
    return value if isinstance(value, dict) else {}


def _compact(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, default=str)


def epoch_columns(detail: RunDetail) -> list[str]:
    """The epoch table's columns: the validation ones only when some epoch has them."""
    return [f for f in EPOCH_FIELDS
            if f not in ("val_loss", "val_acc") or any(e[f] is not None for e in detail.epochs)]


def epoch_rows(detail: RunDetail) -> list[list[str]]:
    columns = epoch_columns(detail)
    return [[_value(e[c]) for c in columns] for e in detail.epochs]
