"""Expected log likelihoods E_q[log p(y | f)] under Gaussian marginals q(f_n) = N(μ_n, v_n).

Gaussian: in closed form. Bernoulli (logit link): by Monte Carlo, f = μ + √v ε with
`num_mc` draws of ε per point (reparameterised, so the gradient is unbiased too).
"""

import math

import jax
import jax.numpy as jnp

__all__ = ["expected_log_lik", "gaussian_expected_log_lik"]


def gaussian_expected_log_lik(y, mean, var, noise_var):
    return (
        -0.5 * (math.log(2 * math.pi) + jnp.log(noise_var))
        - 0.5 * (jnp.square(y - mean) + var) / noise_var
    )


def expected_log_lik(likelihood, y, mean, var, noise_var, key, num_mc):
    """Per point E_q[log p(y_n | f_n)], shape (n,)."""
    if likelihood == "gaussian":
        return gaussian_expected_log_lik(y, mean, var, noise_var)
    eps = jax.random.normal(key, (num_mc,) + mean.shape, mean.dtype)
    f = mean + jnp.sqrt(var) * eps
    return jnp.mean(y * f - jax.nn.softplus(f), axis=0)
