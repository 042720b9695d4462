"""``masbench export mlflow|tensorboard``: a store's runs in an experiment tracker (extras, imported on use)."""

from __future__ import annotations

from typing import Annotated

import typer

from masbench.cli.options import DbOpt
from masbench.cli.output import WholeHelp
from masbench.cli.results import FilterBenchmark, FilterDataset, FilterModel, for_filters

export_app = typer.Typer(help="Write the store's runs into an experiment tracker: MLflow or TensorBoard.",
                         no_args_is_help=True, rich_markup_mode=None, cls=WholeHelp)


def _runs(db, dataset, model, benchmark):
    from masbench.errors import MasbenchError
    from masbench.report.trackers import tracked_runs
    from masbench.store import open_for_reading

    store = open_for_reading(db)
    runs, left_out = tracked_runs(store, dataset=dataset, model=model, benchmark=benchmark)
    if left_out:
        count = "1 run" if len(left_out) == 1 else f"{len(left_out)} runs"
        typer.echo(f"{count} left out of the export, as reports leave them out of their numbers: failing the store's "
                   f"checks (masbench check --db URL lists every problem)", err=True)
    if not runs:
        raise MasbenchError(f"no runs to export in {store.masked_url}{for_filters(dataset, model, benchmark)}"
                            + (f" ({len(left_out)} left out: failing the store's checks)" if left_out else ""))
    return runs


@export_app.command()
def mlflow(
    tracking_uri: Annotated[str, typer.Option(help="MLflow's tracking URI: a server (http://host:5000) or a "
                                                   "database (sqlite:///mlflow.db); a directory needs "
                                                   "MLFLOW_ALLOW_FILE_STORE=true from MLflow 3 on.")],
    experiment: Annotated[str, typer.Option(help="The MLflow experiment the runs go into (made if absent).")]
    = "masbench",
    dataset: FilterDataset = None,
    model: FilterModel = None,
    benchmark: FilterBenchmark = None,
    db: DbOpt = None,
) -> None:
    """Each run as an MLflow run: settings as params, epochs as metrics by step, cell and run key as tags.

    Exporting again adds no run twice: a run is found by its tag masbench.run_key and only its new epochs
    are logged.
    """
    from masbench.report.trackers import export_mlflow, require

    require("mlflow", "mlflow")
    done = export_mlflow(_runs(db, dataset, model, benchmark), tracking_uri, experiment)
    typer.echo(done.line(f"MLflow {tracking_uri}, experiment {experiment!r}"))


@export_app.command()
def tensorboard(
    directory: Annotated[str, typer.Argument(help="The log directory (tensorboard --logdir DIRECTORY).")],
    dataset: FilterDataset = None,
    model: FilterModel = None,
    benchmark: FilterBenchmark = None,
    db: DbOpt = None,
) -> None:
    """Each run as TensorBoard event files, one subdirectory per run, scalars by epoch.

    Exporting again skips the runs already complete there and rewrites the others whole.
    """
    from masbench.report.trackers import export_tensorboard, require

    require("tensorboard", "tensorboard")
    done = export_tensorboard(_runs(db, dataset, model, benchmark), directory)
    typer.echo(done.line(directory))
