"""The type aliases of advdyn's annotations, in one place.

``Array`` is ``jax.Array``, the array type of every pure-JAX function; shapes are written
with jaxtyping (``Float[Array, " d"]``), which the tests check at run time.
"""

import jax

Array = jax.Array

__all__ = ["Array"]
