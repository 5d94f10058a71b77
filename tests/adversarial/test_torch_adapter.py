"""PyTorch adapter: a tiny torch model trained and attacked through advdyn."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import advdyn  # noqa: F401

torch = pytest.importorskip("torch")

from advdyn.adversarial.attacks import Attack, perturb  # noqa: E402
from advdyn.adversarial.torch_adapter import TorchModel, arrays_from_torch  # noqa: E402
from advdyn.adversarial.training import Schedule, adversarial_train, sample_loss  # noqa: E402


def _tiny():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    g = torch.Generator().manual_seed(1)
    x = torch.rand(96, 6, generator=g)
    y = (x[:, 0] * 3).long().clamp(max=2)
    return net, x, y


def test_forward_and_input_gradient_match_torch():
    net, x, y = _tiny()
    model = TorchModel.wrap(net, example_input=x)
    xj, yj = jnp.asarray(x.numpy()), jnp.asarray(y.numpy(), jnp.int32)
    with torch.no_grad():
        ref = net(x).numpy()
    # float32 forward by the same torch kernels: identical up to rounding (~1e-7)
    np.testing.assert_allclose(np.asarray(model(xj)), ref, atol=1e-6)
    g = jax.grad(lambda xx: sample_loss(model, xx, yj)[0].sum())(xj)
    xt = x.clone().requires_grad_()
    torch.nn.functional.cross_entropy(net(xt), y, reduction="sum").backward()
    np.testing.assert_allclose(np.asarray(g), xt.grad.numpy(), atol=1e-6)
    adv = perturb(Attack(eps=0.1, steps=3, clip=(0.0, 1.0)),
                  lambda a, b: sample_loss(model, a, b)[0], xj, yj)
    assert float(jnp.max(jnp.abs(adv - xj))) <= 0.1 + 1e-6
    loss = sample_loss(model, adv, yj)[0].mean()
    assert float(loss) > float(sample_loss(model, xj, yj)[0].mean())


def test_adversarial_training_of_a_torch_module():
    net, x, y = _tiny()
    data = arrays_from_torch(x[:64], y[:64], x[64:], y[64:], domain=(0.0, 1.0))
    assert data.classes == 3 and data.x_train.dtype == np.float32
    model = TorchModel.wrap(net, out_features=3)
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    r = adversarial_train(model, data, Attack(eps=0.05, steps=2, clip=(0.0, 1.0)), None,
                          Schedule(epochs=4, batch_size=16, lr=0.3, drops=()), seed=0)
    assert r.history["train_loss"].values[-1] < r.history["train_loss"].values[0]
    trained = r.model.to_torch()
    assert trained is net
    changed = [not torch.equal(before[k], v) for k, v in net.named_parameters()]
    assert all(changed)
    with torch.no_grad():
        np.testing.assert_allclose(net(x).numpy(), np.asarray(r.model(jnp.asarray(x.numpy()))),
                                   atol=1e-6)
