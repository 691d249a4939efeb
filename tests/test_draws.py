"""Compile-friendly random draws (`ppl.core.draws`) and the driver's table of step keys.

Both exist to make XLA's CPU code smaller: the draws must keep their distribution, and the
key table must give exactly the keys `fold_in` gives (resumed runs rely on it)."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.extend.random import threefry_2x32
from scipy import stats

from ppl.core import draws

driver = importlib.import_module("ppl.infer.driver")


@settings(max_examples=12, deadline=None)
@given(st.integers(1, 40), st.integers(1, 5), st.integers(0, 10**6), st.integers(0, 2**20))
def test_key_table_is_fold_in(num_steps, num_chains, start, seed):
    chain_keys = jax.random.split(jax.random.key(seed), num_chains)
    steps = start + jnp.arange(num_steps)
    expected = jax.vmap(driver._step_keys, (None, 0))(chain_keys, steps)
    table = driver._key_table(chain_keys, steps)
    assert table.shape == (num_steps, num_chains)
    np.testing.assert_array_equal(jax.random.key_data(table), jax.random.key_data(expected))


def test_padded_draws_keep_their_distribution():
    keys = jax.random.split(jax.random.key(0), 4000)
    u = jax.vmap(lambda k: draws.uniform(k, 11, minval=-2.0, maxval=3.0))(keys)
    normal, uniform = jax.vmap(lambda k: draws.normal_and_uniform(k, 11))(keys)
    z = jax.vmap(lambda k: draws.normal(k, 11))(keys)
    assert u.shape == normal.shape == z.shape == (4000, 11) and uniform.shape == (4000,)
    assert float(u.min()) >= -2.0 and float(u.max()) < 3.0
    assert 0.0 < float(uniform.min()) and float(uniform.max()) < 1.0
    # each coordinate has its law (KS, false alarm 1e-3 per check at this seed)
    for j in (0, 10):
        assert stats.kstest(np.asarray(u[:, j]), stats.uniform(-2, 5).cdf).pvalue > 1e-3
        assert stats.kstest(np.asarray(normal[:, j]), "norm").pvalue > 1e-3
        assert stats.kstest(np.asarray(z[:, j]), "norm").pvalue > 1e-3
    assert stats.kstest(np.asarray(uniform), "uniform").pvalue > 1e-3
    # and the coordinates of one draw are uncorrelated (|r| < 4.5 / sqrt(4000))
    r = np.corrcoef(np.asarray(normal[:, :2]).T)[0, 1]
    assert abs(r) < 4.5 / np.sqrt(4000)


def test_padded_draws_are_jax_random_values_under_partitionable_threefry():
    if not jax.config.jax_threefry_partitionable:  # then only the distribution is kept
        return
    key = jax.random.key(7)
    np.testing.assert_array_equal(draws.uniform(key, 27), jax.random.uniform(key, (27,)))
    np.testing.assert_array_equal(draws.normal(key, 11), jax.random.normal(key, (11,)))


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 40), st.integers(0, 2**31 - 1))
def test_written_out_keys_draw_jax_randoms_values(seed, n, data):
    # the written-out hash (no rolled loop on CPU) must not change a single draw, nor
    # the keys derived from it
    if not jax.config.jax_threefry_partitionable:
        return
    key = jax.random.key(seed)
    fast = draws.written_out(key)
    assert str(jax.random.key_impl(fast)) != str(jax.random.key_impl(key))
    for draw in [
        lambda k: jax.random.bits(k, (n,)),
        lambda k: jax.random.uniform(k, (n,), minval=-2.0, maxval=3.0),
        lambda k: jax.random.normal(k, (2, n)),
        lambda k: jax.random.bernoulli(k, 0.3, (n,)),
        lambda k: jax.random.key_data(jax.random.fold_in(k, data)),
        lambda k: jax.random.key_data(jax.random.split(k, n + 1)),
        lambda k: jax.random.normal(jax.random.split(jax.random.fold_in(k, data))[1], (n,)),
    ]:
        np.testing.assert_array_equal(draw(fast), draw(key))


def test_written_out_keys_inside_vmap_and_other_keys_left_alone():
    keys = jax.random.split(jax.random.key(3), 5)
    np.testing.assert_array_equal(
        jax.jit(jax.vmap(lambda k: draws.normal(k, 10)))(keys),
        jax.vmap(lambda k: jax.random.normal(k, (10,)))(keys),
    )
    rbg = jax.random.key(0, impl="rbg")
    assert draws.written_out(rbg) is rbg
    np.testing.assert_array_equal(draws.normal(rbg, 5), jax.random.normal(rbg, (16,))[:5])


def test_key_table_hash_is_jaxs_threefry():
    k = np.array([123, 456789], np.uint32)
    counts = np.arange(20, dtype=np.uint32)
    expected = threefry_2x32(k, np.concatenate([counts, counts + 7]))
    got = draws.threefry2x32(k[0], k[1], counts, counts + 7)
    np.testing.assert_array_equal(np.concatenate(got), expected)
