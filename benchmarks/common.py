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


def min_ess_bulk(draws):
    """Smallest rank-normalised bulk ESS (ppl's, Stan's estimator) over parameters;
    draws: (chains, draws, params). Bulk ESS is rank-based, so constrained and
    unconstrained draws of a parameter give the same value."""
    import numpy as np

    from ppl.infer.summary import ess_bulk

    return float(np.nanmin([ess_bulk(draws[:, :, i]) for i in range(draws.shape[-1])]))


def eight_schools_log_density(y, sigma):
    """Non-centred eight schools over a flat (mu, log tau, theta_raw[8]) vector, by hand
    (the log-Jacobian of tau = exp(log tau) included)."""
    norm = jax.scipy.stats.norm

    def log_density(theta):
        mu, log_tau, raw = theta[0], theta[1], theta[2:]
        tau = jnp.exp(log_tau)
        log_prior = (
            norm.logpdf(mu, 0.0, 5.0)
            + jax.scipy.stats.cauchy.logpdf(tau, 0.0, 5.0) + jnp.log(2.0) + log_tau
            + norm.logpdf(raw).sum()
        )  # fmt: skip
        return log_prior + norm.logpdf(y, mu + tau * raw, sigma).sum()

    return log_density


GAUSSIAN_DIM, GAUSSIAN_CONDITION = 100, 1e2


def gaussian_covariance(dim=GAUSSIAN_DIM, condition=GAUSSIAN_CONDITION, seed=0):
    """A rotated ill-conditioned covariance Q diag(λ) Qᵀ: Q a random orthogonal matrix
    (fixed seed), λ log-spaced over [1, condition] (so marginal scales do not reveal it)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(dim, dim)))
    q = q * np.sign(np.diag(r))
    eigenvalues = np.logspace(0.0, np.log10(condition), dim)
    return (q * eigenvalues) @ q.T


def gaussian_log_density(precision):
    """Zero-mean Gaussian log density (up to a constant) from its precision matrix."""

    def log_density(x):
        return -0.5 * x @ (precision @ x)

    return log_density
