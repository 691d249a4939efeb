"""Shared fixtures: a conjugate linear regression and its NUTS posterior, compiled once a session.

Bayesian linear regression with known noise has a Gaussian posterior in closed
form, so it serves both as an exactness check for samplers (tests/test_mcmc.py)
and as a realistic Posterior for save/load, predictive and ArviZ tests
(tests/test_posterior.py).
"""

import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist

NOISE_SD = 1.0  # known observation noise
PRIOR_SD = 2.0  # w ~ Normal(0, PRIOR_SD² I)
NUM_DATA, NUM_FEATURES = 40, 3


@ppl.model
def linear_regression(x, y=None):
    """y ~ Normal(x @ w, NOISE_SD); `signal` is a deterministic site of shape (N,)."""
    w = ppl.sample("w", dist.Normal(0.0, PRIOR_SD).expand([x.shape[1]]).to_event(1))
    signal = ppl.deterministic("signal", x @ w)
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", dist.Normal(signal, NOISE_SD), obs=y)


class Regression:
    """Data of the conjugate regression and its exact posterior N(mean, cov) in float64."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        mix = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.3, -0.5, 0.8]])
        self.x = (rng.normal(size=(NUM_DATA, NUM_FEATURES)) @ mix).astype(np.float32)
        self.w_true = np.array([1.0, -2.0, 0.5])
        noise = NOISE_SD * rng.normal(size=NUM_DATA)
        self.y = (self.x @ self.w_true + noise).astype(np.float32)
        x, y = self.x.astype(np.float64), self.y.astype(np.float64)
        precision = x.T @ x / NOISE_SD**2 + np.eye(NUM_FEATURES) / PRIOR_SD**2
        self.cov = np.linalg.inv(precision)
        self.mean = self.cov @ x.T @ y / NOISE_SD**2
        self.x_new = (rng.normal(size=(5, NUM_FEATURES)) @ mix).astype(np.float32)

    def model(self):
        return linear_regression(jnp.asarray(self.x), y=jnp.asarray(self.y))


@pytest.fixture(scope="session")
def regression():
    return Regression()


@pytest.fixture(scope="session")
def regression_nuts(regression):
    """One NUTS run on the regression, shared by every test that needs a real Posterior."""
    return ppl.infer(
        regression.model(), "nuts", num_warmup=500, num_samples=1000, num_chains=4,
        seed=1, progress=False,
    )  # fmt: skip
