"""Use a PyTorch model with the attacks, training and estimators (optional extra
``advdyn[torch]``, CPU torch).

`TorchModel` wraps a ``torch.nn.Module`` as an equinox module: its parameters become
float32 JAX arrays (trainable leaves), and the forward pass and its vector-Jacobian products
(with respect to inputs *and* parameters) are computed by PyTorch through
``jax.pure_callback`` under a ``jax.custom_vjp``. Everything that needs gradients (PGD/FGM,
SGD) therefore works unchanged, inside ``jit`` too (on the CPU). The module must act on a
batch independently per sample (no batch normalisation in training mode). Buffers (e.g.
BatchNorm running statistics) travel as non-trainable leaves, so modules of one architecture
can share one compiled graph (``wrap(..., template=other)``). To *train* a module in PyTorch
(train/eval modes, BatchNorm, Dropout, devices, DataLoaders, checkpoints) use
`advdyn.adversarial.torch_training` instead.

Example
-------
>>> net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
>>> model = TorchModel.wrap(net)
>>> data = arrays_from_torch(x_train, y_train, x_test, y_test, domain=(0.0, 1.0))
>>> result = adversarial_train(model, data, attack, eval_attack, schedule)
>>> result.model.to_torch(net)   # copy the trained parameters back
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from advdyn.adversarial.data import ArrayData


def _torch():
    try:
        import torch
    except ImportError as err:  # pragma: no cover - exercised only without torch
        raise ImportError("the PyTorch adapter needs torch: pip install 'advdyn[torch]'") from err
    return torch


class _Static:
    """Hashable holder of the torch module (compared by identity)."""

    def __init__(self, module, names, out_features, buffer_dtypes=None):
        self.module = module
        self.names = names
        self.out_features = out_features
        self.buffer_dtypes = buffer_dtypes or {}


def _state(static: _Static, params: dict, buffers: dict) -> dict:
    torch = _torch()
    tp = {k: torch.from_numpy(np.array(v)) for k, v in params.items()}
    for k, v in buffers.items():
        tp[k] = torch.from_numpy(np.array(v)).to(static.buffer_dtypes[k])
    return tp


def _apply(static: _Static, params: dict, x: np.ndarray, buffers: dict | None = None):
    torch = _torch()
    from torch.func import functional_call

    tp = _state(static, params, buffers or {})
    with torch.no_grad():
        out = functional_call(static.module, tp, (torch.from_numpy(np.array(x)),))
    return out.numpy().astype(np.float32)


def _vjp(static: _Static, params: dict, x: np.ndarray, g: np.ndarray,
         buffers: dict | None = None):
    torch = _torch()
    from torch.func import functional_call, vjp

    tp = {k: torch.from_numpy(np.array(v)) for k, v in params.items()}
    tb = _state(static, {}, buffers or {})
    tx = torch.from_numpy(np.array(x))
    _, pull, *_ = vjp(
        lambda p, xx: functional_call(static.module, {**p, **tb}, (xx,)), tp, tx)
    gp, gx = pull(torch.from_numpy(np.array(g)))
    return {k: gp[k].numpy().astype(np.float32) for k in params}, gx.numpy().astype(np.float32)


def _make_call(static: _Static):
    @jax.custom_vjp
    def call(params, buffers, x):
        shape = jax.ShapeDtypeStruct((x.shape[0], static.out_features), jnp.float32)
        return jax.pure_callback(lambda p, b, xx: _apply(static, p, xx, b), shape, params,
                                 buffers, x)

    def fwd(params, buffers, x):
        return call(params, buffers, x), (params, buffers, x)

    def bwd(res, g):
        params, buffers, x = res
        shapes = (
            {k: jax.ShapeDtypeStruct(v.shape, jnp.float32) for k, v in params.items()},
            jax.ShapeDtypeStruct(x.shape, jnp.float32),
        )
        gp, gx = jax.pure_callback(lambda p, b, xx, gg: _vjp(static, p, xx, gg, b), shapes,
                                   params, buffers, x, g)
        return gp, jax.tree.map(jnp.zeros_like, buffers), gx

    call.defvjp(fwd, bwd)
    return call


class TorchModel(eqx.Module):
    """A ``torch.nn.Module`` as a batch-to-logits equinox module.

    Attributes
    ----------
    params : dict of str to jax.Array
        The module's parameters (float32), trained by advdyn.
    """

    params: dict
    _static: _Static = eqx.field(static=True)
    buffers: dict = eqx.field(default_factory=dict)

    @classmethod
    def wrap(cls, module, out_features: int | None = None, example_input=None,
             template: TorchModel | None = None) -> TorchModel:
        """Wrap ``module`` (its current parameters are copied).

        Parameters
        ----------
        module : torch.nn.Module
            The model (float32; switched to ``eval()`` mode).
        out_features : int, optional
            Output width; found by a forward pass on ``example_input`` when omitted.
        example_input : array, optional
            One batch of inputs (needed only without ``out_features``).
        template : TorchModel, optional
            A wrapped module of the same architecture whose static part (and so its compiled
            graphs) is reused; the parameters and buffers are ``module``'s.

        Returns
        -------
        TorchModel
        """
        torch = _torch()
        module = module.float().eval()
        params = {k: jnp.asarray(v.detach().cpu().numpy(), jnp.float32)
                  for k, v in module.named_parameters()}
        # buffers travel as float32 leaves (BatchNorm statistics; counters are restored to
        # their dtype inside the callback)
        buffers = {k: jnp.asarray(v.detach().cpu().numpy().astype(np.float32))
                   for k, v in module.named_buffers()}
        if template is not None:
            return cls(params, template._static, buffers)
        if out_features is None:
            if example_input is None:
                raise ValueError("give out_features or an example_input")
            with torch.no_grad():
                out_features = int(module(torch.as_tensor(np.asarray(example_input[:1]),
                                                          dtype=torch.float32)).shape[-1])
        dtypes = {k: v.dtype for k, v in module.named_buffers()}
        return cls(params, _Static(module, tuple(params), out_features, dtypes), buffers)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits of a batch, computed by PyTorch."""
        return _make_call(self._static)(self.params, self.buffers, jnp.asarray(x, jnp.float32))

    def to_torch(self, module=None):
        """Copy the parameters into ``module`` (default: the wrapped one) and return it."""
        torch = _torch()
        module = self._static.module if module is None else module
        with torch.no_grad():
            for name, p in module.named_parameters():
                p.copy_(torch.from_numpy(np.array(self.params[name])))
            for name, b in module.named_buffers():
                if name in self.buffers:
                    b.copy_(torch.from_numpy(np.array(self.buffers[name])).to(b.dtype))
        return module


def arrays_from_torch(x_train, y_train, x_test, y_test, classes: int | None = None,
                      domain: tuple[float, float] | None = None,
                      name: str = "torch tensors") -> ArrayData:
    """Build `ArrayData` from torch tensors (or arrays).

    Parameters
    ----------
    x_train, y_train, x_test, y_test : torch.Tensor or array
        Inputs and integer labels.
    classes : int, optional
        Number of classes (default: largest label + 1).
    domain : tuple of float, optional
        Valid input range for the attacks' clipping.
    name : str
        Description.

    Returns
    -------
    ArrayData
    """

    def arr(t, dtype):
        t = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
        return t.astype(dtype)

    ytr, yte = arr(y_train, np.int32), arr(y_test, np.int32)
    k = int(max(ytr.max(), yte.max())) + 1 if classes is None else classes
    return ArrayData(arr(x_train, np.float32), ytr, arr(x_test, np.float32), yte, k, domain,
                     name)
