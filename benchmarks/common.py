"""Shared pieces of the benchmarks: the logistic-regression problem and a timer."""

import time

import jax
import jax.numpy as jnp

NUM_DATA, NUM_FEATURES = 1000, 25
NUM_CHAINS, NUM_WARMUP, NUM_SAMPLES = 4, 500, 1000


def data():
    """The benchmark's synthetic data set (fixed seed), as produced by ppl.examples."""
    from ppl import examples

    x, y, _, _ = examples.logistic_data(NUM_DATA, NUM_FEATURES, seed=0)
    return jnp.asarray(x), jnp.asarray(y)


def hand_log_density(x, y):
    """The model's log joint over a flat (w, b) vector, written by hand in JAX."""

    def log_density(theta):
        w, b = theta[:-1], theta[-1]
        logits = x @ w + b
        log_lik = jnp.sum(y * logits - jnp.logaddexp(0.0, logits))
        log_prior = jax.scipy.stats.norm.logpdf(w).sum() + jax.scipy.stats.norm.logpdf(b, 0, 5)
        return log_lik + log_prior

    return log_density


def seconds_per_eval(fn, theta, repeats=2000):
    """Wall time of one call of `fn(theta)` inside a fused, compiled fori_loop."""

    @jax.jit
    def loop(theta):
        def body(_, carry):
            value, grad = fn(carry)
            return carry + 1e-6 * grad + 0.0 * value[..., None]

        return jax.lax.fori_loop(0, repeats, body, theta)

    jax.block_until_ready(loop(theta))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        jax.block_until_ready(loop(theta))
        best = min(best, time.perf_counter() - t0)
    return best / repeats
