"""A store's runs in the experiment trackers that the field browses curves with: MLflow and TensorBoard.

Each run of the store (tunes' trials left out, as in reports) becomes one tracker run: its canonical settings
as params, its epochs as metrics by step (step = epoch), its cell (``config_key``) and run key as tags, and
its name (``mas[lambda_adam=0.3,...] seed=0``). Exporting again adds nothing twice:

- MLflow: a run is found by its tag ``masbench.run_key``; only the epochs past the tag
  ``masbench.last_epoch`` are logged, and the status and end time are brought up to date.
- TensorBoard: one directory per run key (``run_directory``) holding ``masbench.json`` (the run's last epoch and status); a
  directory that matches the store is skipped, another is written anew beside it and swapped in, so that a
  reader never sees half a run or an epoch twice.

Both trackers are extras (``pip install 'masbench[mlflow]'``, ``'masbench[tensorboard]'``), imported here only.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from masbench.errors import MasbenchError
from masbench.store.models import EPOCH_COLUMNS

# masbench's status -> MLflow's RunStatus name.
MLFLOW_STATUS = {"pending": "SCHEDULED", "running": "RUNNING", "completed": "FINISHED", "failed": "FAILED",
                 "diverged": "FAILED", "pruned": "KILLED"}
TAG = "masbench."
MARKER = "masbench.json"
_BATCH = 1000  # MLflow's limit of metrics per log_batch


@dataclass
class TrackedRun:
    """One run as a tracker sees it: identity, settings, status, and its epochs in order."""

    key: str
    config_key: str
    name: str
    seed: int
    status: str
    params: dict[str, str]
    tags: dict[str, str]
    started_ms: int | None
    finished_ms: int | None
    epochs: list[dict[str, Any]] = field(default_factory=list)  # {"epoch": n, metric: value}, finite values only

    def times_ms(self) -> list[int]:
        """Each epoch's time: the run's start plus its epochs' seconds so far (from 0 without a start)."""
        out, seconds = [], 0.0
        for epoch in self.epochs:
            seconds += epoch.get("seconds", 0.0)
            out.append((self.started_ms or 0) + int(seconds * 1000))
        return out

    @property
    def title(self) -> str:
        return f"{self.name} seed={self.seed}"

    @property
    def last_epoch(self) -> int:
        return self.epochs[-1]["epoch"] if self.epochs else 0


@dataclass
class Exported:
    """What an export did: runs created, runs brought up to date, runs already complete, epochs written."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    epochs: int = 0

    def line(self, where: str) -> str:
        return (f"{self.created} runs created, {self.updated} updated, {self.unchanged} already up to date "
                f"({self.epochs} epochs written) in {where}")


def require(module: str, extra: str) -> None:
    """Refuse in one line when a tracker's package is missing."""
    if importlib.util.find_spec(module) is None:
        raise MasbenchError(f"exporting to {extra} needs the {module} package: pip install 'masbench[{extra}]'")


def tracked_runs(store, **filters: Any) -> tuple[list[TrackedRun], list[int]]:
    """The store's runs (filters: ``dataset``, ``model``, ``benchmark``; tunes' trials left out), each with its
    epochs, by run id; and the ids of the runs left out because they fail one of the store's checks (an accuracy
    out of [0, 1], a bad JSON config, ...: ``masbench check`` names each), which a report leaves out of its
    numbers (status ``left out``) and an export leaves out of the tracker, so that no corrupt value is copied."""
    from masbench.store.checks import LEFT_OUT
    from masbench.store.queries import run_accuracy_frame

    checked = run_accuracy_frame(store, **filters)
    left_out = [int(i) for i in checked.loc[checked["status"] == LEFT_OUT, "id"]]
    runs = store.runs_frame(**filters)
    runs = runs[~runs["id"].isin(left_out)]
    epochs = store.epochs_frame(**filters)
    epochs = epochs[~epochs["run_id"].isin(left_out)]  # their rows may hold anything (a text epoch)
    trial_keys = set(store.trials_frame()["run_key"]) if len(runs) else set()
    by_run: dict[int, list[dict[str, Any]]] = {}
    for row in epochs.to_dict("records"):
        values = {"epoch": int(row["epoch"])}
        values.update({k: float(row[k]) for k in EPOCH_COLUMNS if _finite(row[k])})
        by_run.setdefault(int(row["run_id"]), []).append(values)
    out = []
    for row in runs.to_dict("records"):
        if row["key"] in trial_keys:
            continue
        config = row["config"] if isinstance(row["config"], dict) else json.loads(row["config"] or "{}")
        settings = config.get("canonical") or {k: row[k] for k in ("dataset", "model", "optimizer", "lr", "epochs",
                                                                   "seed") if row.get(k) is not None}
        tags = {"run_key": row["key"], "config_key": row["config_key"], "status": row["status"],
                "dataset": row["dataset"], "model": row["model"], "optimizer": row["optimizer"]}
        if row.get("benchmark"):
            tags["benchmark"] = row["benchmark"]
        out.append(TrackedRun(
            key=row["key"], config_key=row["config_key"], name=row["name"], seed=int(row["seed"]),
            status=row["status"], params={k: _text(v) for k, v in sorted(settings.items())},
            tags={TAG + k: str(v) for k, v in tags.items()}, started_ms=_ms(row.get("started_at")),
            finished_ms=_ms(row.get("finished_at")), epochs=by_run.get(int(row["id"]), [])))
    return out, left_out


def check_tracking_uri(uri: str) -> None:
    """An MLflow tracking URI that names a local place, checked as every path option is (``masbench.text.paths``):
    a folder (a path, or a ``file:`` URI) must be a folder or absent under one, an SQLite file (``sqlite:///PATH``)
    a regular file or absent in a folder; a server's URI (``http://``, ``databricks``) is MLflow's to check."""
    from urllib.parse import unquote, urlsplit

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from masbench.store.opening import sqlite_file, sqlite_uri_file
    from masbench.text.paths import check_new_file, check_new_folder

    scheme = urlsplit(uri).scheme
    if scheme in ("", "file"):
        check_new_folder(unquote(urlsplit(uri).path) if scheme else uri, "--tracking-uri")
    elif scheme == "sqlite":
        try:
            parsed = make_url(uri)
        except ArgumentError:  # not SQLAlchemy's form: MLflow says so
            return
        path = sqlite_file(parsed) or sqlite_uri_file(parsed)
        if path:
            check_new_file(path, "--tracking-uri's database file")


def export_mlflow(runs: list[TrackedRun], tracking_uri: str, experiment: str) -> Exported:
    """Write ``runs`` into the MLflow tracking store at ``tracking_uri``, experiment ``experiment``."""
    check_tracking_uri(tracking_uri)
    require("mlflow", "mlflow")
    from mlflow.entities import Metric, Param, RunStatus, RunTag
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    done = Exported()
    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        existing = _mlflow_runs(client, experiment_id)
        for run in runs:
            tracked = existing.get(run.key)
            if tracked is None:
                mlflow_run = client.create_run(experiment_id, start_time=run.started_ms, run_name=run.title,
                                               tags={**run.tags, TAG + "last_epoch": "0"})
                run_id, logged, was = mlflow_run.info.run_id, 0, None
                client.log_batch(run_id, params=[Param(k, v) for k, v in run.params.items()])
                done.created += 1
            else:
                run_id = tracked.info.run_id
                logged = int(tracked.data.tags.get(TAG + "last_epoch", "0"))
                was = tracked.data.tags.get(TAG + "status")
                if logged == run.last_epoch and was == run.status:
                    done.unchanged += 1
                    continue
                done.updated += 1
            new = [(e, ms) for e, ms in zip(run.epochs, run.times_ms()) if e["epoch"] > logged]
            metrics = [Metric(k, v, ms, e["epoch"]) for e, ms in new for k, v in e.items() if k != "epoch"]
            for start in range(0, len(metrics), _BATCH):
                client.log_batch(run_id, metrics=metrics[start:start + _BATCH])
            done.epochs += len(new)
            client.log_batch(run_id, tags=[RunTag(TAG + "last_epoch", str(run.last_epoch)),
                                           RunTag(TAG + "status", run.status)])
            status = MLFLOW_STATUS[run.status]
            if RunStatus.is_terminated(RunStatus.from_string(status)):
                client.set_terminated(run_id, status, end_time=run.finished_ms)
            else:
                client.update_run(run_id, status=status)
    except MlflowException as error:
        raise MasbenchError(f"MLflow refused the export to {tracking_uri}: {error.message.splitlines()[0]}") from None
    return done


def _mlflow_runs(client, experiment_id: str) -> dict[str, Any]:
    """The experiment's runs that masbench exported, by run key."""
    found: dict[str, Any] = {}
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=f"tags.`{TAG}run_key` != ''", max_results=1000,
                                  page_token=token)
        for run in page:
            found.setdefault(run.data.tags[TAG + "run_key"], run)
        token = page.token
        if not token:
            return found


def export_tensorboard(runs: list[TrackedRun], directory: str | os.PathLike) -> Exported:
    """Write ``runs`` as TensorBoard event files under ``directory``, one subdirectory per run key."""
    from masbench.text.paths import check_new_folder

    root = check_new_folder(directory, "log directory")
    require("tensorboard", "tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    root.mkdir(parents=True, exist_ok=True)
    done = Exported()
    for run in runs:
        final = root / run_directory(run)
        marker = {"run_key": run.key, "last_epoch": run.last_epoch, "status": run.status}
        if final.is_dir():
            try:
                if json.loads((final / MARKER).read_text()) == marker:
                    done.unchanged += 1
                    continue
            except (OSError, ValueError):  # no marker or a broken one: written again below
                pass
        fresh = Path(tempfile.mkdtemp(prefix=".writing-", dir=root))
        writer = SummaryWriter(log_dir=str(fresh))
        writer.add_text("masbench/settings", "\n".join(f"    {k} = {v}" for k, v in run.params.items()), 0)
        writer.add_text("masbench/tags", "\n".join(f"    {k} = {v}" for k, v in run.tags.items()), 0)
        for epoch, ms in zip(run.epochs, run.times_ms()):
            for name, value in epoch.items():
                if name != "epoch":
                    writer.add_scalar(name, value, epoch["epoch"], walltime=ms / 1000)
        writer.close()
        (fresh / MARKER).write_text(json.dumps(marker))
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=".replaced-", dir=root))
            final.rename(old / "run")
            fresh.rename(final)
            shutil.rmtree(old)
            done.updated += 1
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            fresh.rename(final)
            done.created += 1
        done.epochs += len(run.epochs)
    return done


def run_directory(run: TrackedRun) -> Path:
    """A run's directory, which TensorBoard names it by: ``DATASET/MODEL/TITLE KEY`` (the key keeps it one per
    run; the data set and model group the runs whose names alone would look alike)."""
    parts = (run.tags[TAG + "dataset"], run.tags[TAG + "model"], f"{run.title} {run.key}")
    return Path(*("".join(c if c.isalnum() or c in "[]=,.-_ " else "_" for c in part) for part in parts))


def _finite(value: Any) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _ms(value: Any) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        return int(value.timestamp() * 1000)
    except (AttributeError, ValueError):  # NaT
        return None
