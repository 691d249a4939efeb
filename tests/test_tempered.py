"""Tempered SMC (`ppl.smc.Tempered`, "smc") against exact answers.

Tolerances come from the spread of independent runs (`num_chains` runs, each its
own key): a quantity estimated per run has Monte Carlo standard error
sd(runs) / √runs, which captures everything that correlates particles within a run
(resampling, shared tuning). A check passes within NUM_SIGMAS such errors. With
16 runs the studentised error has a t distribution with 15 degrees of freedom, so
a correct sampler fails one check with probability about 1e-3; a biased one
(wrong weights, a wrong evidence increment, particles stuck in one mode) misses by
many standard errors. Seeds are fixed, so every result is reproducible.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import NOISE_SD, PRIOR_SD
from numpyro.distributions import constraints
from scipy.stats import multivariate_normal, norm

import ppl
import ppl.smc  # registers "smc"
from ppl import dist
from ppl.errors import InferenceError, ModelError, OptionError
from ppl.infer.registry import resolve
from ppl.smc import Tempered, tempered
from ppl.smc.tempered import _draws

NUM_SIGMAS = 4.0
RUNS = 16


def per_run_se(values):
    """(runs, ...) per-run estimates -> (mean over runs, its standard error)."""
    values = np.asarray(values, dtype=np.float64)
    return values.mean(axis=0), values.std(axis=0, ddof=1) / np.sqrt(values.shape[0])


def assert_close(values, exact, what):
    got, se = per_run_se(values)
    err = np.abs(got - exact)
    assert np.all(err < NUM_SIGMAS * se), (what, got, exact, se)


def assert_evidence(post, exact):
    se = post.diagnostics["log_evidence_se"]
    assert 0 < se < 0.2, se  # a usable estimate, and the check below is not vacuous
    assert abs(post.log_evidence - exact) < NUM_SIGMAS * se, (post.log_evidence, exact, se)


def regression_evidence(regression):
    """log p(y) of the conjugate regression: y ~ N(0, σ² I + τ² X Xᵀ)."""
    x, y = regression.x.astype(np.float64), regression.y.astype(np.float64)
    cov = NOISE_SD**2 * np.eye(len(y)) + PRIOR_SD**2 * x @ x.T
    return multivariate_normal(np.zeros(len(y)), cov).logpdf(y)


# ----- conjugate regression: evidence and posterior --------------------------------


ADAPTIVE = Tempered(num_particles=1000)  # RWMH moves, adaptive schedule


@pytest.fixture(scope="module")
def adaptive_post(regression):
    return ppl.infer(
        regression.model(), ADAPTIVE, num_samples=1000, num_chains=RUNS, seed=0, progress=False
    )


def test_log_evidence_matches_closed_form(adaptive_post, regression):
    assert_evidence(adaptive_post, regression_evidence(regression))
    per_run = adaptive_post.diagnostics["log_evidence_per_run"]
    assert per_run.shape == (RUNS,)
    assert np.isclose(adaptive_post.log_evidence, np.logaddexp.reduce(per_run) - np.log(RUNS))


def test_posterior_moments(adaptive_post, regression):
    w = adaptive_post.samples["w"].astype(np.float64)  # (runs, draws, 3)
    assert_close(w.mean(axis=1), regression.mean, "mean")
    covs = [np.cov(run.T) for run in w]
    assert_close(covs, regression.cov, "cov")


def test_output_and_diagnostics(adaptive_post, regression):
    post, d = adaptive_post, adaptive_post.diagnostics
    assert post.samples["w"].shape == (RUNS, 1000, 3)
    # the deterministic site, as MCMC gives it
    expected = np.einsum("nd,rsd->rsn", regression.x, post.samples["w"])
    np.testing.assert_allclose(post.samples["signal"], expected, rtol=1e-4, atol=1e-4)
    assert post.sample_stats["log_likelihood"].shape == (RUNS, 1000)
    stages = d["num_stages"]
    assert stages.shape == (RUNS,) and np.all(stages >= 2)
    for r in range(RUNS):
        k = stages[r]
        betas = d["beta"][r, :k]
        assert np.all(np.diff(betas) > 0) and betas[-1] == 1.0
        assert np.all(np.isnan(d["beta"][r, k:]))
        # adaptive schedule: every stage but the last keeps ESS at target_ess · N
        np.testing.assert_allclose(d["ess"][r, : k - 1], 0.5 * ADAPTIVE.num_particles, rtol=0.02)
        assert d["ess"][r, k - 1] >= 0.5 * ADAPTIVE.num_particles * 0.98
    acceptance = d["acceptance"][np.isfinite(d["acceptance"])]
    assert np.all((acceptance > 0.1) & (acceptance < 0.6))  # tuned toward RWMH's 0.234
    assert np.all(d["step_size"][np.isfinite(d["step_size"])] > 0)
    assert d["wall_time"] > 0


def test_one_run(adaptive_post, regression):
    """One run is compiled without the batch axis over runs (see `_per_run`): same
    estimator, so its evidence sits within the spread of the 16 runs' ones."""
    post = ppl.infer(
        regression.model(), ADAPTIVE, num_samples=500, num_chains=1, seed=7, progress=False
    )
    spread = adaptive_post.diagnostics["log_evidence_per_run"].std()
    assert abs(post.log_evidence - regression_evidence(regression)) < NUM_SIGMAS * spread
    assert post.samples["w"].shape == (1, 500, 3)
    assert post.diagnostics["beta"].shape[0] == 1 and np.isnan(post.diagnostics["log_evidence_se"])


def test_max_stages_is_an_error(regression):
    # same settings as ADAPTIVE but max_stages: the compiled stage is reused
    with pytest.raises(InferenceError, match="max_stages=2"):
        ppl.infer(
            regression.model(), Tempered(num_particles=1000, max_stages=2),
            num_samples=1000, num_chains=RUNS, seed=0, progress=False,
        )  # fmt: skip


# ----- waste-free SMC: M chains of P states each -----------------------------------


P = 10  # chain length: 9 MALA steps from each of M = 100 resampled particles
WASTE_FREE = Tempered(
    num_particles=1000, kernel=ppl.mcmc.MALA(), num_mcmc_steps=P - 1, waste_free=True
)


@pytest.fixture(scope="module")
def waste_free_post(regression):
    return ppl.infer(
        regression.model(), WASTE_FREE, num_samples=1000, num_chains=RUNS, seed=4, progress=False
    )


def test_waste_free(waste_free_post, regression):
    """Evidence and posterior as exact as without it, with the same per-run tolerances:
    the spread of the runs includes the correlation of the P states of a chain.

    The covariance is checked as each run's mean of (w - μ)(w - μ)ᵀ about the exact
    posterior mean μ, whose expectation is the exact covariance. A run's sample
    covariance (about its own mean) is low by the variance of that mean, Σ / ESS, and
    a waste-free run's ESS is only 100-300 here (M = 100 chains of correlated states):
    a bias of a few per cent, comparable to the tolerance.
    """
    post, d = waste_free_post, waste_free_post.diagnostics
    assert_evidence(post, regression_evidence(regression))
    w = post.samples["w"].astype(np.float64)
    assert_close(w.mean(axis=1), regression.mean, "mean")
    centred = w - regression.mean
    moments = np.einsum("rni,rnj->rij", centred, centred) / w.shape[1]
    assert_close(moments, regression.cov, "cov")
    # each stage: M refreshes at the new temperature and M (P - 1) MALA steps (one
    # gradient each) = N gradients; a standard stage would take N (1 + (P - 1))
    np.testing.assert_array_equal(d["grad_evals"], d["num_stages"] * 1000)
    for r in range(RUNS):
        k = d["num_stages"][r]
        np.testing.assert_allclose(d["ess"][r, : k - 1], 0.5 * 1000, rtol=0.02)
        assert 0.35 < d["acceptance"][r, k - 1] < 0.8  # tuned toward MALA's 0.574


# ----- a fixed schedule, gradient moves inside a combinator -------------------------


SCHEDULE = (0.002, 0.01, 0.03, 0.08, 0.2, 0.45, 1.0)


@pytest.fixture(scope="module")
def fixed_post(regression):
    method = Tempered(
        num_particles=500, kernel=ppl.mcmc.cycle(ppl.mcmc.RWMH(), ppl.mcmc.NUTS()),
        num_mcmc_steps=3, schedule=(0.0,) + SCHEDULE,
    )  # fmt: skip
    return ppl.infer(
        regression.model(), method, num_samples=500, num_chains=RUNS, seed=1, progress=False
    )


def test_fixed_schedule(fixed_post, regression):
    d = fixed_post.diagnostics
    assert np.all(d["num_stages"] == len(SCHEDULE))
    np.testing.assert_allclose(d["beta"], np.tile(SCHEDULE, (RUNS, 1)), rtol=1e-6)
    assert_evidence(fixed_post, regression_evidence(regression))
    w = fixed_post.samples["w"].astype(np.float64)
    assert_close(w.mean(axis=1), regression.mean, "mean")
    # each part of the cycle is tuned on its own: RWMH toward 0.234, NUTS toward 0.8
    for part in ("0.step_size", "1.step_size"):
        assert np.all(d[part] > 0), part
    assert np.all(d["acceptance"] > 0.3)  # the mean of RWMH's and NUTS's acceptance
    assert np.all(d["grad_evals"] > 0)


# ----- a bimodal target: both modes with the right weights --------------------------

MODE, MODE_SD, WEIGHT, WIDE = 4.0, 0.5, 0.3, 5.0


@ppl.model
def bimodal():
    """x ~ N(0, 5²) and a likelihood with modes at ±4 of weights 0.3 / 0.7.

    The prior is symmetric, so the posterior keeps the weights: 0.3 N(-m, s²) +
    0.7 N(m, s²) with precision 1/5² + 1/0.5² and m = 4 · 4 / that precision; the
    evidence is N(4; 0, 5² + 0.5²).
    """
    x = ppl.sample("x", dist.Normal(0.0, WIDE))
    left = jnp.log(WEIGHT) + dist.Normal(-MODE, MODE_SD).log_prob(x)
    right = jnp.log(1 - WEIGHT) + dist.Normal(MODE, MODE_SD).log_prob(x)
    ppl.factor("modes", jnp.logaddexp(left, right))


@pytest.fixture(scope="module")
def bimodal_post():
    return ppl.infer(
        bimodal(), Tempered(num_particles=1000), num_samples=1000, num_chains=RUNS, seed=2,
        progress=False,
    )  # fmt: skip


def test_bimodal_weights_and_evidence(bimodal_post):
    x = bimodal_post.samples["x"].astype(np.float64)  # (runs, draws)
    left = x < 0
    assert np.all(left.mean(axis=1) > 0.15) and np.all(left.mean(axis=1) < 0.45)  # every run
    assert_close(left.mean(axis=1), WEIGHT, "weight of the left mode")
    precision = 1 / WIDE**2 + 1 / MODE_SD**2
    centre = MODE / MODE_SD**2 / precision
    right_mean = [run[run > 0].mean() for run in x]
    left_mean = [run[run < 0].mean() for run in x]
    assert_close(right_mean, centre, "right mode")
    assert_close(left_mean, -centre, "left mode")
    exact = norm(0, np.hypot(WIDE, MODE_SD)).logpdf(MODE)
    assert_evidence(bimodal_post, exact)


@pytest.mark.filterwarnings("ignore:nuts. ess_:ppl.errors.SamplingWarning")  # expected too
def test_nuts_alone_stays_in_one_mode():
    """The contrast: each NUTS chain keeps to the mode it found first (and R-hat says so)."""
    with pytest.warns(ppl.SamplingWarning, match="r_hat"):
        post = ppl.infer(
            bimodal(), "nuts", num_warmup=200, num_samples=200, num_chains=4, seed=0,
            progress=False,
        )  # fmt: skip
    for chain in np.asarray(post.samples["x"]):
        assert np.all(chain > 0) or np.all(chain < 0)


# ----- weights of zero: some particles, then all ------------------------------------


@ppl.model
def truncated(cut, outside):
    """x ~ N(0, 1) and a likelihood that is 1 for x > cut and exp(outside) elsewhere."""
    x = ppl.sample("x", dist.Normal(0.0, 1.0))
    ppl.factor("cut", jnp.where(x > cut, 0.0, outside))


TRUNCATED = Tempered(num_particles=1000)


@pytest.mark.parametrize("outside", [-jnp.inf, jnp.nan])
def test_particles_without_likelihood_drop_out(outside):
    """Half the prior draws have zero likelihood: they get zero weight, and the rest
    give the half-normal posterior and evidence 1/2. A likelihood of zero (-inf: outside
    the support) is silent; a NaN one is a fault in the model, counted and warned about."""
    model = truncated(jnp.array(0.0), jnp.array(outside))
    run = dict(num_samples=600, num_chains=RUNS, seed=3, progress=False)
    if np.isnan(outside):
        with pytest.warns(ppl.SamplingWarning, match=r"particle\(s\) had a NaN log density"):
            post = ppl.infer(model, TRUNCATED, **run)
        nan = post.diagnostics["nan_log_density"]
        # about half of the 1000 prior draws per run; the moves reject proposals into x < 0
        assert nan.shape == (RUNS,) and np.all((nan > 400) & (nan < 600))
        assert len(post.diagnostics["warnings"]) == 1
    else:
        post = ppl.infer(model, TRUNCATED, **run)
        assert post.diagnostics["warnings"] == []
        assert not post.diagnostics["nan_log_density"].any()
    x = post.samples["x"].astype(np.float64)
    assert x.shape == (RUNS, 600)  # fewer draws than particles
    assert np.all(x > 0)
    assert_close(x.mean(axis=1), np.sqrt(2 / np.pi), "half-normal mean")
    assert_evidence(post, np.log(0.5))


def test_draws_take_particles_evenly():
    """The final particles are equally weighted: draws take each once (num_samples = N),
    else each floor or ceil of num_samples / N times (systematic), in random order."""
    idx = _draws(np.array([1, 2], np.uint32), 1000, 1000)
    np.testing.assert_array_equal(np.sort(idx), np.arange(1000))
    assert not np.all(np.diff(idx) > 0)
    counts = np.bincount(_draws(np.array([3, 4], np.uint32), 1000, 2500), minlength=1000)
    assert set(counts.tolist()) == {2, 3} and counts.sum() == 2500


@pytest.mark.parametrize("outside", [-jnp.inf, jnp.nan])
def test_degenerate_weights_are_an_error(outside):
    with pytest.raises(InferenceError, match=r"stage 1 \(β 0 → .*no particle has a finite"):
        ppl.infer(
            truncated(jnp.array(100.0), jnp.array(outside)), TRUNCATED, num_samples=1000, num_chains=RUNS, seed=0,
            progress=False,
        )  # fmt: skip


# ----- models it refuses, options ----------------------------------------------------


@ppl.model
def with_discrete():
    ppl.sample("z", dist.Bernoulli(0.5))
    ppl.sample("x", dist.Normal(0.0, 1.0), obs=1.0)


@ppl.model
def improper():
    x = ppl.sample("x", dist.ImproperUniform(constraints.real, (), ()))
    ppl.sample("y", dist.Normal(x, 1.0), obs=1.0)


def test_refuses_discrete_and_improper():
    with pytest.raises(ModelError, match="'z'.*discrete"):
        ppl.infer(with_discrete(), "smc", progress=False)
    with pytest.raises(ModelError, match="improper prior"):
        ppl.infer(improper(), "smc", progress=False)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"num_particles": 1}, "num_particles"),
        ({"num_particles": 10.0}, "num_particles"),
        ({"num_mcmc_steps": 0}, "num_mcmc_steps"),
        ({"num_particles": 3}, r"target_ess × num_particles = 1.5: .* jump to β = 1"),
        ({"target_ess": 1.0}, "target_ess"),
        ({"target_ess": 0}, "target_ess"),
        ({"max_stages": 0}, "max_stages"),
        ({"schedule": (0.5, 0.2, 1.0)}, "schedule"),
        ({"schedule": (0.1, 0.9)}, "end at 1.0"),
        ({"schedule": ()}, "schedule"),
        ({"schedule": "fast"}, "schedule"),
        ({"resampling": "best"}, "resampling scheme"),
        ({"kernel": Tempered()}, "kernel"),
        ({"kernel": "no-such-kernel"}, "unknown method"),
        ({"kernel": "pmmh"}, "contains pmmh, whose particle filter targets the model's untempered"),
        ({"kernel": ppl.mcmc.RWMH(init={"w": 0.0})}, r"rwmh\(init=\{'w': 0.0\}\) would not"),
        (
            {"kernel": ppl.mcmc.cycle(ppl.mcmc.RWMH(), ppl.smc.ParticleGibbs())},
            "contains particle_gibbs",
        ),
        ({"waste_free": 1}, "waste_free"),
        ({"waste_free": True, "num_particles": 1000}, r"num_particles=1000 .* = 11"),
        ({"waste_free": True, "num_particles": 100, "num_mcmc_steps": 2}, "100 .* = 3"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(OptionError, match=match):
        Tempered(**options)


def test_runs_that_disagree_or_stall_are_warned_about():
    distinct = np.array([600, 40])  # of 1,000: run 1's final particles are mostly copies
    found = tempered._run_warnings(np.array([-29.7, -31.9]), distinct, 1000)
    assert len(found) == 2
    assert "spread by 1.1 nats" in found[0] and "[-29.7, -31.9]" in found[0]
    assert "under 10% of the final particles are distinct in run(s) [1] ([40] of 1000)" in found[1]
    assert tempered._run_warnings(np.array([-29.7, -29.8]), distinct[:1], 1000) == []


def test_options_and_registry(regression):
    assert isinstance(resolve("smc"), Tempered)
    assert Tempered(kernel="nuts").kernel == ppl.mcmc.NUTS()
    assert Tempered(schedule=[0, 0.5, 1]).schedule == (0.5, 1.0)
    with pytest.raises(OptionError, match="no warmup"):
        ppl.infer(regression.model(), "smc", num_warmup=10)
    with pytest.raises(OptionError, match="option of the method"):
        ppl.infer(regression.model(), "smc", num_particles=10)
