"""Resampling of weighted particles, in log space, jit-compiled and vmappable.

Every scheme returns ancestor indices whose expected offspring counts equal
N·w (unbiased); they differ in variance: multinomial > stratified, residual >
systematic (usually lowest).

>>> # log_weights: (N,) unnormalised; particles: a pytree of arrays with leading axis N
>>> idx = resample(jax.random.key(0), log_weights, scheme="systematic")
>>> particles = jax.tree.map(lambda x: x[idx], particles)
"""

import jax
import jax.numpy as jnp

from ppl.errors import OptionError

__all__ = [
    "SCHEMES", "resample", "conditional_resample", "normalize", "effective_sample_size",
    "resample_if_degenerate",
]  # fmt: skip

#: Names of the resampling schemes that `resample(..., scheme=...)` and the SMC methods'
#: `resampling=` option accept (see the module docstring for how they differ).
SCHEMES = ("multinomial", "stratified", "systematic", "residual")


def normalize(log_weights):
    """(normalised weights, log of the sum of the unnormalised weights)."""
    log_total = jax.nn.logsumexp(log_weights)
    return jnp.exp(log_weights - log_total), log_total


def effective_sample_size(log_weights):
    """Kish's ESS, 1 / sum(w²) of the normalised weights (NaN when all are -inf)."""
    w, _ = normalize(log_weights)
    return 1.0 / jnp.sum(w**2)


def _inverse_cdf(weights, uniforms):
    cdf = jnp.cumsum(weights)
    idx = jnp.searchsorted(cdf, uniforms * cdf[-1], side="right")
    return jnp.clip(idx, 0, weights.shape[0] - 1)


def _multinomial(key, w, m):
    return jnp.sort(jax.random.choice(key, w.shape[0], (m,), p=w))


def _stratified(key, w, m):
    return _inverse_cdf(w, (jnp.arange(m) + jax.random.uniform(key, (m,))) / m)


def _systematic(key, w, m):
    return _inverse_cdf(w, (jnp.arange(m) + jax.random.uniform(key)) / m)


def _residual(key, w, m):
    counts = jnp.floor(m * w).astype(jnp.int32)
    deterministic = jnp.repeat(jnp.arange(w.shape[0]), counts, total_repeat_length=m)
    rest = m * w - counts
    draws = jax.random.choice(key, w.shape[0], (m,), p=rest / jnp.sum(rest))  # iid: any m - sum
    return jnp.where(jnp.arange(m) < jnp.sum(counts), deterministic, draws)


_SCHEMES = {
    "multinomial": _multinomial,
    "stratified": _stratified,
    "systematic": _systematic,
    "residual": _residual,
}


def check_scheme(scheme):
    if scheme not in _SCHEMES:
        raise OptionError(
            f"unknown resampling scheme {scheme!r}; choose one of {', '.join(SCHEMES)}"
        )


def resample(key, log_weights, num_samples=None, scheme="systematic"):
    """Ancestor indices (int32, length `num_samples`, default N) drawn by `scheme`."""
    check_scheme(scheme)
    w, _ = normalize(log_weights)
    m = log_weights.shape[0] if num_samples is None else num_samples
    return _SCHEMES[scheme](key, w, m).astype(jnp.int32)


def conditional_resample(key, log_weights):
    """Ancestors for conditional SMC (particle Gibbs): particle 0, the reference, keeps
    its own past, and the other N - 1 are drawn iid from the weights (multinomial). Its
    law is what makes particle Gibbs exact; overwriting slot 0 of a scheme's (sorted or
    correlated) draws is not (Andrieu, Doucet & Holenstein 2010)."""
    n = log_weights.shape[0]
    others = jax.random.categorical(key, log_weights, shape=(n - 1,))
    return jnp.concatenate([jnp.zeros(1, jnp.int32), others.astype(jnp.int32)])


def resample_if_degenerate(key, log_weights, threshold=0.5, scheme="systematic"):
    """Resample when ESS < threshold·N: (indices, new log weights, resampled?).

    Without resampling the indices are the identity and the weights are kept;
    after it the weights are equal (their log mean is preserved, so evidence sums
    stay correct).
    """
    n = log_weights.shape[0]
    ess = effective_sample_size(log_weights)
    do = ess < threshold * n
    _, log_total = normalize(log_weights)
    idx = jnp.where(do, resample(key, log_weights, scheme=scheme), jnp.arange(n, dtype=jnp.int32))
    flat = jnp.full(n, log_total - jnp.log(n))
    return idx, jnp.where(do, flat, log_weights), do
