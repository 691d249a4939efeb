"""Bundled example models and data (made here, nothing downloaded)."""

import jax
import numpy as np

import ppl
from ppl import dist

# Rubin (1981): SAT coaching effects and their standard errors in eight schools.
EIGHT_SCHOOLS_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
EIGHT_SCHOOLS_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


@ppl.model
def eight_schools(sigma, y=None):
    """Hierarchical normal model, non-centred so NUTS explores the funnel."""
    mu = ppl.sample("mu", dist.Normal(0, 5))
    tau = ppl.sample("tau", dist.HalfCauchy(5))
    with ppl.plate("school", len(sigma)):
        theta_raw = ppl.sample("theta_raw", dist.Normal(0, 1))
        theta = ppl.deterministic("theta", mu + tau * theta_raw)
        ppl.sample("y", dist.Normal(theta, sigma), obs=y)


@ppl.model
def eight_schools_centred(sigma, y=None):
    """The centred form of `eight_schools`: a funnel that makes NUTS diverge (for diagnostics)."""
    mu = ppl.sample("mu", dist.Normal(0, 5))
    tau = ppl.sample("tau", dist.HalfCauchy(5))
    with ppl.plate("school", len(sigma)):
        theta = ppl.sample("theta", dist.Normal(mu, tau))
        ppl.sample("y", dist.Normal(theta, sigma), obs=y)


@ppl.model
def logistic_regression(x, y=None):
    """Bayesian logistic regression with a standard-normal prior on the weights."""
    w = ppl.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
    b = ppl.sample("b", dist.Normal(0, 5))
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)


def logistic_data(num_data=1000, num_features=25, seed=0):
    """Synthetic logistic-regression data: (x, y, true_w, true_b), fixed by `seed`."""
    k_x, k_w, k_y = jax.random.split(jax.random.key(seed), 3)
    x = np.asarray(jax.random.normal(k_x, (num_data, num_features)))
    w = np.asarray(jax.random.normal(k_w, (num_features,))) / np.sqrt(num_features) * 2
    b = 0.5
    y = np.asarray(jax.random.bernoulli(k_y, 1 / (1 + np.exp(-(x @ w + b))))).astype(np.float32)
    return x.astype(np.float32), y, w, b
