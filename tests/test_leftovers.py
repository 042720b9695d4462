"""Leftovers of the hostile-input and packed-sweep work: one text per schedule, strict numbers, the packs a
dry run shows. The command-line cases (one line, nothing written) are in test_hostile.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from conftest import write_image_folder
from masbench.data import load_dataset
from masbench.errors import MasbenchError
from masbench.grid.optimizers import check_lambda_schedules
from masbench.grid.grids import GridSpec
from masbench.optim import typed_arguments
from masbench.spec import RunSpec, make_spec
from masbench.text.lambda_schedule import normalise_lambda_schedule
from masbench.text.numbers import integer, number

# --- a lambda schedule has one text, and the cells written before keep theirs ---------------------------


@pytest.mark.parametrize(
    "spellings, canonical",
    [
        (["linear:1:0", "linear:1.0:0.0", "linear:1e0:0", "linear:1.00:-0", "linear:+1:0e5"], "linear:1:0"),
        (["linear:0.7:0.3", "linear:0.70:.3", "linear:7e-1:0.300"], "linear:0.7:0.3"),
        (["linear:1:0:100", "linear:1.0:0.0:100.0", "linear:1:0:1e2", "linear:1:0:0100"], "linear:1:0:100"),
        (["linear:0.5:0.25:3", "linear:0.50:0.250:3.0"], "linear:0.5:0.25:3"),
        (["constant"], "constant"),
    ],
)
def test_a_lambda_schedule_has_one_text_and_one_cell(spellings, canonical):
    specs = [make_spec(lambda_schedule=text, epochs=100) for text in spellings]
    assert {spec.lambda_schedule for spec in specs} == {canonical}
    assert {spec.config_key for spec in specs} == {make_spec(lambda_schedule=canonical, epochs=100).config_key}
    assert normalise_lambda_schedule(canonical) == canonical


def test_the_pinned_schedule_cells_keep_their_keys():
    # The config key of the authors' dynamic variant as masbench wrote it before texts were normalised
    # (test_open_axes.KNOWN_KEYS): the canonical form of every spelling is the one that cell already has.
    assert make_spec(lambda_schedule="linear:1.0:0.0:100.0", epochs=100).config_key == "8f9680ee36817d1b9d52"
    assert make_spec(lambda_schedule="linear:0.70:0.30").name == "mas[lambda_schedule='linear:0.7:0.3',lr=0.001]"


def test_a_sweep_refuses_one_schedule_given_twice_in_two_spellings():
    with pytest.raises(ValueError, match="gives 'linear:1:0' twice"):
        check_lambda_schedules(["constant", "linear:1:0", "linear:1.0:0.0"])
    assert check_lambda_schedules(["constant", "linear:1.0:0.0"]) == ["constant", "linear:1:0"]


@pytest.mark.parametrize("text", ["linear:٠.٧:0.3", "linear:0.7:0_3", "linear:１:0", "linear:1:0:"])
def test_a_lambda_schedule_is_written_in_ascii_digits(text):
    with pytest.raises(MasbenchError, match="Invalid lambda schedule"):
        make_spec(lambda_schedule=text)


@pytest.mark.parametrize(
    "spellings, canonical",
    [
        (["step:30:0.1", "step:030:1e-1", "step:30:0.10", "step:30:+.1"], "step:30:0.1"),
        (["multistep:100,150:0.1", "multistep:100, 150:.1"], "multistep:100,150:0.1"),
        (["cosine", "cosine:0", "cosine:00"], "cosine"),
    ],
)
def test_an_lr_schedule_has_one_text_and_one_cell(spellings, canonical):
    specs = [make_spec(lr_schedule=text, epochs=200) for text in spellings]
    assert {spec.lr_schedule for spec in specs} == {canonical}
    assert len({spec.config_key for spec in specs}) == 1


@pytest.mark.parametrize("text", ["step:３0:0.1", "step:30:٠.١", "step:30:0_1", "linear-warmup:²"])
def test_an_lr_schedule_is_written_in_ascii_digits(text):
    # 0_1 read as float is 1.0: another schedule than the text seems to say, not a typo refused
    with pytest.raises(MasbenchError, match="Invalid lr schedule: .* digits 0-9"):
        make_spec(lr_schedule=text, epochs=200)


# --- strict numbers -----------------------------------------------------------------------------------


def test_a_quoted_pack_size_in_a_benchmarks_file_is_refused_like_other_strict_numbers():
    assert GridSpec(pack=7).pack == 7 and GridSpec(pack="auto").pack == "auto" and GridSpec(pack=False).pack == "off"
    with pytest.raises(ValueError, match=r"Invalid pack: '7' is text, not an integer \(write it without quotes"):
        GridSpec(pack="7")


@pytest.mark.parametrize("text", ["AUTO", "Off", "seven", ""])
def test_a_pack_word_that_is_not_auto_or_off_says_what_is_valid_not_to_drop_quotes(text):
    expected = f"Invalid pack: {text!r} (valid: an integer of members per pack in [2, 1024], auto or off)"
    with pytest.raises(ValueError, match=re.escape(expected)):
        GridSpec(pack=text)


@pytest.mark.parametrize("text, value", [("3", 3), (" 3", 3), ("-1", -1), ("+2", 2), ("2147483648", 2**31)])
def test_an_integer_option_takes_ascii_digits(text, value):
    assert integer(text) == value and type(integer(text)) is int


@pytest.mark.parametrize("text", ["３", "٣", "1_0", "3.0", "1e3", "", "three", "²"])
def test_an_integer_option_refuses_other_digits_and_forms(text):
    with pytest.raises(ValueError, match="is not an integer in digits 0-9"):
        integer(text)


@pytest.mark.parametrize("text, value", [("0.1", 0.1), ("1e-3", 1e-3), (".5", 0.5), ("3", 3.0), ("-2.", -2.0),
                                         ("1E+2", 100.0), ("inf", float("inf")), ("-Infinity", float("-inf"))])
def test_a_number_option_takes_ascii_digits(text, value):
    assert number(text) == value


def test_a_number_option_passes_nan_on_for_the_range_check_to_name():
    assert number("nan") != number("nan")


@pytest.mark.parametrize("text", ["٠.١", "０.１", "0_1", "1e", "0x10", "", "1,5", "infinite"])
def test_a_number_option_refuses_other_digits_and_forms(text):
    with pytest.raises(ValueError, match="is not a number in digits 0-9"):
        number(text)


# --- every image suffix the layout lists is decoded -----------------------------------------------------


def _convert(root: Path, fmt: str, suffix: str) -> None:
    """Each PNG under ``root`` as ``fmt`` (same pixels), the PNG removed."""
    from PIL import Image

    for png in sorted(root.rglob("*.png")):
        with Image.open(png) as image:
            image.convert("RGB").save(png.with_suffix(suffix), fmt)
        png.unlink()


@pytest.mark.parametrize("fmt, suffix", [("BMP", ".bmp"), ("TIFF", ".tif"), ("TIFF", ".tiff")])
def test_bmp_and_tiff_folders_decode_to_the_pixels_of_their_png(fmt, suffix, tmp_path):
    png = load_dataset(f"imagefolder:{write_image_folder(tmp_path / 'png')}", tmp_path / "cache")
    other = write_image_folder(tmp_path / fmt)
    _convert(other, fmt, suffix)
    assert not list(other.rglob("*.png")) and len(list(other.rglob(f"*{suffix}"))) == 48
    data = load_dataset(f"imagefolder:{other}", tmp_path / "cache")
    assert data.classes == png.classes
    for split in ("train", "test"):
        assert getattr(data, split).images.equal(getattr(png, split).images)
        assert getattr(data, split).labels.equal(getattr(png, split).labels)


@pytest.mark.parametrize("body", [b"BM" + b"\x00" * 40, b"II*\x00garbage", b"BM\xff\xff\xff\x7f"])
def test_a_broken_bmp_or_tiff_is_one_line(body, tmp_path):
    root = write_image_folder(tmp_path / "images")
    (root / "train" / "cat" / "000.png").unlink()
    (root / "train" / "cat" / "000.bmp").write_bytes(body)
    with pytest.raises(MasbenchError, match="cannot decode image .*000.bmp") as error:
        load_dataset(f"imagefolder:{root}", tmp_path / "cache")
    assert "\n" not in str(error.value)


# --- optimizer arguments without annotation -------------------------------------------------------------


class Loose(torch.optim.Optimizer):
    """An optimizer whose keywords have no annotations: their types come from defaults, else the values."""

    def __init__(self, params, lr=1e-3, count=3, ratio=0.5, maybe=None, *, free):
        if not isinstance(count, int) or (maybe is not None and not isinstance(maybe, (int, float))):
            raise ValueError(f"Invalid count: {count!r}")
        super().__init__(params, dict(lr=lr, count=count, ratio=ratio, maybe=maybe, free=free))

    def step(self, closure=None):
        return None


@pytest.mark.parametrize(
    "given, typed",
    [
        ({"count": "4", "free": "x"}, {"count": 4, "free": "x"}),  # int default: an int
        ({"ratio": "1", "free": "3"}, {"free": 3, "ratio": 1.0}),  # float default: a float; none: as written
        ({"free": "3.0"}, {"free": 3.0}),
        ({"free": 3, "maybe": 7}, {"free": 3, "maybe": 7}),  # as YAML gives them
        ({"free": "-2", "maybe": "2.5"}, {"free": -2, "maybe": 2.5}),
        ({"free": "1e3"}, {"free": 1000.0}),
        ({"free": "true"}, {"free": True}),
    ],
)
def test_an_argument_without_annotation_is_typed_by_its_default_else_its_value(given, typed):
    name = "test_leftovers:Loose"
    out = typed_arguments(name, given, RunSpec.model_fields)
    assert out == typed and {k: type(v) for k, v in out.items()} == {k: type(v) for k, v in typed.items()}
    assert make_spec(optimizer=name, optimizer_args=given).optimizer_args == out


@pytest.mark.parametrize("given", [{"free": "٣"}, {"count": "1_0", "free": 1}, {"ratio": "０.５", "free": 1}])
def test_an_argument_is_written_in_ascii_digits(given):
    with pytest.raises(MasbenchError, match="expected a number in digits 0-9"):
        make_spec(optimizer="test_leftovers:Loose", optimizer_args=given)
