"""Simulation-based calibration (Talts et al. 2018) of each MCMC kernel.

For s = 1..S: draw parameters from the prior, data from the model given them,
run the sampler on that data and record the rank of the true value among the
(thinned) posterior draws. A calibrated sampler makes the ranks uniform on
0..L. Ranks are binned into B bins and checked with a chi-square test at a
fixed seed; a broken kernel (e.g. a wrong acceptance ratio) fails it by orders
of magnitude, so the threshold p > 0.001 leaves no room for flakiness at a
fixed seed while keeping real power. Every run reuses one compiled program:
only the data change between runs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
from ppl import dist, mcmc

pytestmark = pytest.mark.filterwarnings("ignore::ppl.errors.SamplingWarning")

NUM_SIMS, NUM_DATA, BINS = 100, 5, 10
NUM_WARMUP, NUM_DRAWS, THIN = 150, 396, 4  # 99 kept draws: ranks 0..99, 10 per bin


@ppl.model
def normal_model(y=None):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    sigma = ppl.sample("sigma", dist.HalfNormal(1.0))
    with ppl.plate("data", NUM_DATA):
        ppl.sample("y", dist.Normal(mu, sigma), obs=y)


@ppl.model
def gaussian_latent(y=None):
    """A latent Gaussian with fixed noise: the shape elliptical slice sampling is for."""
    f = ppl.sample("f", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    with ppl.plate("data", NUM_DATA):
        ppl.sample("y", dist.Normal(f[0] + f[1] * np.linspace(-1, 1, NUM_DATA), 0.5), obs=y)


def sbc_ranks(model, method, sites, seed=0):
    """Ranks of the true values of `sites` (scalar components) over NUM_SIMS simulations."""
    truth = model().prior(num_samples=NUM_SIMS, seed=seed)
    ranks = []
    for s in range(NUM_SIMS):
        post = ppl.infer(
            model(y=truth["y"][s]), method=method, num_warmup=NUM_WARMUP,
            num_samples=NUM_DRAWS, num_chains=1, seed=seed + 1 + s, progress=False,
        )  # fmt: skip
        row = []
        for name in sites:
            draws = post.samples[name][0, ::THIN].reshape(-1, *np.shape(truth[name][s]))
            row.extend(np.atleast_1d((draws < truth[name][s]).sum(axis=0)))
        ranks.append(row)
    return np.array(ranks)


def assert_uniform(ranks, label):
    max_rank = NUM_DRAWS // THIN
    for j in range(ranks.shape[1]):
        counts = np.bincount(ranks[:, j] * BINS // (max_rank + 1), minlength=BINS)
        p = stats.chisquare(counts).pvalue
        assert p > 1e-3, f"{label}, component {j}: ranks not uniform (p={p:.2g}), bins {counts}"


KERNELS = {
    "nuts": (normal_model, ("mu", "sigma"), lambda: mcmc.NUTS()),
    "rwmh": (normal_model, ("mu", "sigma"), lambda: mcmc.repeat(mcmc.RWMH(), 4)),
    "hmc": (normal_model, ("mu", "sigma"), lambda: mcmc.HMC()),
    "mala": (normal_model, ("mu", "sigma"), lambda: mcmc.MALA()),
    "elliptical": (gaussian_latent, ("f",), lambda: mcmc.EllipticalSlice()),
}


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernel_is_calibrated(name):
    model, sites, make = KERNELS[name]
    assert_uniform(sbc_ranks(model, make(), sites), name)


def test_sbc_detects_a_miscalibrated_sampler():
    """The check has power: ranks from a posterior that is too narrow fail it."""
    rng = np.random.default_rng(0)
    truth = rng.normal(size=NUM_SIMS)
    posterior_draws = truth[:, None] + 0.3 * rng.normal(size=(NUM_SIMS, NUM_DRAWS // THIN))
    too_narrow = 0.5 * (posterior_draws - truth[:, None]) + truth[:, None] + 0.5
    ranks = (too_narrow < truth[:, None]).sum(axis=1)[:, None]
    with pytest.raises(AssertionError, match="not uniform"):
        assert_uniform(ranks, "narrow")


def test_discrete_gibbs_is_calibrated():
    """Gibbs on a discrete latent: exact ranks are tied, so ties are broken at random."""

    @ppl.model
    def coin_mixture(y=None):
        z = ppl.sample("z", dist.Categorical(probs=np.array([0.2, 0.5, 0.3])))
        with ppl.plate("data", NUM_DATA):
            ppl.sample("y", dist.Normal(jnp.array([-1.0, 0.0, 1.5])[z], 1.0), obs=y)

    truth = coin_mixture().prior(num_samples=NUM_SIMS, seed=7)
    key = jax.random.key(0)
    ranks = []
    for s in range(NUM_SIMS):
        post = ppl.infer(
            coin_mixture(y=truth["y"][s]), method=mcmc.DiscreteGibbs(), num_warmup=10,
            num_samples=NUM_DRAWS, num_chains=1, seed=100 + s, progress=False,
        )  # fmt: skip
        draws, z0 = post.samples["z"][0, ::THIN], truth["z"][s]
        key, sub = jax.random.split(key)
        ties = int((draws == z0).sum())
        ranks.append(int((draws < z0).sum()) + int(jax.random.randint(sub, (), 0, ties + 1)))
    assert_uniform(np.array(ranks)[:, None], "gibbs")
