"""Compile-friendly random draws (`ppl.core.draws`) and the driver's table of step keys.

Both exist to make XLA's CPU code smaller: the draws must keep their distribution, and the
key table must give exactly the keys `fold_in` gives (resumed runs rely on it)."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
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
def test_written_out_hash_gives_jax_randoms_values(seed, n, data):
    # ppl's own threefry (no rolled loop on CPU) must not change a single draw
    if not jax.config.jax_threefry_partitionable:
        return
    key = jax.random.key(seed)
    np.testing.assert_array_equal(draws.bits(key, n), jax.random.bits(key, (n,)))
    np.testing.assert_array_equal(draws.uniform(key, n), jax.random.uniform(key, (n,)))
    np.testing.assert_array_equal(draws.normal(key, n), jax.random.normal(key, (n,)))
    for got, expected in [
        (draws.fold_in(key, data), jax.random.fold_in(key, data)),
        (draws.split(key, n + 1), jax.random.split(key, n + 1)),
    ]:
        np.testing.assert_array_equal(jax.random.key_data(got), jax.random.key_data(expected))


def test_written_out_hash_inside_vmap_and_for_other_keys():
    keys = jax.random.split(jax.random.key(3), 5)
    np.testing.assert_array_equal(
        jax.jit(jax.vmap(lambda k: draws.normal(k, 10)))(keys),
        jax.vmap(lambda k: jax.random.normal(k, (10,)))(keys),
    )
    np.testing.assert_array_equal(
        jax.vmap(lambda k: jax.random.key_data(draws.fold_in(k, 7)))(keys),
        jax.vmap(lambda k: jax.random.key_data(jax.random.fold_in(k, 7)))(keys),
    )
    # other key implementations and float64 go to jax.random itself
    rbg = jax.random.key(0, impl="rbg")
    np.testing.assert_array_equal(draws.normal(rbg, 5), jax.random.normal(rbg, (16,))[:5])
    np.testing.assert_array_equal(
        jax.random.key_data(draws.fold_in(rbg, 2)), jax.random.key_data(jax.random.fold_in(rbg, 2))
    )


def test_flow_guides_base_draw_is_numpyros_standard_normal():
    from ppl import dist
    from ppl.flows.guide import StandardNormal

    key = jax.random.key(4)
    reference = dist.Normal(0.0, 1.0).expand([26]).to_event(1)
    for shape in [(), (3,)]:
        draw = StandardNormal(26).sample(key, shape)
        np.testing.assert_array_equal(draw, reference.sample(key, shape))
        np.testing.assert_array_equal(StandardNormal(26).log_prob(draw), reference.log_prob(draw))
