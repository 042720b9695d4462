"""Bugs found by attacking the merged mix, model and schedule features as a hostile user."""

from __future__ import annotations

import pytest

from masbench.errors import MasbenchError
from masbench.spec import make_spec


@pytest.mark.parametrize("lambdas", [dict(lambda_adam=0.3, lambda_sgd=0.7), dict(lambda_adam=0.3), dict(lambda_sgd=0.9)])
def test_lambdas_with_a_linear_schedule_are_refused_not_a_second_cell(lambdas):
    # A linear schedule sets the lambdas: with them the run trained as the schedule alone, in another cell,
    # and the report showed it as MAS at these lambdas.
    with pytest.raises(MasbenchError, match="the schedule sets the lambdas"):
        make_spec(lambda_schedule="linear:1:0", **lambdas)


def test_default_lambdas_with_a_linear_schedule_stay_the_one_cell():
    plain = make_spec(lambda_schedule="linear:1:0")
    assert make_spec(lambda_schedule="linear:1:0", lambda_adam=0.5, lambda_sgd=0.5).config_key == plain.config_key
    assert make_spec(lambda_adam=0.3, lambda_sgd=0.7).lambda_adam == 0.3  # constant keeps its lambdas
