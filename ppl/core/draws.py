"""Random draws that compile to less work on XLA's CPU backend, with `jax.random`'s values.

Two things make `jax.random` costly inside a compiled loop on CPU:

- JAX lowers its threefry hash on CPU as a rolled loop (5 iterations of 4 rounds, to
  keep compile times down): inside a sampler's or an optimizer's step, every draw, split
  and fold-in is then a while loop of its own, run at every step, whose iterations cost
  more than their arithmetic (eight schools HMC: ~15% of the sampler). `written_out(key)`
  gives the same key under a PRNG implementation whose hash is written out
  (`threefry2x32`, no loop): under JAX's default partitionable threefry, `jax.random`
  then returns exactly the values it returns for `key`, and so do the keys it derives
  (splits, fold-ins), so everything drawn from them inside a step (NumPyro's samplers
  included) skips the loop. Keys of other implementations are left alone.
- A hash of a few odd-sized values compiles on CPU into fully unrolled scalar code: 3-4x
  the machine code of a hash of 16 values, and a large part of a small model's compile
  time (eight schools: ~40% of the MCMC start program's code). `uniform` and `normal`
  draw a multiple of 16 values and keep the first n (a value depends on its index, not
  on the size of the draw).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import define_prng_impl, threefry_prng_impl

__all__ = [
    "for_sampler", "normal", "normal_and_uniform", "split", "threefry", "threefry2x32",
    "uniform", "written_out",
]  # fmt: skip

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


# The written-out implementation, on raw key data (uint32[2]), as JAX's partitionable
# threefry: counts are the flat index of each value, as (high, low) 32-bit words.


def _hashed_counts(key, shape):
    count = math.prod(shape)
    if count >= 2**32:
        raise NotImplementedError(f"ppl.core.draws: {count} random values at once")
    counts = jnp.arange(count, dtype=jnp.uint32).reshape(shape)
    return threefry2x32(key[0], key[1], jnp.zeros_like(counts), counts)


def _split(key, shape):
    return jnp.stack(_hashed_counts(key, shape), axis=-1)


def _fold_in(key, data):
    zero = jnp.zeros((), jnp.uint32)
    return jnp.stack(threefry2x32(key[0], key[1], zero, jnp.asarray(data, jnp.uint32)))


def _random_bits(key, bit_width, shape):
    high, low = _hashed_counts(key, shape)
    if bit_width == 64:
        return (high.astype(jnp.uint64) << np.uint64(32)) | low.astype(jnp.uint64)
    return (high ^ low).astype(f"uint{bit_width}")


WRITTEN_OUT = define_prng_impl(
    key_shape=(2,),
    seed=threefry_prng_impl.seed,
    split=_split,
    random_bits=_random_bits,
    fold_in=_fold_in,
    name="threefry2x32_written_out",
    tag="fry_w",
)


def written_out(key):
    """`key` (a typed key) under the written-out threefry when it is a partitionable
    threefry key (the default): the same draws, without the loop on CPU."""
    if (
        jax.dtypes.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key)
        and str(jax.random.key_impl(key)) == "threefry2x32"
        and jax.config.jax_threefry_partitionable
    ):
        return jax.random.wrap_key_data(jax.random.key_data(key), impl=WRITTEN_OUT)
    return key


def threefry(key):
    """A written-out key back as the threefry key it equals (for code that takes threefry
    keys only, e.g. `jax.random.poisson`); other keys unchanged."""
    if jax.random.key_impl(key) == WRITTEN_OUT:
        return jax.random.wrap_key_data(jax.random.key_data(key), impl="threefry2x32")
    return key


def for_sampler(fn, key):
    """The key to draw from distribution `fn` with: a written-out key as it is for a
    reparameterised (continuous) sampler, else as the threefry key it equals (samplers
    of counts may call `jax.random.poisson`, which takes threefry keys only)."""
    return key if fn.has_rsample else threefry(key)


def split(key, num=2):
    """`jax.random.split(key, num)`, as written-out keys."""
    return jax.random.split(written_out(key), num)


def padded(n):
    """The draw size for n values: n rounded up to a multiple of 16."""
    return -(-n // 16) * 16


def uniform(key, n, dtype=float, minval=0.0, maxval=1.0):
    """n uniforms on [minval, maxval), as `jax.random.uniform(key, (n,), ...)` draws them."""
    return jax.random.uniform(written_out(key), (padded(n),), dtype, minval, maxval)[:n]


def normal(key, n, dtype=float):
    """n standard normals, as `jax.random.normal(key, (n,), dtype)` draws them."""
    return jax.random.normal(written_out(key), (padded(n),), dtype)[:n]


def normal_and_uniform(key, n, dtype=np.float32):
    """n standard normals and one uniform on (0, 1) (e.g. a momentum and the uniform of
    an accept test) from one draw of n + 1 uniforms on (-1, 1), √2 erf⁻¹(u) being
    standard normal (as `jax.random.normal` makes them): one hash to compile where a
    split and two draws make three."""
    dtype = np.dtype(dtype)
    low = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype))  # erf⁻¹(-1) = -inf
    u = uniform(key, n + 1, dtype, low, 1.0)
    return np.sqrt(2.0).astype(dtype) * jax.scipy.special.erfinv(u[:-1]), 0.5 * (u[-1] + 1.0)
