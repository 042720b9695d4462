"""A pre-trained transformer with a sequence-classification head (the paper used bert-base-uncased)."""

from __future__ import annotations

import torch
from torch import nn

from masbench.data.fetch import load_pretrained


class SequenceClassifier(nn.Module):
    """``transformers.AutoModelForSequenceClassification`` taking a batch dict, returning logits."""

    def __init__(self, pretrained: str, num_classes: int) -> None:
        super().__init__()
        from transformers import AutoModelForSequenceClassification
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # "newly initialized classifier weights" is the point, not a warning
        hf_logging.disable_progress_bar()  # no "Loading weights" bar in the middle of a run's log
        try:
            self.model = load_pretrained(
                lambda name, **kw: AutoModelForSequenceClassification.from_pretrained(name, num_labels=num_classes, **kw),
                pretrained,
                "model",
            )
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(**inputs).logits
