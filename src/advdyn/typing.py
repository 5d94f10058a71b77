"""The type aliases of advdyn's annotations, in one place.

``Array`` is ``jax.Array``, the array type of every pure-JAX function; ``AnyArray`` is a JAX
or a NumPy array, for the parameters of public functions that accept either. Shapes are
written with jaxtyping (``Float[Array, " d"]``), which the tests check at run time
(``tests/test_precision.py`` runs every entry point under jaxtyping's import hook).
"""

import jax
import numpy as np

Array = jax.Array
AnyArray = jax.Array | np.ndarray

__all__ = ["AnyArray", "Array"]
