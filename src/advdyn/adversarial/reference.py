"""Check the strong evaluation against the reference AutoAttack (optional extra
``advdyn[reference]``: Croce and Hein's ``pyautoattack``, install it with ``--no-deps`` beside
the pinned torch).

`autoattack_accuracy` runs the reference implementation on a ``torch.nn.Module``;
`strong_accuracy` runs advdyn's strong evaluation
([`strong_evaluate`][advdyn.adversarial.apgd.strong_evaluate] through `TorchModel`) on the same
module and points; `digits_torch_mlps` trains the torch MLPs on the 8x8 digits that
the comparison in ``docs/critical_eps.md`` uses. Host-only: everything here runs torch
eagerly.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from advdyn.adversarial.apgd import STANDARD_ATTACKS, strong_attacks, strong_evaluate
from advdyn.adversarial.attacks import Attack

#: AutoAttack's "standard" version, in its order.
AUTOATTACK_STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
_NORMS = {"linf": "Linf", "l2": "L2"}


def _autoattack():
    try:
        import pyautoattack
    except ImportError as err:
        raise ImportError(
            "the reference check needs pyautoattack: pip install --no-deps "
            "'pyautoattack==0.2.0' (or the extra advdyn[reference])") from err
    return pyautoattack


def autoattack_accuracy(module, x, y, eps: float, norm: str = "linf", steps: int = 100,
                        attacks: tuple[str, ...] = AUTOATTACK_STANDARD, seed: int = 0,
                        square_queries: int = 5000, batch_size: int = 500) -> dict:
    """Robust accuracy under the reference AutoAttack (``pyautoattack``), inputs in [0, 1].

    Parameters
    ----------
    module : torch.nn.Module
        Classifier (evaluated in ``eval()`` mode, on the CPU).
    x : array, shape (n, ...)
        Inputs in ``[0, 1]`` (AutoAttack's fixed domain; Square needs images ``(n, c, h,
        w)``).
    y : int array, shape (n,)
        Labels.
    eps : float
        Radius.
    norm : {"linf", "l2"}
        Norm of the ball.
    steps : int
        Iterations of APGD-CE, APGD-T (per target) and FAB-T (AutoAttack's standard: 100).
    attacks : tuple of str
        AutoAttack's names, run in this order on the samples still robust (default the
        "standard" version: APGD-CE, APGD-T with 9 targets, FAB-T with 9 targets, Square).
    seed : int
        AutoAttack's seed.
    square_queries : int
        Queries of Square (standard: 5000).
    batch_size : int
        AutoAttack's batch size.

    Returns
    -------
    dict
        ``robust_acc`` (fraction of samples correctly classified under every attack),
        ``clean_acc`` and ``after``: the robust accuracy after each attack of the sequence,
        by name.

    Raises
    ------
    ImportError
        Without ``pyautoattack``.
    """
    import logging

    import torch

    aa = _autoattack()
    module = module.float().eval()
    runner = aa.AutoAttack(module, norm=_NORMS[norm], eps=float(eps), seed=seed,
                           version="custom", attacks=list(attacks), device="cpu")
    # the "standard" settings for l-infinity and l2 (AutoAttack._set_version)
    runner.apgd.n_restarts = 1
    runner.apgd_targeted.n_restarts = 1
    runner.apgd_targeted.n_target_classes = 9
    runner.fab.n_restarts = 1
    runner.fab.n_target_classes = 9
    runner.square.n_queries = square_queries
    for apgd in (runner.apgd, runner.apgd_targeted):
        # what APGDAttack.__init__ derives from n_iter
        apgd.n_iter = apgd.n_iter_orig = steps
        apgd.n_iter_2 = max(int(0.22 * steps), 1)
        apgd.n_iter_min = max(int(0.06 * steps), 1)
        apgd.size_decr = max(int(0.03 * steps), 1)
    runner.fab.n_iter = steps
    # the accuracy after each attack is only logged: collect it, print nothing
    stages: dict[str, float] = {}
    pattern = re.compile(r"robust accuracy after (\S+): ([0-9.]+)%")

    class _Collect(logging.Handler):
        def emit(self, record):
            m = pattern.search(record.getMessage())
            if m:
                stages[m.group(1).lower()] = float(m.group(2)) / 100

    logger = logging.getLogger("auto-attack")
    handler, level, propagate = _Collect(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        xt = torch.as_tensor(np.asarray(x, np.float32))
        yt = torch.as_tensor(np.asarray(y, np.int64))
        x_adv, _ = runner.run_standard_evaluation(xt, yt, batch_size=batch_size)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    with torch.no_grad():
        pred = module(x_adv).argmax(-1)
        clean = module(xt).argmax(-1)
    size = (x_adv - xt).reshape(len(yt), -1)
    size = size.abs().max(-1).values if norm == "linf" else size.norm(dim=-1)
    if float(size.max()) > eps * (1 + 1e-5) + 1e-6:
        raise RuntimeError(f"AutoAttack left the ball: |delta| = {float(size.max())} > {eps}")
    return {"robust_acc": float(((pred == yt) & (clean == yt)).double().mean()),
            "clean_acc": float((clean == yt).double().mean()), "after": stages}


def strong_accuracy(module, x, y, eps: float, norm: str = "linf", steps: int = 100,
                    attacks: tuple[str, ...] = STANDARD_ATTACKS, restarts: int = 1,
                    pgd_steps: int = 10, seed: int = 0) -> dict:
    """advdyn's strong evaluation of a torch module, inputs in [0, 1].

    Parameters
    ----------
    module : torch.nn.Module
        Classifier (wrapped by `TorchModel`,
        ``eval()`` mode).
    x, y : arrays
        Inputs ``(n, ...)`` in ``[0, 1]`` and labels ``(n,)``.
    eps : float
        Radius.
    norm : {"linf", "l2"}
        Norm of the ball.
    steps, restarts : int
        APGD iterations and restarts.
    attacks : tuple of str
        APGD attacks after the PGD (default APGD-CE, APGD-T).
    pgd_steps : int
        Steps of the evaluation PGD (step ``2.5 eps/steps``, zero start).
    seed : int
        Seed of the random starts.

    Returns
    -------
    dict
        [`strong_evaluate`][advdyn.adversarial.apgd.strong_evaluate]'s, with ``names``.
    """
    from advdyn.adversarial.apgd import attack_names
    from advdyn.adversarial.torch_adapter import TorchModel

    x = np.asarray(x, np.float32)
    model = TorchModel.wrap(module, example_input=x[:1])
    ensemble = strong_attacks(Attack(eps=eps, norm=norm, steps=pgd_steps, clip=(0.0, 1.0)),
                              int(model._static.out_features), steps, restarts, attacks)
    out = strong_evaluate(model, x, np.asarray(y, np.int32), ensemble, seed)
    out["names"] = attack_names(ensemble)
    return out


def digits_torch_mlps(width: int = 64, epochs: int = 30, train_eps: float = 0.1,
                      n_test: int = 500, seed: int = 0,
                      kinds: tuple[str, ...] = ("clean", "pgd")):
    """A clean and a PGD-trained (l-infinity ``train_eps``, PGD-10) MLP on the digits, trained
    by advdyn (JAX) and copied into torch modules that take ``(n, 1, 8, 8)`` images.

    Parameters
    ----------
    width : int
        Hidden units (one hidden ReLU layer).
    epochs : int
        Training epochs ([`Schedule`][advdyn.adversarial.training.Schedule]'s defaults: SGD with
        momentum, lr / 10 at 50% and 75%, epoch of smallest adversarial test loss).
    train_eps : float
        Radius of the adversarial training.
    n_test : int
        Held-out test points (the rest trains).
    seed : int
        Data split, initialisation and minibatch order.
    kinds : tuple of str
        Which of ``"clean"`` and ``"pgd"`` to train.

    Returns
    -------
    models : dict
        ``{"clean": module, "pgd": module}``: ``torch.nn.Sequential(Flatten, Linear, ReLU,
        Linear)`` in ``eval()`` mode.
    data : ArrayData
        The split (inputs ``(n, 64)`` in ``[0, 1]``; reshape to ``(n, 1, 8, 8)``, as
        AutoAttack's Square needs images).
    """
    import jax
    import torch

    from advdyn.adversarial.data import load_digits
    from advdyn.adversarial.models import MLP
    from advdyn.adversarial.training import Schedule, adversarial_train

    data = load_digits(n_test=n_test, seed=seed)
    models = {}
    for name, e in (("clean", 0.0), ("pgd", train_eps)):
        if name not in kinds:
            continue
        attack = Attack(eps=e, norm="linf", steps=10, clip=(0.0, 1.0)) if e > 0 else None
        mlp: Any = adversarial_train(MLP(64, width, 10, key=jax.random.key(seed)), data,
                                     attack, attack, Schedule(epochs=epochs), seed).model
        hidden, out = torch.nn.Linear(64, width), torch.nn.Linear(width, 10)
        with torch.no_grad():
            for layer, lin in zip(mlp.net.layers, (hidden, out), strict=True):
                lin.weight.copy_(torch.as_tensor(np.array(layer.weight)))
                lin.bias.copy_(torch.as_tensor(np.array(layer.bias)))
        net = torch.nn.Sequential(torch.nn.Flatten(), hidden, torch.nn.ReLU(), out)
        models[name] = net.eval()
    return models, data
