"""The documented ranges: their ends are accepted and stored by both stores, one step past them is refused;
grids are counted by arithmetic that agrees with building them; the YAML loader bounds what it reads."""

from __future__ import annotations

import math

import pytest
import yaml

from conftest import write_csv, write_image_folder
from masbench.grid.benchmarks import load_benchmarks, packaged_benchmarks, plan_sweep
from masbench.grid.grids import GridSpec, expand_grid
from masbench.errors import MasbenchError
from masbench.grid.lambdas import count_lambdas, parse_lambdas
from masbench.grid.safe_yaml import MAX_NODES, BoundedLoader, expanded_size
from masbench.spec import make_spec
from masbench.text.limits import FLOAT_RANGES, INT_RANGES, INT32_MAX, STR_LIMITS
from masbench.text.shown import MAX_LINE, one_line, shown

RUN_INTS = {k: v for k, v in INT_RANGES.items() if k != "seeds"}


def _widest_spec():
    """A spec with every bounded field at the top of its range."""
    values = {name: high for name, (_, high) in RUN_INTS.items()}
    values.update({name: high for name, (_, high) in FLOAT_RANGES.items()})
    values.update(benchmark="b" * STR_LIMITS["benchmark"], optimizer="sgd", momentum=1.0, dampening=0.0)
    return make_spec(**values)


def test_the_top_of_every_range_is_stored_and_read_back_by_both_stores(db_url):
    from masbench.store import Store
    from masbench.sweep import run_values

    spec = _widest_spec()
    store = Store(db_url)
    try:
        run = store.ensure_run(run_values(spec))
        again = store.get_run(spec.key)
    finally:
        store.close()
    assert again.id == run.id
    assert (again.seed, again.epochs, again.batch_size) == (INT32_MAX, RUN_INTS["epochs"][1], RUN_INTS["batch_size"][1])
    assert again.lr == FLOAT_RANGES["lr"][1] and again.benchmark == spec.benchmark
    assert again.config["spec"]["train_subset"] == INT32_MAX


@pytest.mark.parametrize("name", sorted(RUN_INTS))
def test_integers_past_either_end_are_refused(name):
    low, high = RUN_INTS[name]
    make_spec(**{name: low})
    for value, bound in ((low - 1, f">= {low}"), (high + 1, f"<= {high}")):
        with pytest.raises(MasbenchError, match=f"Invalid {name}: {value} \\(must be {bound}"):
            make_spec(**{name: value})


@pytest.mark.parametrize("name", sorted(FLOAT_RANGES))
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, "past"])
def test_floats_must_be_finite_and_in_range(name, value):
    low, high = FLOAT_RANGES[name]
    value = high * 2 + 1 if value == "past" else value
    with pytest.raises(MasbenchError, match=f"Invalid {name}: "):
        make_spec(**{name: value})


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(benchmark="b" * 256), "is 256 characters (at most 255)"),
        (dict(benchmark="a\x00b"), "holds a control character"),
        (dict(dataset="csv:" + "x" * 2000), "is 2004 characters (at most 1024)"),
        (dict(lambda_schedule="linear:0.7:0.3:inf"), "'inf' is not a finite number"),
        (dict(lambda_schedule="linear:0.7:nan"), "'nan' is not a finite number"),
        (dict(lambda_schedule="linear:0.7:0.3:1000001"), "EPOCHS '1000001' is out of range"),
        (dict(lambda_schedule="linear:0.7:0.3:2.5"), "EPOCHS '2.5' is out of range"),
        (dict(betas=(0.9, math.inf)), "Invalid betas[1]: inf"),
        (dict(seed=10**5000), "Invalid seed: an integer of about 5001 digits"),
    ],
)
def test_strings_schedules_and_huge_values_are_one_short_line(values, message):
    with pytest.raises(MasbenchError) as error:
        make_spec(**values)
    assert message in str(error.value) and "\n" not in str(error.value) and len(str(error.value)) < 300


def test_a_valid_schedule_still_passes():
    assert make_spec(lambda_schedule="linear:0.7:0.3:5").lambda_schedule == "linear:0.7:0.3:5"


def test_shown_never_carries_a_huge_value_whole():
    nested = ["x"] * 10
    for _ in range(8):
        nested = [nested] * 10  # 10^9 leaves, shared
    for value in (nested, 10**10000, "y" * 10**6, {str(i): i for i in range(10**4)}):
        assert len(shown(value)) < 100
    assert len(one_line("word " * 10**5)) == MAX_LINE


# --- grids: counted, not built -----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["0.3..0.7", "0..1:0.3", "0..1:0.001", "0.3..0.7:0.05", "0.2,0.25,0.4", "0..0", "1"])
def test_counting_agrees_with_building(text):
    assert count_lambdas(text) == len(parse_lambdas(text))


@pytest.mark.parametrize("text, count", [("0.3..0.7:0.0000001", 4_000_001), ("0..1:1e-999999999", 10**18 + 1)])
def test_huge_ranges_are_counted_without_being_built(text, count):
    assert count_lambdas(text) == count
    with pytest.raises(MasbenchError, match="values \\(at most 10,000\\)"):
        parse_lambdas(text, limit=10_000)


@pytest.mark.parametrize("text", ["0..Infinity", "-Infinity..0", "0..1:Infinity", "NaN", "0.1,sNaN", "0..1e999999"])
def test_infinite_or_out_of_range_ends_are_refused(text):
    with pytest.raises(MasbenchError, match="Invalid lambda"):
        count_lambdas(text)


def test_lambda_text_is_bounded_before_its_numbers_are_read():
    with pytest.raises(MasbenchError, match="characters \\(at most 10,000\\)"):
        count_lambdas("0.5," * 3000 + "0.5")


@pytest.mark.parametrize(
    "values",
    [dict(models=["mlp", "cnn"], lambdas="0.3..0.7", seeds=3), dict(lambdas="0.5", baselines=[], seed_list=[4, 9]),
     dict(lambdas="0..1:0.25", baselines=["adam", "sgd", "adamw"])],
)
def test_cell_count_agrees_with_the_expanded_grid(values):
    grid = GridSpec(**values)
    assert grid.cell_count() == len(expand_grid(grid, None))


def test_the_cell_cap_is_exact_and_bounded(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text("benchmarks:\n  b:\n    lambdas: '0.5'\n    baselines: []\n    seeds: 12\n")
    _, cells = plan_sweep(benchmark="b", benchmarks_path=path, max_cells=12)
    assert len(cells) == 12
    with pytest.raises(MasbenchError, match="12 runs .* more than the cap of 11"):
        plan_sweep(benchmark="b", benchmarks_path=path, max_cells=11)
    for bad in (0, 10**9, True):
        with pytest.raises(MasbenchError, match="Invalid --max-cells"):
            plan_sweep(benchmark="b", benchmarks_path=path, max_cells=bad)


def test_a_large_grid_in_the_file_is_cheap_until_it_is_swept(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text("benchmarks:\n  small: {lambdas: '0.5'}\n  big:\n    lambdas: 0..1:0.000001\n    seeds: 1000\n")
    _, cells = plan_sweep(benchmark="small", benchmarks_path=path)
    assert len(cells) == 3
    with pytest.raises(MasbenchError, match="1,000,003,000 runs"):
        plan_sweep(benchmark="big", benchmarks_path=path)


# --- the YAML loader ---------------------------------------------------------------------------------


def test_the_loader_reads_the_packaged_file_as_safe_load_does():
    text = packaged_benchmarks().read_text()
    assert yaml.load(text, Loader=BoundedLoader) == yaml.safe_load(text)


def test_merge_keys_and_shared_settings_still_load(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text("benchmarks:\n  a: &common\n    lr: 0.01\n    momentum: 0.9\n"
                    "  b:\n    <<: *common\n    models: [cnn]\n")
    grid = load_benchmarks(path).get("b").grid_specs()[0]
    assert (grid.lr, grid.momentum, grid.models) == (0.01, 0.9, ["cnn"])


@pytest.mark.parametrize("text, value", [
    ("1e-3", 0.001), ("1E-3", 0.001), ("-2e+4", -20000.0), ("1.0e8", 1e8), (".5e-3", 0.0005), ("3e2", 300.0),
    ("1.5", 1.5), ("10", 10), ("'1e-3'", "1e-3"), ("1e", "1e"), ("e5", "e5"), ("1e-3x", "1e-3x"),
])
def test_exponents_are_numbers_as_in_yaml_1_2(text, value):
    """PyYAML (YAML 1.1) reads ``1e-3`` as text; the benchmarks file, strict about numbers, reads it as YAML 1.2."""
    loaded = yaml.load(f"lr: {text}\n", Loader=BoundedLoader)["lr"]
    assert loaded == value and type(loaded) is type(value)


@pytest.mark.parametrize("text, line", [
    ("a: 1\nb: 2\na: 3\n", 3),
    ("a: 1\n'a': 2\n", 2),
    ("top:\n  x: [1]\n  y: 2\n  x: {}\n", 4),
    ("- {k: 1, k: 1}\n", 1),
])
def test_a_key_given_twice_is_refused_with_its_lines(text, line):
    with pytest.raises(yaml.YAMLError, match="given twice in one mapping") as caught:
        yaml.load(text, Loader=BoundedLoader)
    assert caught.value.problem_mark.line + 1 == line


def test_a_key_merged_in_may_be_overridden(tmp_path):
    text = "base: &b {lr: 0.1, momentum: 0.9}\nover:\n  <<: *b\n  lr: 0.2\ntwo:\n  <<: [*b, {lr: 0.3}]\n"
    loaded = yaml.load(text, Loader=BoundedLoader)
    assert loaded["over"] == {"lr": 0.2, "momentum": 0.9} and loaded == yaml.safe_load(text)


@pytest.mark.parametrize("levels, refused", [(3, False), (4, True)])
def test_alias_expansion_is_counted_to_the_limit(levels, refused):
    """Level k expands to (10^(k+2) - 1) / 9 nodes: 12,349 for the document up to level 3, 123,461 to level 4."""
    lines = ["a0: &a0 [" + ", ".join(["x"] * 10) + "]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    text = "\n".join(lines) + "\n"
    expanded = sum((10 ** (k + 2) - 1) // 9 + 1 for k in range(levels + 1)) + 1  # values, their keys, the root
    assert (expanded > MAX_NODES) == refused
    assert expanded_size(yaml.compose(text, Loader=yaml.SafeLoader), 10**9) == expanded
    if refused:
        with pytest.raises(yaml.YAMLError, match="expand to more than"):
            yaml.load(text, Loader=BoundedLoader)
    else:
        assert len(yaml.load(text, Loader=BoundedLoader)) == levels + 1


def test_grids_empty_is_an_error_and_grids_absent_is_one_grid(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text("benchmarks:\n  b:\n    grids: []\n")
    with pytest.raises(MasbenchError, match=f"^{path}: benchmark 'b': 'grids' is empty"):
        load_benchmarks(path)


# --- data and toy ------------------------------------------------------------------------------------


def test_a_one_class_image_folder_is_refused(tmp_path):
    from masbench.data import load_dataset

    root = write_image_folder(tmp_path / "img", classes=("cat",), per_class=(3, 2))
    with pytest.raises(MasbenchError, match="has one class \\('cat'\\) in its training split"):
        load_dataset(f"imagefolder:{root}")


def test_a_header_only_test_file_is_refused_before_any_tokenizer(tmp_path):
    from masbench.data.text import raw_csv

    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    with pytest.raises(MasbenchError, match="empty.csv has no rows below its header"):
        raw_csv(str(write_csv(tmp_path / "r.csv")), tmp_path, text_column=None, label_column=None,
                test_file=str(empty), test_fraction=0.2)


def test_toy_caps_its_steps_and_checks_the_plot_before_drawing(tmp_path):
    from masbench.optim.toy import MAX_STEPS, check_plot_path, plot_toy, run_toy

    with pytest.raises(ValueError, match=f"Invalid steps: {MAX_STEPS + 1}"):
        run_toy("abs", steps=MAX_STEPS + 1)
    results = run_toy("abs", steps=3)
    with pytest.raises(MasbenchError, match="does not exist"):
        plot_toy("abs", results, str(tmp_path / "missing" / "x.png"))
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(MasbenchError, match="it is a folder"):
        check_plot_path(tmp_path / "dir.png")
    assert check_plot_path(tmp_path / "x.svg") == tmp_path / "x.svg"
