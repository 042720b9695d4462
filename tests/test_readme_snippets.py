"""The README's Python examples run as written (tiny sizes), so that the first code a user copies works."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)


def block(marker: str) -> str:
    found = [code for code in python_blocks() if marker in code]
    assert len(found) == 1, f"expected one README python block holding {marker!r}, found {len(found)}"
    return found[0]


def test_every_python_block_is_one_of_these_tests():
    # A block added to the README without a test here would go unchecked.
    assert [("Mix(" in code, "Trainer(" in code) for code in python_blocks()] == [(True, False), (False, True)]


def test_mas_and_mix_snippet_steps_both_optimizers(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block("Mix("), "README.md (Mix)", "exec"), namespace)
    from masbench.optim import MAS, Mix

    assert isinstance(namespace["mas"], MAS) and isinstance(namespace["mix"], Mix)
    # Each took one step: its state holds a step count for the layer's weight.
    for name in ("mas", "mix"):
        assert namespace[name].state, f"{name} took no step"


@pytest.mark.slow  # importing transformers' Trainer takes seconds
@pytest.mark.skipif(importlib.util.find_spec("accelerate") is None,
                    reason="the Trainer needs accelerate: pip install -e '.[hf]'")
def test_trainer_snippet_trains_with_mas(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block("Trainer("), "README.md (Trainer)", "exec"), namespace)
    from masbench.optim import MAS

    trainer = namespace["trainer"]
    assert trainer.state.global_step == 4
    # The Trainer may wrap the optimizer (accelerate's AcceleratedOptimizer); the one inside is MAS.
    inner = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    assert isinstance(inner, MAS)
    assert inner.param_groups[0]["lambda_adam"] == 0.3
