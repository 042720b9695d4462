"""A tune's Optuna studies (``--sampler tpe``, ``--prune``): where they live, one per optimizer, and its trials.

Optuna is optional (``pip install 'masbench[tune]'``); ``require_optuna`` imports it or says so in one line.

Where a study lives: in Optuna's RDB storage on the store's own database server, apart from the store's
tables (Optuna's ``studies``, ``trials``, ... would clash with the store's ``trials``):

- SQLite ``sqlite:///path/x.db``: its own file beside the store, ``path/x.optuna.db`` (``study_url``);
- PostgreSQL: the store's database, in schema ``masbench_optuna`` (created when missing), which the
  connections reach through their ``search_path``.

An in-memory store, or another database, is refused: the studies must outlive the process, as the store does.

One study per tune and optimizer label (``study_name``: ``masbench:<tune key>:<label>``), maximizing the
validation accuracy: a trial's value is its run's best validation accuracy over its epochs, read from
the store and told back (``masbench.tune.optimize``). A trial names its cell by the user attribute
``run_key``, so that a tune killed and run again, or a second tune on the same store, finds it.

Example:
    >>> study_url("sqlite:////runs/masbench.db")[0]
    'sqlite:////runs/masbench.optuna.db'
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from masbench.errors import MasbenchError
from masbench.store.urls import mask_url

if TYPE_CHECKING:
    from masbench.grid.search import Dimension

SCHEMA = "masbench_optuna"  # PostgreSQL: the schema of every masbench study, beside the store's tables
BUSY_TIMEOUT_S = 60.0  # SQLite: how long a study's writer waits for another (the store's own wait)
RUN_KEY = "run_key"  # the user attribute naming a trial's cell


def require_optuna(what: str = "--sampler tpe"):
    """The ``optuna`` module, or ``MasbenchError`` in one line when it is not installed."""
    try:
        import optuna
    except ImportError:
        raise MasbenchError(f"{what} needs optuna: pip install 'masbench[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per trial would drown the tune's progress
    return optuna


def study_url(store_url: str) -> tuple[str, dict[str, Any]]:
    """The URL of the RDB storage beside the store at ``store_url``, and its SQLAlchemy engine settings."""
    from sqlalchemy.engine import make_url

    parsed = make_url(store_url)
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.database not in (None, "", ":memory:") and not parsed.query.get("uri"):
        path = Path(parsed.database)
        beside = path.with_name(f"{path.stem}.optuna{path.suffix or '.db'}")
        return (parsed.set(database=str(beside)).render_as_string(hide_password=False),
                {"connect_args": {"timeout": BUSY_TIMEOUT_S}})
    if backend == "postgresql":
        return store_url, {"connect_args": {"options": f"-csearch_path={SCHEMA}"}}
    raise MasbenchError(f"--sampler tpe and --prune keep their studies beside the store, in an SQLite file or on "
                        f"a PostgreSQL server, not in {mask_url(store_url)}")


def storage_for(store_url: str, attempts: int = 5):
    """Optuna's storage for the studies of the store at ``store_url`` (created, with its schema, when new).

    Two tunes that create the schema or Optuna's tables at once: the loser finds them made, on a next attempt.
    """
    optuna = require_optuna()
    url, engine_kwargs = study_url(store_url)
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(1, attempts + 1):
        try:
            if url == store_url:  # PostgreSQL: the store's own database, the studies in their schema
                _create_schema(store_url)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (IntegrityError, OperationalError, ProgrammingError):
            if attempt == attempts:
                raise
            time.sleep(0.2 * attempt)


def _create_schema(store_url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(store_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"'))
    finally:
        engine.dispose()


def study_name(tune_key: str, label: str) -> str:
    return f"masbench:{tune_key}:{label}"


def distributions(space: Mapping[str, Dimension]) -> dict[str, Any]:
    """Optuna's distribution of each dimension: log and uniform floats, integers, categorical choices."""
    optuna = require_optuna()
    dist = optuna.distributions
    out: dict[str, Any] = {}
    for name, d in space.items():
        if d.kind == "choice":
            out[name] = dist.CategoricalDistribution(list(d.choices))
        elif d.kind == "int":
            out[name] = dist.IntDistribution(int(d.low), int(d.high))
        else:
            out[name] = dist.FloatDistribution(d.low, d.high, log=d.kind == "log")
    return out


def make_pruner(kind: str | None, epochs: int, reduction_factor: int = 3):
    """Successive halving over epochs (``halving``: Optuna's asynchronous ``SuccessiveHalvingPruner``, rungs
    at 1, 3, 9, ... epochs) or ``hyperband`` (brackets of it, up to ``epochs``); None: never prune."""
    optuna = require_optuna("--prune")
    if kind is None:
        return optuna.pruners.NopPruner()
    if kind == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=reduction_factor)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=reduction_factor)
    raise ValueError(f"unknown pruner {kind!r}")  # TuneSettings checks --pruner


def open_study(storage, tune_key: str, label: str, pruner=None, sampler=None):
    """The study of ``label`` in the tune ``tune_key``, created when new (safe when two tunes create it at once)."""
    optuna = require_optuna()
    return optuna.create_study(storage=storage, study_name=study_name(tune_key, label), direction="maximize",
                               load_if_exists=True, pruner=pruner, sampler=sampler)


def trial_of(study, run_key: str):
    """The study's trial that trains the cell ``run_key`` (its user attribute), or None."""
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get(RUN_KEY) == run_key:
            return trial
    return None


def add_running_trial(storage, study, params: dict[str, Any], space: Mapping[str, Dimension], run_key: str) -> int:
    """A running trial of ``params`` (a quasirandom point, known up front) in ``study`` (on ``storage``), naming
    its cell; its id. Only the worker that holds the cell's claim adds it (``masbench.tune.pruning``), so no
    cell gets two trials."""
    optuna = require_optuna()
    template = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, params=params,
                                         distributions=distributions(space), user_attrs={RUN_KEY: run_key})
    return storage.create_new_trial(storage.get_study_id_from_name(study.study_name), template_trial=template)
