"""Random draws that compile to less work on XLA's CPU backend, with `jax.random`'s values.

Two things make `jax.random` costly inside a compiled loop on CPU:

- JAX lowers its threefry hash on CPU as a rolled loop (5 iterations of 4 rounds, to
  keep compile times down): inside a sampler's step that is a while loop of its own at
  every step, whose iterations cost more than their arithmetic (eight schools HMC: ~15%
  of the sampler). Here the hash is written out (`threefry2x32`); under JAX's default
  partitionable threefry, `bits`, `uniform`, `normal` and `fold_in` then give exactly
  `jax.random`'s values. Keys of another implementation (or the older, non-partitionable
  threefry) go to `jax.random` itself.
- A hash of a few odd-sized values compiles on CPU into fully unrolled scalar code: 3-4x
  the machine code of a hash of 16 values, and a large part of a small model's compile
  time (eight schools: ~40% of the MCMC start program's code). `uniform` and `normal`
  draw a multiple of 16 values and keep the first n (a value depends on its index, not
  on the size of the draw).
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["bits", "fold_in", "normal", "normal_and_uniform", "split", "threefry2x32", "uniform"]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def threefry2x32(k1, k2, x1, x2):
    """The Threefry-2x32 hash (20 rounds) of counts (x1, x2) under key (k1, k2), all
    uint32: JAX's `threefry2x32` primitive, written out."""
    ks = (k1, k2, k1 ^ k2 ^ _PARITY)
    x1, x2 = x1 + ks[0], x2 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x1 = x1 + x2
            x2 = x1 ^ ((x2 << np.uint32(r)) | (x2 >> np.uint32(32 - r)))
        x1 = x1 + ks[(i + 1) % 3]
        x2 = x2 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x1, x2


def _own(key):
    """Whether `key` is one this module hashes itself (a typed partitionable threefry
    key): then its draws equal `jax.random`'s."""
    return (
        jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
        and str(jax.random.key_impl(key)) == "threefry2x32"
        and jax.config.jax_threefry_partitionable
    )


def bits(key, n):
    """n random uint32 words: `jax.random.bits(key, (n,))`."""
    if not _own(key):
        return jax.random.bits(key, (n,))
    k1, k2 = jax.random.key_data(key)
    y1, y2 = threefry2x32(k1, k2, jnp.zeros(n, jnp.uint32), jnp.arange(n, dtype=jnp.uint32))
    return y1 ^ y2


def fold_in(key, data):
    """`jax.random.fold_in(key, data)` for a 32-bit integer `data`."""
    if not _own(key):
        return jax.random.fold_in(key, data)
    k1, k2 = jax.random.key_data(key)
    y1, y2 = threefry2x32(k1, k2, jnp.zeros((), jnp.uint32), jnp.asarray(data, dtype=jnp.uint32))
    return jax.random.wrap_key_data(jnp.stack([y1, y2]), impl="threefry2x32")


def split(key, num=2):
    """`jax.random.split(key, num)`."""
    if not _own(key):
        return jax.random.split(key, num)
    k1, k2 = jax.random.key_data(key)
    pairs = threefry2x32(k1, k2, jnp.zeros(num, jnp.uint32), jnp.arange(num, dtype=jnp.uint32))
    return jax.random.wrap_key_data(jnp.stack(pairs, axis=-1), impl="threefry2x32")


def padded(n):
    """The draw size for n values: n rounded up to a multiple of 16."""
    return -(-n // 16) * 16


@partial(jax.jit, static_argnums=(1, 2), static_argnames=("n", "dtype"))  # as jax.random's
def uniform(key, n, dtype=float, minval=0.0, maxval=1.0):
    """n uniforms on [minval, maxval), as `jax.random.uniform(key, (n,), ...)` draws them."""
    dtype = jax.dtypes.canonicalize_dtype(dtype)
    if dtype != np.float32 or not _own(key):
        return jax.random.uniform(key, (padded(n),), dtype, minval, maxval)[:n]
    minval, maxval = jnp.asarray(minval, dtype), jnp.asarray(maxval, dtype)
    mantissa = (bits(key, padded(n))[:n] >> np.uint32(32 - 23)) | np.uint32(0x3F800000)
    floats = jax.lax.bitcast_convert_type(mantissa, dtype) - np.float32(1.0)  # [0, 1)
    return jnp.maximum(minval, floats * (maxval - minval) + minval)


def normal(key, n, dtype=float):
    """n standard normals, as `jax.random.normal(key, (n,), dtype)` draws them."""
    dtype = jax.dtypes.canonicalize_dtype(dtype)
    if dtype != np.float32 or not _own(key):
        return jax.random.normal(key, (padded(n),), dtype)[:n]
    return _normals(uniform(key, n, dtype, _above_minus_one(dtype), 1.0))


def _above_minus_one(dtype):
    return np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype))  # erf⁻¹(-1) = -inf


def _normals(u):
    """√2 erf⁻¹(u) of uniforms on (-1, 1): standard normals (as `jax.random.normal`)."""
    return np.sqrt(2.0).astype(u.dtype) * jax.scipy.special.erfinv(u)


def normal_and_uniform(key, n, dtype=np.float32):
    """n standard normals and one uniform on (0, 1) (e.g. a momentum and the uniform of
    an accept test) from one draw of n + 1 uniforms on (-1, 1): one hash to compile
    where a split and two draws make three."""
    dtype = np.dtype(dtype)
    u = uniform(key, n + 1, dtype, _above_minus_one(dtype), 1.0)
    return _normals(u[:-1]), 0.5 * (u[-1] + 1.0)
