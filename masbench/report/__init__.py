"""Reports from the store: cells (``aggregate``), tables and leaderboards (``render``), statistics between
configurations (``compare``), the regression gate (``gate``) and a tune's table and curves (``tuning``).

Every result groups runs by cell: ``config_key``, the hash of a run's canonical
config without its seed. The SQL lives with the store (``masbench.store.queries``).
"""

from masbench.report.aggregate import (
    BASELINE_ORDER,
    LABELS,
    METRIC_TITLES,
    METRICS,
    cell_names,
    cell_table,
    check_unique_seeds,
    differing_settings,
    display_names,
    leaderboard,
    left_out_note,
    run_accuracies,
    run_epochs,
    with_best,
)
from masbench.report.compare import Comparison, Difference, Selector, Side, compare, parse_selector
from masbench.report.gate import ALPHA, FLOOR, Baseline, GateResult, GateRow, allowed_drop, read_baseline, regression_gate
from masbench.report.multiple import family_size, holm
from masbench.report.significance import with_significance
from masbench.report.target import TARGET_COLUMNS, benchmark_targets, check_target, run_times, with_time_to_target
from masbench.report.render import (CSV_COLUMNS, FORMATS, Rendered, csv_table, render_leaderboard, render_tables,
                                    render_tuned)
from masbench.report.tuning import expected_max, tuned_table, tuning_curve

__all__ = [
    "ALPHA", "BASELINE_ORDER", "CSV_COLUMNS", "FLOOR", "FORMATS", "LABELS", "METRIC_TITLES", "METRICS", "Baseline",
    "Comparison",
    "Difference", "GateResult", "GateRow", "Rendered", "Selector", "Side", "allowed_drop", "cell_names", "cell_table",
    "check_unique_seeds", "compare", "csv_table", "differing_settings", "display_names", "leaderboard",
    "parse_selector", "read_baseline", "regression_gate", "render_leaderboard", "render_tables", "run_accuracies",
    "run_epochs", "left_out_note", "with_best", "family_size", "holm", "with_significance", "TARGET_COLUMNS", "benchmark_targets", "check_target", "run_times", "with_time_to_target",
    "expected_max", "render_tuned", "tuned_table", "tuning_curve",
]
