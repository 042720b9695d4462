"""The metric store's tables, in SQLAlchemy 2.0's typed style.

``runs``: one row per run (a cell and a seed), unique on ``key`` (the hash of
its canonical config); ``config_key`` (the same hash without the seed) is the
cell's identity, indexed, which reports group by. A claimed run holds a lease
until ``lease_expires_at``, a time of the database server's clock.
``epochs``: one row per (run, epoch), unique on that pair, so that a repeated
epoch replaces its row instead of adding one. ``meta`` records the schema
version and the store's identity (``store_id``, a UUID that checkpoints name).

Version 3 adds ``runs.weights`` (a mix's components and their weights, as JSON;
NULL for a single optimizer or MAS, whose weights are ``lambda_adam`` and
``lambda_sgd``) and ``epochs.val_loss`` / ``epochs.val_acc`` (NULL without a
validation split).

Version 4 adds the tables of ``masbench tune``: ``tunes`` (one row per tune, unique on ``key``, the hash of
its canonical settings) and ``trials`` (its trials: per optimizer label, phase ``search`` or ``final`` and
number, the hyperparameters tried and the key of the run that trains them). A trial names its run by key,
not by id, so that its row can be written before the run's. Runs may be ``pruned`` (stopped early by a tune).

Version 5 adds the index ``ix_epochs_run_id_val_acc`` on ``epochs (run_id, val_acc, epoch, test_acc)``: the
report's one scan over epochs reads it alone, and it finds a run's earliest epoch of its best validation
accuracy, and that epoch's test accuracy, in one look-up (``summaries.summary_select``). No column changes.
Version 6 adds the partial index ``ix_epochs_problem`` on ``epochs (run_id)`` where a row fails a check of its
own: a report flagged a run by one look-up there.

Version 7 adds ``summaries``: one row per run with epochs, what reports read of them (best, last and
best-validation epoch's accuracies, and the counts the checks need), kept equal to the epochs by the
database's own triggers on ``epochs`` (``masbench.store.summaries``), so that a report reads one row per
run instead of every epoch, whoever wrote the epochs. It drops ``ix_epochs_problem``: the summaries count
the rows that index found.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SCHEMA_VERSION = 7

STATUSES = ("pending", "running", "completed", "failed", "diverged", "pruned")


class Base(DeclarativeBase):
    type_annotation_map = {
        dict[str, Any]: JSON,
        datetime: DateTime(timezone=True),
        float: Float(precision=53),
        str: String(255),
    }


class Meta(Base):
    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("key", name="uq_runs_key"),
        Index("ix_runs_status", "status"),
        Index("ix_runs_dataset_model", "dataset", "model"),
        Index("ix_runs_config_key", "config_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    config_key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(512))
    benchmark: Mapped[str | None]
    dataset: Mapped[str] = mapped_column(String(1024))
    model: Mapped[str]
    optimizer: Mapped[str] = mapped_column(String(32))
    lambda_adam: Mapped[float]
    lambda_sgd: Mapped[float]
    lr: Mapped[float]
    momentum: Mapped[float]
    weight_decay: Mapped[float]
    batch_size: Mapped[int]
    epochs: Mapped[int]
    seed: Mapped[int]
    config: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    lease_expires_at: Mapped[datetime | None]  # the database server's clock; past it, the claim may be taken over
    worker: Mapped[str | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    host: Mapped[str | None]
    device: Mapped[str | None]
    versions: Mapped[dict[str, Any] | None]
    git_commit: Mapped[str | None] = mapped_column(String(64))
    weights: Mapped[dict[str, Any] | None]  # {component: weight} for a mix of optimizers; NULL otherwise

    epoch_rows: Mapped[list[Epoch]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True, order_by="Epoch.epoch"
    )


class Epoch(Base):
    __tablename__ = "epochs"
    __table_args__ = (
        UniqueConstraint("run_id", "epoch", name="uq_epochs_run_id_epoch"),
        # Covers what a summary reads of its run's epochs (summaries.summary_select), in the order it groups them.
        Index("ix_epochs_run_id_val_acc", "run_id", "val_acc", "epoch", "test_acc"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int]
    # NaN and inf are stored on purpose (a diverged epoch); SQLite keeps inf but turns NaN into NULL.
    train_loss: Mapped[float | None]
    train_acc: Mapped[float]
    test_loss: Mapped[float | None]
    test_acc: Mapped[float | None]
    lr: Mapped[float]
    lambda_adam: Mapped[float | None]
    lambda_sgd: Mapped[float | None]
    seconds: Mapped[float]
    samples_per_second: Mapped[float]
    val_loss: Mapped[float | None]  # on the validation split held out of the training set; NULL without one
    val_acc: Mapped[float | None]

    run: Mapped[Run] = relationship(back_populates="epoch_rows")


class Summary(Base):
    """What reports read of a run's epochs: the aggregates of ``summaries.summary_select`` over them, one row per
    run with epochs, written by the triggers on ``epochs`` alone (never by masbench's code)."""

    __tablename__ = "summaries"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    epoch_count: Mapped[int]  # epoch rows
    first_epoch: Mapped[int | None]
    last_epoch: Mapped[int | None]
    best: Mapped[float | None]  # the highest test accuracy
    acc_epochs: Mapped[int]  # epochs with a test accuracy
    best_val: Mapped[float | None]  # the highest validation accuracy
    val_epochs: Mapped[int]  # epochs with a validation accuracy
    bad_rows: Mapped[int]  # epoch rows that fail a check of their own (checks.row_problem)
    bad_losses: Mapped[int]  # epoch rows with a loss that is not finite (checks.loss_problem)
    final: Mapped[float | None]  # the test accuracy of the last epoch
    val_epoch: Mapped[int | None]  # the earliest epoch of best_val
    val: Mapped[float | None]  # its test accuracy: the accuracy selected on validation


class Tune(Base):
    __tablename__ = "tunes"
    __table_args__ = (UniqueConstraint("key", name="uq_tunes_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(512))
    settings: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]

    trials: Mapped[list[Trial]] = relationship(
        back_populates="tune", cascade="all, delete-orphan", passive_deletes=True, order_by="Trial.id"
    )


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("tune_id", "optimizer", "phase", "number", name="uq_trials_tune_id_optimizer_phase_number"),
        Index("ix_trials_run_key", "run_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tune_id: Mapped[int] = mapped_column(ForeignKey("tunes.id", ondelete="CASCADE"), index=True)
    optimizer: Mapped[str] = mapped_column(String(512))  # the tune's optimizer label: sgd, mas, mas[lambda_adam=0.3]
    phase: Mapped[str] = mapped_column(String(16))  # search or final
    number: Mapped[int]  # search: the trial's number from 0; final: its seed's number from 1
    params: Mapped[dict[str, Any]]
    run_key: Mapped[str] = mapped_column(String(64))

    tune: Mapped[Tune] = relationship(back_populates="trials")


EPOCH_COLUMNS = ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "lambda_adam", "lambda_sgd", "seconds",
                 "samples_per_second", "val_loss", "val_acc")
