"""Resampling schemes: unbiased offspring counts (property-based), support, shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ppl.errors import OptionError
from ppl.smc.resampling import (
    SCHEMES,
    conditional_resample,
    effective_sample_size,
    resample,
    resample_if_degenerate,
)

N, REPS = 8, 4000


@pytest.fixture(scope="module")
def mean_counts():
    """Per scheme: a compiled function of log weights -> offspring counts averaged over REPS."""
    keys = jax.random.split(jax.random.key(0), REPS)

    def make(scheme):
        counts = jax.vmap(lambda k, lw: jnp.bincount(resample(k, lw, N, scheme), length=N))
        return jax.jit(lambda lw: counts(keys, jnp.broadcast_to(lw, (REPS, N))).mean(0))

    return {s: make(s) for s in SCHEMES}


weights = st.lists(st.floats(0.0, 1.0), min_size=N, max_size=N).filter(lambda w: sum(w) > 0.05)


@settings(max_examples=15, deadline=None)
@given(w=weights)
def test_every_scheme_is_unbiased(mean_counts, w):
    # E[offspring_i] = N w_i. The multinomial count has sd sqrt(N w (1 - w)) and the
    # other schemes less, so 5 sd / sqrt(REPS) (+ float slack) bounds the error of the mean.
    w = np.asarray(w) / np.sum(w)
    with np.errstate(divide="ignore"):
        lw = jnp.asarray(np.log(w), jnp.float32)
    tol = 5 * np.sqrt(N * w * (1 - w)) / np.sqrt(REPS) + 1e-3
    for scheme, f in mean_counts.items():
        counts = np.asarray(f(lw))
        assert np.all(np.abs(counts - N * w) <= tol), (scheme, counts, N * w)
        assert np.all(counts[w == 0] == 0), scheme  # a zero-weight particle never survives


@pytest.mark.parametrize("scheme", SCHEMES)
def test_indices_are_in_range_with_the_asked_length(scheme):
    lw = jnp.log(jnp.array([0.5, 0.25, 0.25]))
    idx = jax.jit(lambda k: resample(k, lw, 7, scheme))(jax.random.key(1))
    assert idx.shape == (7,) and idx.dtype == jnp.int32
    assert np.all((np.asarray(idx) >= 0) & (np.asarray(idx) < 3))


def test_systematic_is_exact_for_proportional_weights():
    # N w integers: systematic and residual resampling give exactly those counts.
    lw = jnp.log(jnp.array([0.5, 0.25, 0.125, 0.125]))
    for scheme in ("systematic", "residual"):
        counts = jnp.bincount(resample(jax.random.key(2), lw, 8, scheme), length=4)
        np.testing.assert_array_equal(counts, [4, 2, 1, 1])


def test_conditional_resampling_keeps_the_reference_and_draws_the_others_iid():
    """Particle Gibbs' law: ancestor 0 for the reference, the N - 1 others iid from the
    weights (a scheme's draws with slot 0 overwritten are not: with 2 equal weights the
    other particle never descended from the reference under systematic resampling)."""
    w = np.array([0.5, 0.3, 0.2])
    keys = jax.random.split(jax.random.key(3), REPS)
    idx = np.asarray(jax.vmap(lambda k: conditional_resample(k, jnp.log(w)))(keys))
    assert (idx[:, 0] == 0).all()
    others = idx[:, 1:]
    freq = np.stack([(others == j).mean(axis=0) for j in range(3)], axis=-1)  # (2, 3)
    se = np.sqrt(w * (1 - w) / REPS)
    assert (np.abs(freq - w) < 4.5 * se).all(), freq
    both_zero = ((others[:, 0] == 0) & (others[:, 1] == 0)).mean()  # independent draws
    assert abs(both_zero - w[0] ** 2) < 4.5 * np.sqrt(w[0] ** 2 * (1 - w[0] ** 2) / REPS)


def test_ess_and_threshold():
    assert float(effective_sample_size(jnp.zeros(10))) == pytest.approx(10.0)
    assert float(effective_sample_size(jnp.array([0.0, -jnp.inf, -jnp.inf]))) == pytest.approx(1.0)
    even = jnp.log(jnp.full(4, 3.0))
    idx, lw, did = resample_if_degenerate(jax.random.key(0), even, threshold=0.5)
    assert not bool(did) and np.array_equal(idx, np.arange(4))
    np.testing.assert_allclose(lw, even)
    skewed = jnp.log(jnp.array([100.0, 1e-3, 1e-3, 1e-3]))
    idx, lw, did = resample_if_degenerate(jax.random.key(0), skewed, threshold=0.5)
    assert bool(did) and np.all(np.asarray(idx) == 0)
    # resampling keeps the log mean weight, so evidence estimates stay unbiased
    np.testing.assert_allclose(jax.nn.logsumexp(lw), jax.nn.logsumexp(skewed), rtol=1e-6)


def test_unknown_scheme_is_refused():
    with pytest.raises(OptionError, match="unknown resampling scheme 'sytematic'.*systematic"):
        resample(jax.random.key(0), jnp.zeros(3), scheme="sytematic")
