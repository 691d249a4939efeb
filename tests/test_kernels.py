"""Correctness of the MALA, HMC, elliptical slice and discrete Gibbs kernels.

Continuous kernels are compared with exact Gaussian posteriors (conjugate
regression, latent-Gaussian regression, a hierarchical GP and a mixture by
quadrature). Tolerances are NUM_SIGMAS Monte Carlo standard errors, each from the
run's own effective sample size: a correct sampler fails one such check with
probability about 6e-5, so the ~100 checks here all pass on a fresh seed with
probability > 99%, while a wrong acceptance ratio or conditional misses by more.

Discrete kernels are compared with posteriors enumerated by brute force, with a
Pearson chi-square test on draws that are independent by construction (the last
state of each of thousands of independent chains, each run long past mixing).
"""

import itertools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.hmc_util import IntegratorState, euclidean_kinetic_energy, velocity_verlet
from scipy import stats as scipy_stats
from scipy.special import logsumexp

import ppl
from ppl import dist
from ppl.core import draws
from ppl.errors import ModelError, OptionError
from ppl.infer.registry import method_names
from ppl.infer.summary import ess_mean
from ppl.mcmc import (
    HMC,
    MALA,
    NUTS,
    DiscreteGibbs,
    EllipticalSlice,
    blocks,
    hmc_proposal,
    mala_proposal,
    rwmh_proposal,
)
from ppl.mcmc.kernel import times

NUM_SIGMAS = 4.0
#: A chi-square test fails a correct sampler with this probability.
CHI2_LEVEL = 1e-4


def quiet_infer(model, method, **kw):
    """ppl.infer without the convergence warnings a short test run may trigger."""
    options = dict(num_warmup=500, num_samples=1000, num_chains=4, seed=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ppl.infer(model, method, **{**options, **kw})


# ----- Monte Carlo error of moments ------------------------------------------------------


def mcse_mean(x):
    """MC standard error of the mean of draws (chains, draws): sd / sqrt(ESS)."""
    return x.std() / np.sqrt(ess_mean(x))


def mcse_moment(x, y):
    """MC standard error of the sample covariance of x and y: the sd of the product of
    centred draws over the square root of that product's own ESS."""
    prod = (x - x.mean()) * (y - y.mean())
    return prod.std() / np.sqrt(ess_mean(prod))


def assert_moments(draws, mean, cov=None):
    """Mean (and covariance) of draws (chains, draws, d) match the exact ones."""
    draws = np.asarray(draws, np.float64)
    for i in range(draws.shape[-1]):
        xi = draws[..., i]
        tol = NUM_SIGMAS * mcse_mean(xi)
        assert abs(xi.mean() - mean[i]) < tol, ("mean", i, xi.mean(), mean[i], tol)
        for j in range(i + 1 if cov is not None else 0):
            xj = draws[..., j]
            got = np.mean((xi - xi.mean()) * (xj - xj.mean()))
            tol = NUM_SIGMAS * mcse_moment(xi, xj)
            assert abs(got - cov[i, j]) < tol, ("cov", (i, j), got, cov[i, j], tol)


# ----- MALA and HMC on the conjugate regression (tests/conftest.py) --------------------

GRADIENT_METHODS = {
    "mala": "mala",
    "mala-dense": MALA(dense_mass=True),
    "hmc": "hmc",  # 16 steps, jittered
    "hmc-fixed": HMC(num_steps=8, jitter=False),
    "hmc-path-jitter": HMC(path_length=2.0, jitter=True),
}


@pytest.fixture(scope="module")
def gradient_run(regression):
    """name -> Posterior of that method on the regression, each run once per module."""
    runs = {}

    def run(name):
        if name not in runs:
            runs[name] = quiet_infer(regression.model(), GRADIENT_METHODS[name], seed=3)
        return runs[name]

    return run


@pytest.mark.parametrize("name", list(GRADIENT_METHODS))
def test_gradient_kernels_recover_conjugate_regression(regression, gradient_run, name):
    post = gradient_run(name)
    assert post.samples["w"].shape == (4, 1000, 3)
    assert_moments(post.samples["w"], regression.mean, regression.cov)


@pytest.mark.parametrize("name", list(GRADIENT_METHODS))
def test_gradient_kernels_report_their_work(gradient_run, name):
    post = gradient_run(name)
    stats, diag = post.sample_stats, post.diagnostics
    steps = stats["num_steps"] if name.startswith("hmc") else np.ones((4, 1000))
    np.testing.assert_array_equal(stats["num_grad_evals"], steps)
    if name.startswith("hmc"):
        assert not stats["diverging"].any()
        assert "divergences" in diag
    # MALA aims at 0.574, HMC at 0.8; after warmup each chain lands near (HMC above:
    # on a Gaussian its acceptance stays high until the step nears the stability limit).
    low = 0.4 if name.startswith("mala") else 0.7
    assert np.all(diag["accept_rate"] > low), diag["accept_rate"]


def test_hmc_takes_a_fixed_number_of_steps(gradient_run):
    np.testing.assert_array_equal(gradient_run("hmc-fixed").sample_stats["num_steps"], 8)


def test_hmc_jitter_draws_step_counts_around_the_nominal_length(gradient_run):
    # the default, 16 steps jittered: uniform on {1, ..., 31}, mean 16, sd ≈ 8.9
    steps = gradient_run("hmc").sample_stats["num_steps"]
    assert steps.min() == 1 and steps.max() == 31
    assert abs(steps.mean() - 16) < NUM_SIGMAS * math.sqrt((31**2 - 1) / 12 / steps.size)
    # path_length=2.0: L = ceil(2.0 / step size) per chain, steps in {1, ..., 2L - 1}
    post = gradient_run("hmc-path-jitter")
    steps = post.sample_stats["num_steps"]
    nominal = np.ceil(2.0 / post.diagnostics["step_size"])[:, None]
    assert np.all((steps >= 1) & (steps <= 2 * nominal - 1))
    assert np.all(steps.max(axis=1) >= nominal[:, 0])  # the range reaches past L


@pytest.mark.parametrize("dense", [True, False], ids=["dense", "diag"])
def test_mala_acceptance_is_the_one_step_hamiltonian_energy_error(dense):
    """MALA with preconditioner A is HMC with one leapfrog step and inverse mass A, so
    its MH ratio (written with the two proposal densities) must equal exp(-ΔH) from
    NumPyro's integrator, on a non-Gaussian target and for A far from the identity."""

    def potential(z):
        return 0.5 * jnp.sum(z**2) + 0.25 * jnp.sum(z**4) + z[0] * z[1]

    inverse_mm = jnp.array([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 2.0]])
    if not dense:
        inverse_mm = jnp.diag(inverse_mm)
    mass = jnp.linalg.inv(inverse_mm) if dense else 1 / inverse_mm
    mass_sqrt = jnp.linalg.cholesky(mass) if dense else jnp.sqrt(mass)  # S Sᵀ = M
    z = jnp.array([0.5, -1.0, 0.3])
    pe, grad = jax.value_and_grad(potential)(z)
    point = IntegratorState(z, None, pe, grad)
    _, vv_update = velocity_verlet(potential, euclidean_kinetic_energy)
    vv_update, propose = jax.jit(vv_update), jax.jit(mala_proposal(potential))
    probs = []
    for seed in range(8):
        key = jax.random.key(seed)
        step_size = 0.3 + 0.15 * seed
        new, info = propose(key, point, step_size, inverse_mm, mass_sqrt)
        r = times(mass_sqrt, draws.normal_and_uniform(key, 3)[0])  # MALA's momentum
        end = vv_update(step_size, inverse_mm, IntegratorState(z, r, pe, grad))
        delta = (end.potential_energy + euclidean_kinetic_energy(inverse_mm, end.r)) - (
            pe + euclidean_kinetic_energy(inverse_mm, r)
        )
        np.testing.assert_allclose(info.accept_prob, min(1.0, np.exp(-delta)), rtol=2e-4)
        moved = end.z if info.accepted else z
        np.testing.assert_allclose(new.z, moved, rtol=1e-5)
        probs.append(float(info.accept_prob))
    assert min(probs) < 0.5 < max(probs), probs  # the check covered real MH corrections


def test_rwmh_dense_move_has_covariance_step_squared_times_inverse_mass():
    """On a flat target every proposal is accepted, so the move is z_new - z: a fixed
    linear map B of the draw's normals, which must satisfy B Bᵀ = inverse mass matrix."""
    inverse_mm = jnp.array([[1.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 2.0]])
    mass_sqrt = jnp.linalg.cholesky(jnp.linalg.inv(inverse_mm))  # S Sᵀ = M, as the adapter's
    point = IntegratorState(jnp.zeros(3), None, jnp.zeros(()), None)
    propose = jax.jit(rwmh_proposal(lambda z: jnp.zeros(())))
    moves, normals = [], []
    for seed in range(3):  # three draws: enough to pin the 3 x 3 map down
        key = jax.random.key(seed)
        new, info = propose(key, point, 0.5, inverse_mm, mass_sqrt)
        assert info.accepted
        moves.append(new.z / 0.5)
        normals.append(draws.normal_and_uniform(key, 3)[0])
    move_map = np.linalg.solve(np.array(normals), np.array(moves)).T  # moves = B normals
    np.testing.assert_allclose(move_map @ move_map.T, inverse_mm, atol=1e-5)


def test_hmc_flags_divergence_and_stays_put():
    def potential(z):
        return 1e6 * jnp.sum(z**2)

    z = jnp.array([1.0, -1.0])
    pe, grad = jax.value_and_grad(potential)(z)
    propose = hmc_proposal(potential, num_steps=4)
    new, info = propose(jax.random.key(0), IntegratorState(z, None, pe, grad), 1.0, jnp.ones(2),
                        jnp.ones(2))  # fmt: skip
    assert info.diverging and info.accept_prob == 0.0 and int(info.num_grad_evals) == 4
    np.testing.assert_array_equal(new.z, z)


# ----- elliptical slice sampling ------------------------------------------------------------

GP_N = 8
GP_X = np.linspace(0.0, 3.0, GP_N)
GP_NOISE = 0.5
GP_Y = (np.sin(2 * GP_X) + GP_NOISE * np.random.default_rng(0).normal(size=GP_N)).astype(np.float32)
GP_K = np.exp(-np.abs(GP_X[:, None] - GP_X[None]))  # Ornstein-Uhlenbeck covariance


@ppl.model
def latent_gp(y=None):
    """f ~ N(0, K), y ~ N(f, noise²): posterior N((K⁻¹ + I/noise²)⁻¹ y/noise², (K⁻¹ + I/noise²)⁻¹)."""
    f = ppl.sample("f", dist.MultivariateNormal(jnp.zeros(GP_N), jnp.asarray(GP_K, jnp.float32)))
    with ppl.plate("data", GP_N):
        ppl.sample("y", dist.Normal(f, GP_NOISE), obs=y)


@ppl.model
def scaled_gp(y=None):
    """f_i ~ N(0, exp(log_scale)²) iid in a plate (an expanded Normal), log_scale ~ N(0, 1)."""
    log_scale = ppl.sample("log_scale", dist.Normal(0.0, 1.0))
    with ppl.plate("data", GP_N):
        f = ppl.sample("f", dist.Normal(0.0, jnp.exp(log_scale)))
        ppl.sample("y", dist.Normal(f, GP_NOISE), obs=y)


def gp_posterior(scale):
    """Exact posterior mean and covariance of f given y and the prior scale."""
    k = scale**2 * GP_K
    cov = np.linalg.inv(np.linalg.inv(k) + np.eye(GP_N) / GP_NOISE**2)
    return cov @ GP_Y.astype(np.float64) / GP_NOISE**2, cov


def scaled_gp_posterior():
    """E[log_scale | y] and E[f | y] by quadrature over log_scale (f integrated exactly:
    y | log_scale ~ N(0, exp(log_scale)² I + noise² I))."""
    grid = np.linspace(-6.0, 4.0, 2001)
    y = GP_Y.astype(np.float64)
    var = np.exp(2 * grid)[:, None] + GP_NOISE**2
    log_w = scipy_stats.norm.logpdf(grid) + scipy_stats.norm.logpdf(y, 0, np.sqrt(var)).sum(1)
    w = np.exp(log_w - logsumexp(log_w))
    shrink = np.exp(2 * grid) / (np.exp(2 * grid) + GP_NOISE**2)  # E[f | y, scale] = shrink y
    return float(w @ grid), float(w @ shrink) * y


@pytest.fixture(scope="module")
def gp_ess():
    return quiet_infer(latent_gp(GP_Y), EllipticalSlice(), num_warmup=100, seed=4)


def test_elliptical_slice_recovers_latent_gaussian_posterior(gp_ess):
    mean, cov = gp_posterior(1.0)
    assert_moments(gp_ess.samples["f"], mean, cov)
    stats = gp_ess.sample_stats
    assert np.all(stats["num_evals"] >= 1) and np.all(stats["accept_prob"] == 1.0)
    np.testing.assert_array_equal(gp_ess.diagnostics["grad_evals"], 0)


@pytest.fixture(scope="module")
def gp_blocks():
    method = blocks({"f": EllipticalSlice(), "log_scale": NUTS()})
    # f and its prior scale are strongly coupled, so Gibbs between them mixes slowly:
    # more draws than elsewhere, so that the ESS (and the MC error from it) is reliable.
    return quiet_infer(scaled_gp(GP_Y), method, num_samples=2000, seed=5)


def test_elliptical_slice_in_blocks_with_a_hyperparameter(gp_blocks):
    log_scale_mean, f_mean = scaled_gp_posterior()
    draws = np.asarray(gp_blocks.samples["log_scale"], np.float64)
    assert abs(draws.mean() - log_scale_mean) < NUM_SIGMAS * mcse_mean(draws)
    assert_moments(gp_blocks.samples["f"], f_mean)
    assert "0.num_evals" in gp_blocks.sample_stats  # the ESS part of the blocks


# ----- discrete Gibbs: exact checks against enumeration ------------------------------------


@ppl.model
def coupled(y=1.3):
    """Three discrete sites whose values all meet in one observation: the elements of z
    are dependent given y, so only the sequential update is valid."""
    a = ppl.sample("a", dist.Bernoulli(0.3))
    b = ppl.sample("b", dist.Categorical(jnp.array([0.2, 0.5, 0.3])))
    with ppl.plate("i", 3):
        z = ppl.sample("z", dist.Bernoulli(jax.nn.sigmoid(a - 0.5)))
    ppl.sample("y", dist.Normal(b + 0.7 * z.sum() - a, 0.8), obs=y)


def coupled_posterior(noise=0.8):
    """States (a, b, z_0, z_1, z_2) and their exact posterior probabilities."""
    states, log_p = [], []
    for a, b, *z in itertools.product(range(2), range(3), *[range(2)] * 3):
        pz = 1 / (1 + np.exp(0.5 - a))
        lp = np.log([0.7, 0.3][a]) + np.log([0.2, 0.5, 0.3][b])
        lp += sum(np.log(pz if zi else 1 - pz) for zi in z)
        lp += scipy_stats.norm.logpdf(1.3, b + 0.7 * sum(z) - a, noise)
        states.append((a, b, *z))
        log_p.append(lp)
    return states, np.exp(np.array(log_p) - logsumexp(log_p))


MIX_PI = np.array([0.3, 0.3, 0.4])
MIX_MEANS = np.array([-1.0, 0.5, 2.0])
MIX_Y = np.array([[-0.8, 0.2, 1.9, 0.9], [-1.5, 0.7, 2.4, 0.1]], np.float32)


@ppl.model
def assignments(y):
    """z_j in a data plate, observed twice each (a nested plate), plus a global shift c:
    the z_j are conditionally independent given c, so the parallel update is valid."""
    c = ppl.sample("c", dist.Bernoulli(0.5))
    with ppl.plate("data", 4, dim=-1):
        z = ppl.sample("z", dist.Categorical(jnp.asarray(MIX_PI, jnp.float32)))
        with ppl.plate("rep", 2, dim=-2):
            ppl.sample("y", dist.Normal(jnp.asarray(MIX_MEANS, jnp.float32)[z] + c, 1.0), obs=y)


def assignments_posterior():
    states, log_p = [], []
    for c, *z in itertools.product(range(2), *[range(3)] * 4):
        z = np.array(z)
        lp = np.log(0.5) + np.log(MIX_PI[z]).sum()
        lp += scipy_stats.norm.logpdf(MIX_Y, MIX_MEANS[z] + c, 1.0).sum()
        states.append((c, *z))
        log_p.append(lp)
    return states, np.exp(np.array(log_p) - logsumexp(log_p))


def chi_square_p_value(observed_states, states, probs):
    """Pearson chi-square p-value of iid draws against exact state probabilities; states
    with expected count < 5 are pooled into one cell (the test's usual validity rule)."""
    index = {s: i for i, s in enumerate(states)}
    counts = np.bincount([index[s] for s in observed_states], minlength=len(states))
    expected = probs * len(observed_states)
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    obs, exp = (obs, exp) if exp[-1] > 0 else (obs[:-1], exp[:-1])
    return scipy_stats.chisquare(obs, exp).pvalue


# Independent chains, each 40 sweeps long (the chains forget their prior starts within
# a few sweeps on these small targets), last state of each: iid draws from the target.
NUM_DISCRETE_CHAINS = 4000


def last_states(post, names):
    parts = [np.asarray(post.samples[n])[:, -1].reshape(NUM_DISCRETE_CHAINS, -1) for n in names]
    return [tuple(int(v) for v in row) for row in np.concatenate(parts, axis=1)]


@pytest.fixture(scope="module")
def coupled_gibbs():
    return quiet_infer(
        coupled(), "gibbs", num_warmup=30, num_samples=10, num_chains=NUM_DISCRETE_CHAINS
    )


def test_gibbs_sequential_matches_enumerated_posterior(coupled_gibbs):
    states, probs = coupled_posterior()
    observed = last_states(coupled_gibbs, ["a", "b", "z"])
    assert chi_square_p_value(observed, states, probs) > CHI2_LEVEL
    # 2 + 3 + 3 x 2 density evaluations per sweep, no gradients, nothing rejected
    np.testing.assert_array_equal(coupled_gibbs.sample_stats["num_evals"], 11)
    np.testing.assert_array_equal(coupled_gibbs.diagnostics["grad_evals"], 0)


def test_chi_square_check_detects_a_wrong_sampler(coupled_gibbs):
    """The check above has power: the same draws fail against a nearby wrong posterior
    (the observation's noise 0.8 mistaken for 1.0)."""
    states, probs = coupled_posterior(noise=1.0)
    observed = last_states(coupled_gibbs, ["a", "b", "z"])
    assert chi_square_p_value(observed, states, probs) < CHI2_LEVEL


@pytest.fixture(scope="module", params=[False, True], ids=["sequential", "parallel"])
def assignments_gibbs(request):
    method = DiscreteGibbs(parallel=request.param)
    post = quiet_infer(
        assignments(jnp.asarray(MIX_Y)), method, num_warmup=30, num_samples=10,
        num_chains=NUM_DISCRETE_CHAINS,
    )  # fmt: skip
    return request.param, post


def test_gibbs_on_plate_assignments_matches_enumerated_posterior(assignments_gibbs):
    parallel, post = assignments_gibbs
    states, probs = assignments_posterior()
    observed = last_states(post, ["c", "z"])
    assert chi_square_p_value(observed, states, probs) > CHI2_LEVEL
    # parallel: one model run per support value and one at the new state, per site
    evals = (2 + 1) + (3 + 1) if parallel else 2 + 4 * 3
    np.testing.assert_array_equal(post.sample_stats["num_evals"], evals)


# ----- Gibbs within NUTS on a Gaussian mixture ---------------------------------------------

GM_Y = np.concatenate(
    [np.random.default_rng(1).normal(-2.5, 1.0, 20), np.random.default_rng(2).normal(2.5, 1.0, 20)]
).astype(np.float32)
GM_PRIOR_SD = 3.0


@ppl.model
def gaussian_mixture(y):
    """Two components, equal weights, unit sd. The means are ordered (mu_0 < mu_1, each
    N(0, 3²) a priori), so the posterior has one mode instead of two mirror images."""
    mu = ppl.sample("mu", dist.ImproperUniform(dist.constraints.ordered_vector, (), (2,)))
    ppl.factor("mu_prior", dist.Normal(0.0, GM_PRIOR_SD).log_prob(mu).sum())
    with ppl.plate("data", y.shape[0]):
        z = ppl.sample("z", dist.Categorical(jnp.array([0.5, 0.5])))
        ppl.sample("y", dist.Normal(mu[z], 1.0), obs=y)


def mixture_posterior():
    """Mean and covariance of mu | y with z summed out, by quadrature on a grid over
    mu_0 < mu_1 (spacing 0.025, a tenth of the posterior sd; the box spans more than
    8 sd around the mode, the switched labelling is cut off by the ordering)."""
    m0, m1 = np.meshgrid(np.linspace(-4.5, -0.5, 161), np.linspace(0.5, 4.5, 161), indexing="ij")
    y = GM_Y.astype(np.float64)[:, None, None]
    log_lik = np.logaddexp(
        scipy_stats.norm.logpdf(y, m0, 1.0), scipy_stats.norm.logpdf(y, m1, 1.0)
    ).sum(0)
    log_p = log_lik + scipy_stats.norm.logpdf(m0, 0, GM_PRIOR_SD)
    log_p += scipy_stats.norm.logpdf(m1, 0, GM_PRIOR_SD)
    log_p = np.where(m0 < m1, log_p, -np.inf)
    w = np.exp(log_p - logsumexp(log_p))
    mean = np.array([(w * m0).sum(), (w * m1).sum()])
    d0, d1 = m0 - mean[0], m1 - mean[1]
    cov = np.array([[(w * d0 * d0).sum(), (w * d0 * d1).sum()], [0.0, (w * d1 * d1).sum()]])
    return mean, cov + np.triu(cov, 1).T


@pytest.fixture(scope="module")
def mixture_gibbs_nuts():
    method = blocks({"z": DiscreteGibbs(parallel=True), "mu": NUTS()})
    return quiet_infer(gaussian_mixture(jnp.asarray(GM_Y)), method, num_warmup=300, seed=6)


def test_gibbs_within_nuts_recovers_mixture_means(mixture_gibbs_nuts):
    post = mixture_gibbs_nuts
    mu = np.asarray(post.samples["mu"], np.float64)
    # every chain in the one mode (so the ESS-based tolerance below is meaningful)
    assert np.all(mu[:, :, 0].mean(axis=1) < -1.5) and np.all(mu[:, :, 1].mean(axis=1) > 1.5)
    assert_moments(mu, *mixture_posterior())
    z = np.asarray(post.samples["z"])
    assert z.shape == (4, 1000, 40) and set(np.unique(z)) <= {0, 1}
    # the points drawn far on one side belong to that side's component almost surely
    assert z[..., np.argmin(GM_Y)].mean() < 0.01 and z[..., np.argmax(GM_Y)].mean() > 0.99


# ----- bad input -----------------------------------------------------------------------------


def test_new_kernels_are_registered():
    names = method_names()
    assert {"mala", "hmc", "gibbs"} <= set(names)
    assert "ess" not in names  # "ess" would read as effective sample size
    assert DiscreteGibbs.handles_discrete and not HMC.handles_discrete


def test_gibbs_refuses_continuous_sites_and_suggests_blocks():
    with pytest.raises(ModelError, match=r"'mu'\].*continuous.*blocks\(\{'z': .*DiscreteGibbs"):
        ppl.infer(gaussian_mixture(jnp.asarray(GM_Y)), "gibbs", progress=False)
    with pytest.raises(ModelError, match="DiscreteGibbs samples discrete sites only"):
        ppl.infer(
            gaussian_mixture(jnp.asarray(GM_Y)),
            blocks({("z", "mu"): DiscreteGibbs()}),
            progress=False,
        )


@ppl.model
def poisson_latent():
    n = ppl.sample("n", dist.Poisson(3.0))
    ppl.sample("y", dist.Normal(n, 1.0), obs=2.0)


@ppl.model
def unplated_vector():
    z = ppl.sample("z", dist.Bernoulli(0.5).expand([3]))  # a batch dimension, but no plate
    ppl.sample("y", dist.Normal(z.sum(), 1.0), obs=2.0)


def test_gibbs_refuses_sites_it_cannot_enumerate_or_split():
    with pytest.raises(ModelError, match=r"site 'n' \(Poisson.*no finite enumerable support"):
        ppl.infer(poisson_latent(), "gibbs", progress=False)
    with pytest.raises(ModelError, match=r"parallel=True.*site 'z'.*plate"):
        ppl.infer(unplated_vector(), DiscreteGibbs(parallel=True), progress=False)


def test_gradient_kernels_refuse_discrete_sites_and_suggest_gibbs():
    for method in ("mala", "hmc"):
        with pytest.raises(ModelError, match=r"discrete.*gibbs"):
            ppl.infer(coupled(), method, progress=False)


@ppl.model
def gp_with_noise_scale(y=None):
    sigma = ppl.sample("sigma", dist.HalfNormal(1.0))
    f = ppl.sample("f", dist.Normal(0.0, 1.0).expand([GP_N]).to_event(1))
    ppl.sample("y", dist.Normal(f, sigma).to_event(1), obs=y)


def test_elliptical_slice_refuses_non_gaussian_sites():
    with pytest.raises(ModelError, match=r"site 'sigma' has HalfNormal.*blocks\(\{'f'"):
        ppl.infer(gp_with_noise_scale(GP_Y), EllipticalSlice(), progress=False)
    with pytest.raises(ModelError, match=r"EllipticalSlice needs a Gaussian prior.*'a' has Bern"):
        ppl.infer(coupled(), EllipticalSlice(), progress=False)


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: HMC(num_steps=0), "num_steps"),
        (lambda: HMC(num_steps=2.5), "num_steps"),
        (lambda: HMC(path_length=0.0), "path_length"),
        (lambda: HMC(path_length=float("inf")), "path_length"),
        (lambda: HMC(num_steps=4, path_length=1.0), "not both"),
        (lambda: HMC(jitter=1), "jitter"),
        (lambda: HMC(max_steps=0), "max_steps"),
        (lambda: HMC(target_accept=1.0), "target_accept"),
        (lambda: MALA(target_accept=0.0), "target_accept"),
        (lambda: MALA(step_size=-1.0), "step_size"),
        (lambda: DiscreteGibbs(parallel="yes"), "parallel"),
        (lambda: EllipticalSlice(init="nowhere"), "init"),
    ],
)
def test_option_validation(make, field):
    with pytest.raises(OptionError, match=field):
        make()
