"""Particle filter ("pf") on a linear-Gaussian state-space model, against the Kalman filter."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from kalman import R, kalman, known, simulate

import ppl
from ppl import dist
from ppl.errors import DataError, InferenceError, ModelError, OptionError
from ppl.infer.summary import ess_mean

T, PHI, Q = 40, 0.9, 1.0
Y = simulate(0, T, PHI, Q)
LOGLIK, FILTER_MEAN, FILTER_VAR, SMOOTH_MEAN, SMOOTH_VAR = kalman(Y, PHI, Q)
CHAINS = 8


@pytest.fixture(scope="module")
def bootstrap():
    pf = ppl.smc.ParticleFilter(num_particles=1000)
    return ppl.infer(known(Y), method=pf, num_samples=200, num_chains=CHAINS, seed=1)


def optimal_proposal(x_prev, y_t):
    """p(x_t | x_{t-1}, y_t): the locally optimal proposal, Gaussian in this model."""
    prior_var = Q**2
    var = 1 / (1 / prior_var + 1 / R**2)
    mean = var * (PHI * x_prev / prior_var + y_t / R**2)
    ppl.sample("x", dist.Normal(mean, jnp.sqrt(var)))


def test_log_evidence_matches_kalman(bootstrap):
    # each filter's estimate of p(y) is unbiased; the spread of 8 filters gives the
    # standard error of the log of their mean (log mean exp's downward bias, ~se²/2,
    # is far below it), so 4 standard errors is a fixed-seed check that can fail
    se = bootstrap.diagnostics["log_evidence_se"]
    assert 0 < se < 0.3
    assert abs(bootstrap.log_evidence - LOGLIK) < 4 * se


def test_filtering_means_match_kalman(bootstrap):
    means = bootstrap.diagnostics["filtering_mean"]["x"]
    assert means.shape == (CHAINS, T)
    # weighted means over >= ~300 effective particles per filter, 8 filters: the standard
    # error is at most sd / sqrt(8 · 300); 5 of them at every step
    tol = 5 * np.sqrt(FILTER_VAR / (CHAINS * 300))
    np.testing.assert_array_less(np.abs(means.mean(axis=0) - FILTER_MEAN), tol)


def test_smoothed_trajectories_match_rts(bootstrap):
    x = bootstrap.samples["x"]
    assert x.shape == (CHAINS, 200, T)
    # ancestor tracing is exact in distribution; the standard error of the mean over 8
    # filters comes from their spread (early steps collapse onto few ancestors per
    # filter, so it is larger there). z-scores: none beyond 5, and on average below 1.5
    # (|t| with 7 degrees of freedom averages ~0.85; smoothing means replaced by
    # filtering means would average ~3)
    per_filter = x.mean(axis=1)
    se = per_filter.std(axis=0, ddof=1) / np.sqrt(CHAINS)
    z = np.abs(per_filter.mean(axis=0) - SMOOTH_MEAN) / se
    assert z.max() < 5 and z.mean() < 1.5
    # at the last step smoothing is filtering: many distinct particles, a tight check
    last = x[..., -1].reshape(-1)
    assert abs(last.mean() - SMOOTH_MEAN[-1]) < 5 * np.sqrt(SMOOTH_VAR[-1] / (CHAINS * 100))
    assert abs(last.var() / SMOOTH_VAR[-1] - 1) < 0.25


def test_diagnostics(bootstrap):
    d = bootstrap.diagnostics
    assert d["ess"].shape == d["resampled"].shape == (CHAINS, T)
    assert d["resampled"].any() and np.all(d["ess"] <= 1000 + 1e-3)
    increments = d["log_evidence_increments"].sum(axis=1)
    np.testing.assert_allclose(increments, d["log_evidence_per_run"], rtol=1e-5)
    # a healthy filter: no warning (its lowest ESS is ~5% of the particles, above 1%)
    assert d["warnings"] == [] and not d["nan_weights"].any()


def test_optimal_proposal_lowers_the_variance(bootstrap):
    pf = ppl.smc.ParticleFilter(num_particles=1000, proposal=optimal_proposal)
    post = ppl.infer(known(Y), method=pf, num_samples=10, num_chains=CHAINS, seed=2)
    se = post.diagnostics["log_evidence_se"]
    assert se < bootstrap.diagnostics["log_evidence_se"] / 2
    assert abs(post.log_evidence - LOGLIK) < 4 * se + 1e-3


def test_never_resampling_is_importance_sampling():
    # threshold 0: sequential importance sampling, still unbiased (but noisy: within 10
    # steps the weights collapse onto a few particles), so only a loose check of the
    # estimate; the collapse (ESS ~1 of 1000 from step 6 on) is warned about
    pf = ppl.smc.ParticleFilter(num_particles=1000, resample_threshold=0.0)
    with pytest.warns(ppl.SamplingWarning, match=r"weights collapsed.*below 10 of 1000"):
        post = ppl.infer(known(Y[:10]), method=pf, num_samples=10, num_chains=CHAINS, seed=3)
    assert not post.diagnostics["resampled"].any()
    exact = kalman(Y[:10], PHI, Q)[0]
    assert abs(post.log_evidence - exact) < 4 * post.diagnostics["log_evidence_se"] + 0.05
    (message,) = post.diagnostics["warnings"]
    assert "time step(s) (6, 7, 8, 9;" in message and "resample_threshold" in message


def test_same_model_runs_under_nuts():
    post = ppl.infer(known(Y), method="nuts", num_samples=300, num_warmup=300, num_chains=2)
    x = post.samples["x"]  # (chains, draws, T)
    # the smoothing posterior is Gaussian: each step's mean within 5 Monte Carlo
    # standard errors (sd / sqrt(ESS)) of the RTS smoother's
    ess = np.array([ess_mean(x[..., t]) for t in range(T)])
    np.testing.assert_array_less(
        np.abs(x.mean(axis=(0, 1)) - SMOOTH_MEAN), 5 * np.sqrt(SMOOTH_VAR / ess)
    )


# ----- bad input -------------------------------------------------------------------------


@ppl.model
def no_scan(y):
    x = ppl.sample("x", dist.Normal(0, 1))
    with ppl.plate("t", y.shape[0]):
        ppl.sample("y", dist.Normal(x, 1), obs=y)


@ppl.model
def two_inputs(y, u):
    def step(x_prev, inputs):
        y_t, u_t = inputs
        x = ppl.sample("x", dist.Normal(x_prev + u_t, 1))
        ppl.sample("y", dist.Normal(x, 1), obs=y_t)
        return x, None

    ppl.scan(step, 0.0, (y, u))


@ppl.model
def site_after_loop(y):
    def step(x_prev, y_t):
        x = ppl.sample("x", dist.Normal(x_prev, 1))
        ppl.sample("y", dist.Normal(x, 1), obs=y_t)
        return x, x

    last, _ = ppl.scan(step, 0.0, y)
    ppl.sample("z", dist.Normal(last, 1))


@ppl.model
def hard_constraint(y):
    def step(x_prev, y_t):
        x = ppl.sample("x", dist.Normal(x_prev, 1))
        ppl.sample("y", dist.Normal(x, 1), obs=y_t)
        ppl.factor("bound", jnp.where(y_t > 100, -jnp.inf, 0.0))  # y_t > 100 is impossible
        return x, x

    ppl.scan(step, 0.0, y)


@ppl.model
def no_pair(y):
    def step(x_prev, y_t):
        x = ppl.sample("x", dist.Normal(x_prev, 1))
        ppl.sample("y", dist.Normal(x, 1), obs=y_t)
        return x  # not (x, output)

    ppl.scan(step, 0.0, y)


@ppl.model
def growing_carry(y):
    def step(x_prev, y_t):
        x = ppl.sample("x", dist.Normal(jnp.zeros(2) + x_prev, 1).to_event(1))
        ppl.sample("y", dist.Normal(x.sum(), 1), obs=y_t)
        return x, None

    ppl.scan(step, 0.0, y)


def test_bad_models_and_data():
    y = jnp.zeros(5)
    pf = ppl.smc.ParticleFilter(num_particles=10)
    # the observed-data checks of every method: shapes and non-finite values
    with pytest.raises(DataError, match=r"'y' has data of shape \(5, 3\).*shape \(5,\)"):
        ppl.infer(known(jnp.zeros((5, 3))), method=pf, num_chains=1)
    with pytest.raises(DataError, match=r"'y' has 1 non-finite value.*obs_mask="):
        ppl.infer(known(y.at[2].set(jnp.nan)), method=pf, num_chains=1)
    # misuse of ppl.scan, named with the step function
    with pytest.raises(ModelError, match=r"step function 'step' must return a pair.*x, None"):
        ppl.infer(no_pair(y), method=pf, num_chains=1)
    with pytest.raises(ModelError, match=r"'step' returns a carry shaped \(2,\).*shaped \(\)"):
        ppl.infer(growing_carry(y), method=pf, num_chains=1)
    with pytest.raises(ModelError, match=r"proposal samples site 'x' with shape \(2,\)"):
        wide = lambda c, x: ppl.sample("x", dist.Normal(jnp.zeros(2), 1).to_event(1))  # noqa: E731
        ppl.infer(known(y), method=ppl.smc.ParticleFilter(proposal=wide), num_chains=1)
    with pytest.raises(ModelError, match=r"ppl\.scan\(step, init, xs\)"):
        ppl.infer(no_scan(y), method=pf, num_chains=1)
    with pytest.raises(DataError, match=r"different time lengths.*5.*4"):
        ppl.infer(two_inputs(y, jnp.zeros(4)), method=pf, num_chains=1)
    with pytest.raises(ModelError, match=r"\['z'\] come after the ppl.scan"):
        ppl.infer(site_after_loop(y), method=pf, num_chains=1)
    with pytest.raises(ModelError, match=r"proposal must sample exactly.*\['x'\]"):
        wrong = ppl.smc.ParticleFilter(proposal=lambda c, x: ppl.sample("w", dist.Normal(0, 1)))
        ppl.infer(known(y), method=wrong, num_chains=1)


@ppl.model
def nan_region(y):
    """The observation density is NaN wherever the state is above 1."""

    def step(x_prev, y_t):
        x = ppl.sample("x", dist.Normal(0.5 * x_prev, 1))
        ppl.sample("y", dist.Normal(x, jnp.where(x > 1, jnp.nan, 1.0)), obs=y_t)
        return x, None

    ppl.scan(step, 0.0, y)


def test_nan_weights_are_counted_and_warned():
    pf = ppl.smc.ParticleFilter(num_particles=50)
    with pytest.warns(ppl.SamplingWarning, match=r"particle weight\(s\) were NaN"):
        post = ppl.infer(nan_region(jnp.zeros(5)), method=pf, num_samples=5, num_chains=1)
    # P(x > 1) is about 1/6 at each step: some of the 250 particle-steps, not all
    assert 0 < post.diagnostics["nan_weights"][0] < 150
    assert np.isfinite(post.log_evidence)


def test_degenerate_weights_name_the_step():
    y = jnp.zeros(10).at[7].set(1000.0)
    pf = ppl.smc.ParticleFilter(num_particles=50)
    with pytest.raises(InferenceError, match="degenerate weights at time step 7"):
        ppl.infer(hard_constraint(y), method=pf, num_samples=5, num_chains=2)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"num_particles": 1}, "num_particles=1 must be an integer >= 2"),
        ({"resample_threshold": 1.5}, r"resample_threshold=1.5 must be a number in \[0, 1\]"),
        ({"resampling": "best"}, "unknown resampling scheme 'best'"),
        ({"proposal": 3}, "proposal=3 must be a function"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(OptionError, match=match):
        ppl.smc.ParticleFilter(**options)


def test_registered_as_pf():
    post = ppl.infer(known(Y[:5]), method="pf", num_samples=3, num_chains=1, progress=False)
    assert post.samples["x"].shape == (1, 3, 5) and np.isfinite(post.log_evidence)
    assert jax.tree.leaves(post.diagnostics["filtering_mean"])


@ppl.model
def poisson_counts(y):
    """A count-valued latent state (JAX draws Poisson variates from threefry keys only)."""

    def step(n_prev, y_t):
        n = ppl.sample("n", dist.Poisson(0.5 * n_prev + 2.0)).astype(jnp.float32)
        ppl.sample("y", dist.Normal(n, 1.0), obs=y_t)
        return n, n

    ppl.scan(step, jnp.zeros(()), y)


def test_non_reparameterised_transitions_get_threefry_keys():
    # the filter's per-step keys are written-out threefry keys (same bits, no hash loop on
    # CPU); samplers that are not reparameterised get the equal threefry key back
    y = jnp.array([3.0, 4.0, 5.0, 4.0, 6.0])
    post = ppl.infer(
        poisson_counts(y), method=ppl.smc.ParticleFilter(num_particles=64), num_samples=10,
        num_chains=1, seed=0, progress=False,
    )  # fmt: skip
    assert np.isfinite(post.log_evidence)
    assert post.samples["n"].shape == (1, 10, 5)


def test_collapse_level_is_relative_for_few_particles_and_capped_for_many():
    from ppl.smc.particle_filter import _collapse_warnings

    assert _collapse_warnings(np.array([[1.0, 80.0]]), 100)  # one particle holds it all
    assert _collapse_warnings(np.array([[9.0, 800.0]]), 1000)  # under 1%
    assert not _collapse_warnings(np.array([[79.0, 5000.0]]), 10_000)  # dozens: no collapse
