"""Adversarial training and fine-tuning natively in PyTorch (optional extra ``advdyn[torch]``).

For a ``torch.nn.Module`` this is the PyTorch twin of
[`advdyn.adversarial.training.adversarial_train`][advdyn.adversarial.training.adversarial_train]:
the same attacks (FGM and PGD,
l-infinity and l2, random start, clipping to the domain: `torch_perturb`), the same
recipes (cross-entropy, TRADES, MART; SGD with momentum or Adam), the same schedules, the
same epoch selection (smallest adversarial test loss) and the same
[`TrainResult`][advdyn.adversarial.training.TrainResult], so the eps* estimators of
`advdyn.critical.estimators` run on it unchanged (pass ``trainer=torch_adversarial_train``).

What it does natively, unlike the numpy-callback adapter of `.torch_adapter`:

* **modes**: the attack is computed in ``eval()`` mode (running BatchNorm statistics,
  Dropout off: the usual practice, so that the attack sees the deterministic network) and
  the parameter update in ``train()`` mode (batch statistics, running averages updated,
  Dropout on); evaluation is in ``eval()`` mode;
* **any device**: ``device="cuda"`` (or a ``torch.device``) moves the model and batches;
* **DataLoaders streamed as they are** (`TorchData`): one pass per epoch, batches
  moved to the device on the fly; [`ArrayData`][advdyn.adversarial.data.ArrayData] is wrapped in
  seeded DataLoaders;
* **checkpoints**: ``checkpoint=path`` saves model, optimiser, best model, history and the
  generator state after every epoch (atomically); a later call with the same path resumes
  after the last finished epoch.

The returned ``TrainResult.model`` is a new module holding the selected epoch's parameters
and buffers (the input module is not modified).
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from advdyn.adversarial.attacks import Attack
from advdyn.adversarial.data import ArrayData
from advdyn.adversarial.training import (
    HISTORY,
    Schedule,
    TrainResult,
    active_attacks,
    gradient_counts,
    history_dataset,
    record_epoch,
)


def _torch():
    try:
        import torch
    except ImportError as err:  # pragma: no cover - exercised only without torch
        raise ImportError("the PyTorch path needs torch: pip install 'advdyn[torch]'") from err
    return torch


@dataclass(frozen=True)
class TorchData:
    """Train and test DataLoaders (any iterables of ``(x, y)`` batches), streamed as they are.

    Attributes
    ----------
    train, test : iterable
        Re-iterable loaders of ``(inputs, integer labels)`` batches.
    classes : int
        Number of classes.
    domain : tuple of float, optional
        Valid input range (attacks clip to it).
    name : str
        Description.
    """

    train: Iterable
    test: Iterable
    classes: int
    domain: tuple[float, float] | None = None
    name: str = "torch loaders"

    def arrays(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """Collect one pass of a loader into numpy arrays (for the strong evaluation)."""
        xs, ys = [], []
        for xb, yb in (self.train if split == "train" else self.test):
            xs.append(xb.detach().cpu().numpy())
            ys.append(yb.detach().cpu().numpy())
        return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int32)


def loaders(data: ArrayData | TorchData, batch_size: int, seed: int) -> TorchData:
    """DataLoaders of an [`ArrayData`][advdyn.adversarial.ArrayData] (shuffled by a generator seeded
    with ``seed``;
    the last incomplete batch dropped, like the JAX loop), or ``data`` itself."""
    if isinstance(data, TorchData):
        return data
    torch = _torch()
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(seed)
    bs = min(batch_size, data.n_train)
    train = DataLoader(TensorDataset(torch.from_numpy(np.asarray(data.x_train)),
                                     torch.from_numpy(np.asarray(data.y_train).astype(np.int64))),
                       batch_size=bs, shuffle=True, drop_last=True, generator=g)
    test = DataLoader(TensorDataset(torch.from_numpy(np.asarray(data.x_test)),
                                    torch.from_numpy(np.asarray(data.y_test).astype(np.int64))),
                      batch_size=512, shuffle=False)
    return TorchData(train, test, data.classes, data.domain, data.name)


def _norm(v, norm: str):
    dims = tuple(range(1, v.ndim))
    if norm == "l2":
        return v.flatten(1).norm(dim=1).reshape(-1, *([1] * (v.ndim - 1)))
    return v.abs().amax(dim=dims, keepdim=True)


def _direction(g, norm: str):
    torch = _torch()
    if norm == "linf":
        return g.sign()
    n = _norm(g, "l2")
    return torch.where(n > 0, g / n.clamp_min(1e-30), torch.zeros_like(g))


def _constrain(x, delta, attack: Attack):
    eps = float(attack.eps)
    if attack.norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        n = _norm(delta, "l2")
        delta = delta * (eps / n.clamp_min(1e-30)).clamp(max=1.0)
    if attack.clip is not None:
        delta = (x + delta).clamp(attack.clip[0], attack.clip[1]) - x
    return delta


def torch_perturb(attack: Attack, loss: Callable, x, y, generator=None):
    """FGM / PGD in PyTorch (the algorithm of
    [`advdyn.adversarial.attacks.perturb`][advdyn.adversarial.attacks.perturb]).

    Parameters
    ----------
    attack : Attack
        The attack specification (``eps`` read as a float).
    loss : callable
        ``loss(x, y)`` returning per-sample losses (a tensor of shape ``(B,)``).
    x, y : torch.Tensor
        Inputs and labels.
    generator : torch.Generator, optional
        For the random start.

    Returns
    -------
    torch.Tensor
        Detached adversarial inputs.
    """
    torch = _torch()
    eps = float(attack.eps)
    x = x.detach()
    if attack.random_start:
        if attack.norm == "linf":
            r = torch.rand(x.shape, generator=generator, device="cpu").to(x) * 2 - 1
            delta = r * eps
        else:
            g = torch.randn(x.shape, generator=generator, device="cpu").to(x)
            u = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), generator=generator,
                           device="cpu").to(x)
            delta = eps * u ** (1.0 / x[0].numel()) * _direction(g, "l2")
        delta = _constrain(x, delta, attack)
    else:
        delta = torch.zeros_like(x)

    def grad(d):
        d = d.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(x + d, y).sum(), d)
        return g

    if attack.method == "fgm":
        return (x + _constrain(x, delta + eps * _direction(grad(delta), attack.norm),
                               attack)).detach()
    alpha = attack.rel_step * eps / attack.steps
    for _ in range(attack.steps):
        delta = _constrain(x, delta + alpha * _direction(grad(delta), attack.norm), attack)
    return (x + delta).detach()


def _recipe_loss(model, x, xa, y, loss: str, beta: float):
    """Mean training objective (cross-entropy, TRADES or MART) and attacked accuracy."""
    torch = _torch()
    import torch.nn.functional as F

    logits_a = model(xa)
    acc = (logits_a.argmax(-1) == y).float().mean()
    if loss == "ce":
        return F.cross_entropy(logits_a, y), acc
    logits_c = model(x)
    log_c = F.log_softmax(logits_c, -1)
    kl = (log_c.exp() * (log_c - F.log_softmax(logits_a, -1))).sum(-1)
    if loss == "trades":
        return F.cross_entropy(logits_c, y) + beta * kl.mean(), acc
    p_a = F.softmax(logits_a, -1)
    onehot = F.one_hot(y, logits_a.shape[-1]).bool()
    wrong = torch.where(onehot, torch.full_like(p_a, -1.0), p_a).amax(-1)
    bce = F.cross_entropy(logits_a, y, reduction="none") - torch.log(
        (1 - wrong).clamp(1e-12, 1.0))
    p_true = (log_c.exp() * onehot).sum(-1)
    return (bce + beta * kl * (1 - p_true)).mean(), acc


def torch_evaluate(model, loader: Iterable, attack: Attack | None, device="cpu",
                   generator=None) -> dict:
    """Adversarial and clean mean cross-entropy and accuracy in ``eval()`` mode.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier.
    loader : iterable
        ``(x, y)`` batches.
    attack : Attack, optional
        Evaluation attack (``None``: clean only).
    device : str or torch.device
        Where to compute.
    generator : torch.Generator, optional
        For random starts.

    Returns
    -------
    dict
        ``adv_loss``, ``adv_acc``, ``clean_loss``, ``clean_acc``.
    """
    torch = _torch()
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    tot = np.zeros(4)
    n = 0

    def per_sample(xx, yy):
        return F.cross_entropy(model(xx), yy, reduction="none")

    for xb, yb in loader:
        xb = xb.to(device, torch.float32)
        yb = yb.to(device, torch.long)
        with torch.no_grad():
            lc = model(xb)
        xa = xb if attack is None else torch_perturb(attack, per_sample, xb, yb, generator)
        with torch.no_grad():
            la = model(xa) if attack is not None else lc
            tot += np.asarray([
                F.cross_entropy(la, yb, reduction="sum").item(),
                (la.argmax(-1) == yb).sum().item(),
                F.cross_entropy(lc, yb, reduction="sum").item(),
                (lc.argmax(-1) == yb).sum().item()])
        n += len(yb)
    model.train(was_training)
    a = tot / max(n, 1)
    return {"adv_loss": a[0], "adv_acc": a[1], "clean_loss": a[2], "clean_acc": a[3],
            "n": n}


def _optimizer(model, schedule: Schedule):
    torch = _torch()
    if schedule.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=schedule.lr,
                                weight_decay=schedule.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=schedule.lr, momentum=schedule.momentum,
                           weight_decay=schedule.weight_decay)


def _save_atomic(obj, path: Path) -> None:
    torch = _torch()
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def torch_adversarial_train(
    model,
    data: ArrayData | TorchData,
    attack: Attack | None,
    eval_attack: Attack | None = None,
    schedule: Schedule | None = None,
    seed: int = 0,
    advance: Callable[[int], None] | None = None,
    *,
    device="cpu",
    checkpoint: str | Path | None = None,
) -> TrainResult:
    """Adversarial training (or fine-tuning) of a ``torch.nn.Module`` in PyTorch.

    Parameters
    ----------
    model : torch.nn.Module
        Initial model (copied; the copy is trained).
    data : ArrayData or TorchData
        Arrays (wrapped in seeded DataLoaders) or DataLoaders streamed as they are.
    attack : Attack, optional
        Training attack (``None`` or ``eps = 0``: clean training).
    eval_attack : Attack, optional
        Per-epoch test and final training-set evaluation attack (default: ``attack``).
    schedule : Schedule, optional
        Epochs, learning rates (set per step), optimiser, recipe (default ``Schedule()``).
    seed : int
        Seeds ``torch`` (initial random state of Dropout and random starts) and the shuffles
        of array data.
    advance : callable, optional
        Progress callback (1 per epoch).
    device : str or torch.device
        Where to train.
    checkpoint : path, optional
        Save after every epoch; resume from it when it exists.

    Returns
    -------
    TrainResult
        ``model`` is a trained copy (selected epoch) on ``device``; ``compile_time`` is 0.
    """
    torch = _torch()
    start = time.perf_counter()
    schedule = Schedule() if schedule is None else schedule
    attack, eval_attack = active_attacks(attack, eval_attack)
    loads = loaders(data, schedule.batch_size, seed)
    net = copy.deepcopy(model).to(device).float()
    opt = _optimizer(net, schedule)
    nb = len(loads.train)  # type: ignore[arg-type]
    rates = schedule.rates(nb)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    import torch.nn.functional as F

    def per_sample(xx, yy):
        return F.cross_entropy(net(xx), yy, reduction="none")

    def kl_to_clean(log_c):
        def f(xx, _yy):
            return (log_c.exp() * (log_c - F.log_softmax(net(xx), -1))).sum(-1)
        return f

    train_grads, eval_grads = gradient_counts(attack, eval_attack, schedule.loss)
    rec: dict[str, list[float]] = {k: [] for k in HISTORY}
    best_state, best_loss, best_epoch, best_eval, grad_evals, first = None, np.inf, 0, None, 0, 0
    ck = Path(checkpoint) if checkpoint is not None else None
    # the shuffling generator of the training loader (if any) is part of the resumable state
    loader_gen = getattr(loads.train, "generator", None)
    if ck is not None and ck.exists():
        state = torch.load(ck, map_location=device, weights_only=False)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        if state.get("loader_generator") is not None and loader_gen is not None:
            loader_gen.set_state(state["loader_generator"])
        torch.set_rng_state(state["torch_rng"])
        rec, best_state, best_loss = state["history"], state["best_state"], state["best_loss"]
        best_epoch, best_eval, grad_evals = state["best_epoch"], state["best_eval"], \
            state["grad_evals"]
        first = state["epoch"]
    for epoch in range(first, schedule.epochs):
        tl = ta = 0.0
        seen = 0
        for i, (xb, yb) in enumerate(loads.train):
            xb = xb.to(device, torch.float32)
            yb = yb.to(device, torch.long)
            for group in opt.param_groups:
                group["lr"] = float(rates[epoch, min(i, nb - 1)])
            if attack is None:
                xa = xb
            else:
                net.eval()  # the attack sees the deterministic network
                if schedule.loss == "trades":
                    with torch.no_grad():
                        log_c = F.log_softmax(net(xb), -1)
                    start_attack = attack if attack.random_start else \
                        Attack(eps=float(attack.eps), norm=attack.norm, method=attack.method,
                               steps=attack.steps, rel_step=attack.rel_step,
                               random_start=True, clip=attack.clip)
                    xa = torch_perturb(start_attack, kl_to_clean(log_c), xb, yb, gen)
                else:
                    xa = torch_perturb(attack, per_sample, xb, yb, gen)
            net.train()
            loss, acc = _recipe_loss(net, xb, xa, yb, schedule.loss if attack is not None
                                     else "ce", schedule.beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tl += loss.item() * len(yb)
            ta += acc.item() * len(yb)
            seen += len(yb)
        ev = torch_evaluate(net, loads.test, eval_attack, device, gen)
        grad_evals += seen * train_grads + ev["n"] * eval_grads
        record_epoch(rec, epoch, lr=rates[epoch, -1], train_loss=tl / max(seen, 1),
                     train_acc=ta / max(seen, 1), test_eval=ev, grad_evals=grad_evals,
                     elapsed=time.perf_counter() - start)
        if ev["adv_loss"] < best_loss:
            best_state = copy.deepcopy(net.state_dict())
            best_loss, best_epoch, best_eval = ev["adv_loss"], epoch + 1, ev
        if ck is not None:
            _save_atomic({"epoch": epoch + 1, "model": net.state_dict(),
                          "optimizer": opt.state_dict(), "generator": gen.get_state(),
                          "loader_generator": None if loader_gen is None
                          else loader_gen.get_state(),
                          "torch_rng": torch.get_rng_state(), "history": rec,
                          "best_state": best_state, "best_loss": best_loss,
                          "best_epoch": best_epoch, "best_eval": best_eval,
                          "grad_evals": grad_evals}, ck)
        if advance is not None:
            advance(1)
    best = copy.deepcopy(net)
    best.load_state_dict(best_state)
    best.eval()
    tr = torch_evaluate(best, loads.train, eval_attack, device, gen)
    grad_evals += tr["n"] * eval_grads
    assert best_eval is not None
    return TrainResult.selected(best, history_dataset(rec), best_epoch, tr, best_eval,
                                grad_evals, time.perf_counter() - start)
