"""advdyn's strong evaluation against the reference AutoAttack (Croce and Hein's own code,
``pyautoattack``, the optional extra ``advdyn[reference]``; CI installs it with
``--no-deps``): on the same torch MLPs and the same digits, advdyn's robust accuracy is at
most AutoAttack standard's plus 0.4 points at every budget of issue 25."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="the reference check runs torch models")
pytest.importorskip(
    "pyautoattack",
    reason="the reference AutoAttack is not installed: pip install --no-deps "
           "'pyautoattack==0.2.0' (the extra advdyn[reference])")

from advdyn.adversarial.reference import (
    autoattack_accuracy,
    digits_torch_mlps,
    strong_accuracy,
)

BUDGETS = [("linf", 8 / 255), ("linf", 0.1), ("linf", 0.15), ("l2", 0.5)]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # eager torch on tiny batches: with two intra-op threads on a busy 2-core machine every
    # call waits for a core (Square's 5000 queries took 300 s instead of 12 s)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _compare(models, data, n, steps, square_queries=5000, attacks=None, budgets=BUDGETS):
    x = data.x_test[:n].reshape(-1, 1, 8, 8)
    y = data.y_test[:n]
    rows = []
    for name, module in models.items():
        for norm, eps in budgets:
            extra = {} if attacks is None else {"attacks": attacks}
            ref = autoattack_accuracy(module, x, y, eps, norm, steps,
                                      square_queries=square_queries, **extra)
            ours = strong_accuracy(module, x, y, eps, norm, steps)
            assert ours["clean_acc"] == pytest.approx(ref["clean_acc"], abs=1e-12)
            rows.append((name, norm, eps, ours["adv_acc"], ref["robust_acc"]))
    # 0.4 points: the bound (both evaluations on the same points, so the comparison
    # is paired; below 250 points it means "no sample more")
    bad = [r for r in rows if r[3] > r[4] + 0.004 + 1e-12]
    assert not bad, f"advdyn weaker than AutoAttack (model, norm, eps, advdyn, reference): {bad}"
    return rows


def test_strong_evaluation_as_strong_as_autoattack_small():
    # default run: the PGD-trained MLP after 5 epochs, 60 test digits, 20 iterations (the
    # critical-eps default), against the reference's gradient attacks APGD-CE and APGD-T
    # (FAB-T and Square broke no sample beyond them in any cell of the 500-point benchmark,
    # benchmarks/bench_autoattack_reference.py; the full standard order runs under -m slow).
    # At 10 iterations advdyn missed one sample at l2 0.5 (41.7% vs 40.0%): the reference
    # then halves the step after every iteration past the second. Two of the four budgets,
    # one per norm (the smallest l-inf one, and l2 0.5 where that miss was); all four under
    # -m slow
    models, data = digits_torch_mlps(epochs=5, kinds=("pgd",))
    _compare(models, data, 60, 20, attacks=("apgd-ce", "apgd-t"),
             budgets=[BUDGETS[0], BUDGETS[3]])


@pytest.mark.slow
@pytest.mark.parametrize("steps", [20, 100])
def test_strong_evaluation_as_strong_as_autoattack_full(steps):
    # issue 25's table: clean and PGD-trained MLPs, the 500 test digits
    models, data = digits_torch_mlps()
    _compare(models, data, 500, steps)
