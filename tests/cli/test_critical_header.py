"""The first lines of `advdyn critical-eps` and `advdyn sme` name what is actually run."""

from __future__ import annotations

from advdyn.cli.critical import _header
from advdyn.config.critical import default_critical_config


def test_header_names_the_loss_and_the_fine_tuning_attack():
    cfg = default_critical_config().with_overrides(**{"train.loss": "trades",
                                                       "fast.attack": "fgm"})
    line = _header(cfg)
    assert "TRADES training" in line and "fine-tuning: FGM" in line
    assert "fine-tuning: PGD" not in line


def test_header_of_the_default():
    line = _header(default_critical_config())
    assert "cross-entropy training with sgd" in line and "fine-tuning: PGD" in line


def test_sme_header_names_the_problem_only_for_the_parts_that_use_it():
    from advdyn.cli.sme import _header as sme_header
    from advdyn.config.sme import default_sme_config

    cfg = default_sme_config()
    assert "eps = 0.3" not in sme_header(cfg, ["digits"])
    assert "d = 2, eps = 0.3" in sme_header(cfg, ["minimax"])
    assert "risks: eta" in sme_header(cfg, None)
