"""Particle MCMC (PMMH, PIMH, particle Gibbs) against exact answers: the posterior of the
static parameters on a grid of Kalman-filter likelihoods, and the RTS smoother."""

import numpy as np
import pytest
from kalman import grid_posterior, kalman, known, simulate, unknown

import ppl
from ppl.errors import ModelError, OptionError
from ppl.infer.summary import ess_mean

T = 60
pytestmark = pytest.mark.filterwarnings("ignore::ppl.SamplingWarning")  # short chains
Y = simulate(4, T, 0.8, 0.7)
EXACT = grid_posterior(Y)
RUN = dict(num_samples=800, num_warmup=400, num_chains=2, seed=0, progress=False)


def assert_matches_grid(post, min_ess=30):
    # posterior means within 5 Monte Carlo standard errors (sd / sqrt(ESS)) of the exact
    # grid values; a sampler that ignored the data would sit at the prior (phi mean 0)
    for name, (mean, sd) in EXACT.items():
        draws = post.samples[name]
        ess = ess_mean(draws)
        assert ess > min_ess, (name, ess)
        assert abs(draws.mean() - mean) < 5 * sd / np.sqrt(ess), (name, draws.mean(), mean)
        assert 0.6 < draws.std() / sd < 1.5, (name, draws.std(), sd)


def test_pmmh_recovers_static_parameters():
    post = ppl.infer(unknown(Y), method=ppl.smc.PMMH(num_particles=200), **RUN)
    assert_matches_grid(post)
    assert post.samples["x"].shape == (2, 800, T)
    assert 0.05 < post.diagnostics["accept_rate"].mean() < 0.6
    assert np.isfinite(post.sample_stats["log_likelihood"]).all()


def test_particle_gibbs_within_blocks():
    gibbs = ppl.mcmc.blocks(
        {"x": ppl.smc.ParticleGibbs(num_particles=100), ("phi", "q"): ppl.mcmc.RWMH()}
    )
    # theta given the path mixes slowly under Gibbs (strong dependence): a lower ESS floor
    assert_matches_grid(ppl.infer(unknown(Y), method=gibbs, **RUN), min_ess=10)


def test_pmmh_in_a_cycle_reestimates_after_other_moves():
    # the RWMH step moves phi, q and x; PMMH then re-estimates its likelihood at the new
    # position by conditional SMC (a stale estimate would bias the static posterior)
    sampler = ppl.mcmc.cycle(ppl.smc.PMMH(num_particles=200), ppl.mcmc.RWMH())
    assert_matches_grid(ppl.infer(unknown(Y), method=sampler, **RUN))


def test_pimh_smooths_the_trajectory():
    y = Y[:30]
    smooth_mean, smooth_var = kalman(y, 0.9, 1.0)[3:]
    post = ppl.infer(
        known(y), method=ppl.smc.PIMH(num_particles=200), num_samples=400, num_warmup=0,
        num_chains=2, seed=1, progress=False,
    )  # fmt: skip
    x = post.samples["x"]
    assert 0.2 < post.diagnostics["accept_rate"].mean() <= 1
    ess = np.array([ess_mean(x[..., t]) for t in range(len(y))])
    np.testing.assert_array_less(
        np.abs(x.mean(axis=(0, 1)) - smooth_mean), 5 * np.sqrt(smooth_var / ess)
    )


def test_particle_gibbs_is_exact_with_two_particles():
    """Conditional SMC is exact for any number of particles: with 2 (where a wrong
    resampling law shows most: means were ~6 SEs off, variances 24% high) the draws
    match the RTS smoother."""
    y = Y[:4]
    smooth_mean, smooth_var = kalman(y, 0.9, 1.0)[3:]
    post = ppl.infer(
        known(y), method=ppl.smc.ParticleGibbs(num_particles=2, resample_threshold=1.0),
        num_samples=5000, num_warmup=100, num_chains=4, seed=2, progress=False,
    )  # fmt: skip
    x = post.samples["x"]
    for t in range(len(y)):
        ess = ess_mean(x[..., t])
        assert abs(x[..., t].mean() - smooth_mean[t]) < 4.5 * np.sqrt(smooth_var[t] / ess), t
        assert abs(x[..., t].var() / smooth_var[t] - 1) < 4.5 * np.sqrt(2 / ess), t


def test_particle_gibbs_alone_without_static_sites():
    # nothing but the trajectory to move: particle Gibbs alone is a valid sampler
    post = ppl.infer(
        known(Y[:10]), method=ppl.smc.ParticleGibbs(num_particles=20), num_samples=20,
        num_warmup=0, num_chains=1, seed=0, progress=False,
    )  # fmt: skip
    assert post.samples["x"].shape == (1, 20, 10) and np.isfinite(post.samples["x"]).all()


def test_bad_input():
    with pytest.raises(ModelError, match="PMMH moves static sites.*has none"):
        ppl.infer(known(Y), method=ppl.smc.PMMH(), num_samples=5, num_warmup=5, num_chains=1)
    with pytest.raises(OptionError, match="static_kernel=.* must be a ppl.mcmc.RWMH"):
        ppl.smc.PMMH(static_kernel=ppl.mcmc.NUTS())
    in_block = ppl.mcmc.blocks({("phi", "q", "x"): ppl.smc.PMMH()})
    with pytest.raises(OptionError, match="PMMH moves the static sites and the whole"):
        ppl.infer(unknown(Y), method=in_block, num_samples=5, num_warmup=5, num_chains=1)
    # alone it never moves phi and q: refused, with the blocks(...) line to use instead
    fix = r"blocks\(\{'x': ppl.smc.ParticleGibbs\(num_particles=100\), \('phi', 'q'\): ppl.mcmc"
    with pytest.raises(ModelError, match=r"static site\(s\) \['phi', 'q'\].*" + fix):
        ppl.infer(unknown(Y), method="particle_gibbs", num_samples=5, num_warmup=5, num_chains=1)
    wrong = ppl.mcmc.blocks({("x", "q"): ppl.smc.ParticleGibbs(), "phi": ppl.mcmc.RWMH()})
    with pytest.raises(OptionError, match=r"moves exactly the loop's latent sites \['x'\]"):
        ppl.infer(unknown(Y), method=wrong, num_samples=5, num_warmup=5, num_chains=1)
