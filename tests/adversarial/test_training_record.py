"""The training bookkeeping that the JAX and the torch trainers share (`record_epoch`,
`gradient_counts`, `history_dataset`)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from advdyn.adversarial.attacks import Attack
from advdyn.adversarial.training import HISTORY, gradient_counts, history_dataset, record_epoch


def _eval(loss: float) -> dict:
    return {"adv_loss": loss, "adv_acc": 0.5, "clean_loss": 0.4, "clean_acc": 0.75}


def test_record_epoch_appends_every_variable_and_stops_a_diverged_run():
    rec: dict[str, list[float]] = {k: [] for k in HISTORY}
    record_epoch(rec, 0, lr=0.1, train_loss=0.9, train_acc=0.6, test_eval=_eval(0.7),
                 grad_evals=12, elapsed=1.5)
    assert {k: v[0] for k, v in rec.items()} == {
        "lr": 0.1, "train_loss": 0.9, "train_acc": 0.6, "test_loss": 0.7, "test_acc": 0.5,
        "test_clean_loss": 0.4, "test_clean_acc": 0.75, "grad_evals": 12.0, "time": 1.5}
    with pytest.raises(FloatingPointError, match="diverged at epoch 2"):
        record_epoch(rec, 1, lr=0.1, train_loss=0.9, train_acc=0.6,
                     test_eval=_eval(math.nan), grad_evals=24, elapsed=3.0)
    ds = history_dataset(rec)
    # the diverged epoch is recorded before the refusal (as both trainers did)
    np.testing.assert_array_equal(ds["epoch"].values, [1, 2])
    assert list(ds.data_vars) == list(HISTORY)


def test_gradient_counts_per_recipe():
    pgd = Attack(eps=0.1, norm="linf", steps=3)
    assert gradient_counts(None, None, "trades") == (1, 0)  # clean: one backward pass
    assert gradient_counts(pgd, pgd, "ce") == (pgd.gradient_evaluations + 1,
                                               pgd.gradient_evaluations)
    assert gradient_counts(pgd, None, "mart")[0] == pgd.gradient_evaluations + 2
