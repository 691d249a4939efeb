"""Random draws whose size XLA's CPU compiler handles well.

A threefry hash of a few odd-sized values (10 or 11 per chain, say) compiles on CPU into
fully unrolled scalar code: 3-4x the machine code of a hash of 16 values, and a large part
of a small model's compile time (eight schools: ~40% of the MCMC start program's code).
`uniform` and `normal` draw a multiple of 16 values and keep the first n: with JAX's
partitionable threefry (its default) a value depends on its index, not on the size of
the draw, so these are exactly the values `jax.random` would give.
"""

import jax
import numpy as np

__all__ = ["normal", "normal_and_uniform", "uniform"]


def padded(n):
    """The draw size for n values: n rounded up to a multiple of 16."""
    return -(-n // 16) * 16


def uniform(key, n, dtype=float, minval=0.0, maxval=1.0):
    """n uniforms on [minval, maxval), as `jax.random.uniform(key, (n,), ...)` draws them."""
    return jax.random.uniform(key, (padded(n),), dtype, minval, maxval)[:n]


def normal(key, n, dtype=float):
    """n standard normals, as `jax.random.normal(key, (n,), dtype)` draws them."""
    return jax.random.normal(key, (padded(n),), dtype)[:n]


def normal_and_uniform(key, n, dtype=np.float32):
    """n standard normals and one uniform on (0, 1) (e.g. a momentum and the uniform of
    an accept test) from one draw of n + 1 uniforms on (-1, 1), √2 erf⁻¹(u) being
    standard normal (as `jax.random.normal` makes them): one hash to compile where a
    split and two draws make three."""
    dtype = np.dtype(dtype)
    low = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype))  # erf⁻¹(-1) = -inf
    u = uniform(key, n + 1, dtype, low, 1.0)
    return np.sqrt(2.0).astype(dtype) * jax.scipy.special.erfinv(u[:-1]), 0.5 * (u[-1] + 1.0)
