"""Classifiers as equinox modules acting on a batch: an MLP of chosen width and a small CNN.

Every model maps a batch ``x`` of shape ``(B, ...)`` to logits ``(B, classes)`` (per-sample
application under ``vmap``, so samples never interact), with float32 parameters. Any other
equinox module with the same calling convention, or a wrapped PyTorch module
(`advdyn.adversarial.torch_adapter`), works with the attacks, training and estimators.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

DTYPE = jnp.float32


class MLP(eqx.Module):
    """Fully connected ReLU network ``in -> width (x depth) -> classes``.

    Parameters
    ----------
    in_size : int
        Number of input features (inputs are flattened per sample).
    width : int
        Hidden width.
    classes : int
        Number of outputs.
    depth : int
        Number of hidden layers (>= 1).
    key : jax.Array
        PRNG key of the initialisation.
    """

    net: eqx.nn.MLP

    def __init__(self, in_size: int, width: int, classes: int, depth: int = 1, *, key):
        self.net = eqx.nn.MLP(
            in_size, classes, width, depth, activation=jax.nn.relu, dtype=DTYPE, key=key
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits of a batch, shape ``(B, classes)``."""
        return jax.vmap(self.net)(x.reshape(x.shape[0], -1))


class CNN(eqx.Module):
    """Two 3x3 convolutions (ReLU, 2x2 max-pool after the second) and two dense layers.

    The paper's MNIST network in miniature: ``conv(c1) - conv(c2) - pool - fc(width) - fc``.

    Parameters
    ----------
    side : int
        Images are ``side x side`` with one channel (inputs may be flattened).
    classes : int
        Number of outputs.
    width : int
        Units of the first dense layer.
    channels : tuple of int
        Output channels of the two convolutions.
    key : jax.Array
        PRNG key of the initialisation.
    """

    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    fc1: eqx.nn.Linear
    fc2: eqx.nn.Linear
    side: int = eqx.field(static=True)

    def __init__(self, side: int, classes: int, width: int = 32, channels=(8, 16), *, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        c1, c2 = channels
        self.side = side
        self.conv1 = eqx.nn.Conv2d(1, c1, 3, padding=1, dtype=DTYPE, key=k1)
        self.conv2 = eqx.nn.Conv2d(c1, c2, 3, padding=1, dtype=DTYPE, key=k2)
        flat = c2 * (side // 2) ** 2
        self.fc1 = eqx.nn.Linear(flat, width, dtype=DTYPE, key=k3)
        self.fc2 = eqx.nn.Linear(width, classes, dtype=DTYPE, key=k4)

    def _single(self, x):
        h = jax.nn.relu(self.conv1(x.reshape(1, self.side, self.side)))
        h = jax.nn.relu(self.conv2(h))
        c, s = h.shape[0], self.side // 2
        h = h[:, : 2 * s, : 2 * s].reshape(c, s, 2, s, 2).max(axis=(2, 4))
        return self.fc2(jax.nn.relu(self.fc1(h.reshape(-1))))

    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits of a batch, shape ``(B, classes)``."""
        return jax.vmap(self._single)(x)


def make_model(kind: str, in_shape: tuple[int, ...], classes: int, width: int, depth: int = 1,
               seed: int = 0):
    """Build an ``"mlp"`` or ``"cnn"`` from a seed.

    Parameters
    ----------
    kind : {"mlp", "cnn"}
        Architecture.
    in_shape : tuple of int
        Shape of one input (the CNN needs a square image: ``(side, side)`` or ``(side**2,)``).
    classes : int
        Number of classes.
    width : int
        Hidden width (MLP) or first dense layer width (CNN).
    depth : int
        Hidden layers of the MLP.
    seed : int
        Seed of the initialisation.

    Returns
    -------
    MLP or CNN
    """
    key = jax.random.key(seed)
    size = 1
    for s in in_shape:
        size *= s
    if kind == "mlp":
        return MLP(size, width, classes, depth, key=key)
    if kind == "cnn":
        side = round(size**0.5)
        if side * side != size:
            raise ValueError(f"the CNN needs square images, got input shape {in_shape}")
        return CNN(side, classes, width, key=key)
    raise ValueError(f"unknown model kind {kind!r} (mlp or cnn)")
