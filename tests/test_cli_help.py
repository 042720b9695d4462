"""``--help`` at 80 columns: every option's text whole (no '…'), and every default shown."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from masbench.cli import app
from masbench.spec import RunSpec


def _commands(command, path=()):
    if hasattr(command, "commands"):
        yield path, command
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield path, command


COMMANDS = list(_commands(typer.main.get_command(app)))


def _help(path) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


def _blocks(text: str) -> dict[str, str]:
    """Each option's lines of the help, by its first name: from its line to the next option's."""
    blocks: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        if line.startswith("  -"):
            name = line.split()[0].rstrip(",")
            blocks[name] = line
        elif name is not None and line.startswith("   "):
            blocks[name] += "\n" + line
        else:
            name = None
    return blocks


@pytest.mark.parametrize("path, command", COMMANDS, ids=[" ".join(p) or "masbench" for p, _ in COMMANDS])
def test_help_is_whole_at_80_columns_and_shows_every_default(path, command):
    text = _help(path)
    assert not [line for line in text.splitlines() if line.rstrip().endswith("…")], text
    commands = text.partition("\nCommands:\n")[2]
    assert not [line for line in commands.splitlines() if line.rstrip().endswith("...")], commands
    blocks = _blocks(text)
    for param in command.params:
        if param.param_type_name != "option" or param.hidden:
            continue
        block = blocks[param.opts[0]]
        assert " ".join(block.split()[1:]).strip() or param.opts[0] == "--help", f"{param.opts[0]} has no help"
        a_plain_flag_off = param.is_flag and not param.secondary_opts and not param.default
        if param.default is not None and not a_plain_flag_off:
            assert "[default:" in block, f"masbench {' '.join(path)} {param.opts[0]} hides its default:\n{block}"


def test_lr_and_momentum_say_what_they_default_to():
    spec = RunSpec()
    run = _blocks(_help(["run"]))
    assert f"(default {spec.lr:g}, every optimizer)" in " ".join(run["--lr"].split())
    assert f"(default {spec.momentum:g}, every optimizer)" in " ".join(run["--momentum"].split())
    sweep = _blocks(_help(["sweep"]))
    for name in ("--lr", "--momentum"):
        assert "Default: the benchmark's, per optimizer" in " ".join(sweep[name].split())


def test_the_gates_tolerance_says_what_the_gate_does():
    """A drop equal to --tolerance passes (``test_exact_thresholds``): the help must not call it a drop that counts."""
    tolerance = " ".join(_blocks(_help(["compare"]))["--tolerance"].split())
    assert "regresses when it drops by more than this" in tolerance and "a drop equal to it passes" in tolerance
    assert "smallest drop" not in tolerance
