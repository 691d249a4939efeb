"""Stochastic-gradient MCMC: minibatch estimates, samplers against exact posteriors, errors.

Exactness checks use Gaussian targets, where the answer is known in closed form:
Bayesian linear regression with known noise (N = 10,000, minibatches of 100) and
a correlated bivariate Gaussian. Tolerances are 4 Monte Carlo standard errors
(a correct sampler fails one check with probability ~6e-5) plus the step-size
bias where it is not negligible, computed and stated next to each check.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.errors import InferenceError, ModelError, OptionError
from ppl.infer.summary import ess_mean
from ppl.sgmcmc import PSGLD, SGHMC, SGLD, SGNHT, Constant, Cyclical, Polynomial
from ppl.sgmcmc.minibatch import Target, estimate, full_log_density, subsampled_plates

pytestmark = pytest.mark.filterwarnings("ignore::ppl.SamplingWarning")

NUM_SIGMAS = 4.0
N, D, BATCH = 10_000, 3, 100
PRIOR_SD = 2.0


@ppl.model
def regression(x, y=None, batch=BATCH):
    """y ~ Normal(x @ w, 1), w ~ Normal(0, 2² I); minibatches of `batch` of the N points."""
    w = ppl.sample("w", dist.Normal(0.0, PRIOR_SD).expand([x.shape[1]]).to_event(1))
    with ppl.plate("data", x.shape[0], subsample_size=batch) as idx:
        ppl.sample("y", dist.Normal(x[idx] @ w, 1.0), obs=y[idx])


class Data:
    """Well-conditioned features, so the posterior precision's eigenvalues are all ≈ N."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(N, D)).astype(np.float32)
        self.y = (self.x @ np.array([1.0, -2.0, 0.5]) + rng.normal(size=N)).astype(np.float32)
        x, y = self.x.astype(np.float64), self.y.astype(np.float64)
        self.precision = x.T @ x + np.eye(D) / PRIOR_SD**2
        self.cov = np.linalg.inv(self.precision)
        self.mean = self.cov @ x.T @ y

    def log_joint(self, w):
        """Full-data log joint, by hand (float64)."""
        x, y = self.x.astype(np.float64), self.y.astype(np.float64)
        norm = -0.5 * np.log(2 * np.pi)
        prior = np.sum(norm - np.log(PRIOR_SD) - 0.5 * (w / PRIOR_SD) ** 2)
        return prior + np.sum(norm - 0.5 * (y - x @ w) ** 2)


@pytest.fixture(scope="module")
def data():
    return Data()


@pytest.fixture(scope="module")
def density(data):
    return regression(jnp.asarray(data.x), jnp.asarray(data.y)).log_density()


# ----- minibatch log densities ------------------------------------------------------


def test_subsampled_plate_is_found_and_full_data_density_is_exact(data, density):
    assert subsampled_plates(density) == {"data": (N, BATCH)}
    w = np.array([0.9, -1.8, 0.4])
    full = float(full_log_density(density)(jnp.asarray(w, jnp.float32)))
    # float32 sum of 10,000 terms of size ~1: relative rounding ~1e-6
    np.testing.assert_allclose(full, data.log_joint(w), rtol=1e-5)


def _estimates(density, z, num_keys, draw):
    keys = jax.random.split(jax.random.key(1), num_keys)
    return jax.jit(jax.vmap(draw, (None, 0)))(z, keys)


@pytest.mark.parametrize("scheme", ["with replacement", "without replacement", "numpyro plate"])
def test_minibatch_log_density_and_gradient_are_unbiased(data, density, scheme):
    """The mean of 4,000 minibatch estimates (independent keys) is within 4 standard
    errors (sample sd / √4000) of the full-data value, for the log joint and each
    gradient coordinate."""
    z = jnp.asarray([0.9, -1.8, 0.4], jnp.float32)
    if scheme == "numpyro plate":  # LogDensity's own draw (NumPyro's shuffle)
        draw = lambda z, key: jax.value_and_grad(density)(z, key)  # noqa: E731
    else:
        replace = scheme == "with replacement"
        draw = lambda z, key: estimate(Target(density), z, key, replace)  # noqa: E731
    values, grads = map(np.asarray, _estimates(density, z, 4000, draw))
    values, grads = values.astype(np.float64), grads.astype(np.float64)
    full_value, full_grad = jax.value_and_grad(full_log_density(density))(z)
    se = values.std() / np.sqrt(len(values))
    assert abs(values.mean() - float(full_value)) < NUM_SIGMAS * se, (values.mean(), full_value)
    se = grads.std(0) / np.sqrt(len(grads))
    assert np.all(np.abs(grads.mean(0) - np.asarray(full_grad)) < NUM_SIGMAS * se)
    assert values.std() > 0  # the estimates do vary: a real minibatch was drawn


def test_control_variate_gradient_is_unbiased_and_far_less_noisy(data, density):
    """Centred at the posterior mean, the control-variate estimator (Baker et al.) keeps
    the full-data gradient's mean at a nearby point and cuts its sd by > 10x."""
    center = jnp.asarray(data.mean, jnp.float32)
    center_grad = jax.grad(full_log_density(density))(center)
    z = center + 0.01  # one posterior sd away
    cv = Target(density, center, center_grad)
    plain = _estimates(density, z, 2000, lambda z, k: estimate(Target(density), z, k))[1]
    grads = np.asarray(_estimates(density, z, 2000, lambda z, k: estimate(cv, z, k))[1])
    full_grad = np.asarray(jax.grad(full_log_density(density))(z))
    se = grads.std(0) / np.sqrt(len(grads))
    assert np.all(np.abs(grads.mean(0) - full_grad) < NUM_SIGMAS * se + 1e-2)  # + float32
    assert np.all(grads.std(0) * 10 < np.asarray(plain).std(0))


# ----- SGLD on Bayesian linear regression -------------------------------------------


@pytest.fixture(scope="module")
def sgld_regression(data):
    """SGLD with control variates, step size h = 0.02 / λ_max (λ: eigenvalues of the
    posterior precision, all ≈ N here): 8 chains x 10,000 draws after 1,000 burn-in."""
    h = 0.02 / np.linalg.eigvalsh(data.precision).max()
    method = SGLD(step_size=float(h), control_variate=True, cv_steps=500, cv_learning_rate=0.05)
    post = ppl.infer(
        regression(data.x, data.y), method, num_samples=10_000, num_warmup=1000,
        num_chains=8, seed=0, progress=False,
    )  # fmt: skip
    return post, h


def test_sgld_reproduces_the_exact_regression_posterior(data, sgld_regression):
    """Mean and covariance of w against the conjugate posterior N(mean, cov).

    Bias: with the exact gradient, SGLD on a Gaussian with precision eigenvalue λ has
    stationary variance 1/(λ(1 − hλ/2)): with hλ ≤ 0.02, at most 1% too wide (computed
    below exactly and added to the tolerance). The control-variate gradient noise adds
    a relative ~h·Var(grad)/2 ≈ 1e-4 (Var(grad) ~ (N²/B)·|w − ŵ|² ~ 10²): negligible.
    MC error: 4 standard errors, from the ESS of each coordinate.
    """
    post, h = sgld_regression
    w = post.samples["w"].astype(np.float64)
    assert w.shape == (8, 10_000, D)
    lam = np.linalg.eigvalsh(data.precision)
    variance_bias = np.max(1 / (1 - h * lam / 2)) - 1
    assert variance_bias < 0.011
    sd = np.sqrt(np.diag(data.cov))
    ess = np.array([ess_mean(w[..., i]) for i in range(D)])
    assert ess.min() > 400  # enough for the covariance check below to mean something
    mcse = w.std((0, 1)) / np.sqrt(ess)
    np.testing.assert_array_less(np.abs(w.mean((0, 1)) - data.mean), NUM_SIGMAS * mcse)
    cov = np.cov(w.reshape(-1, D).T)
    # se of a sample covariance ≈ sd_i sd_j √((1 + ρ²)/ESS) (Gaussian; ρ ≈ 0 off the diagonal)
    ess_ij = np.minimum.outer(ess, ess)
    scale = np.outer(sd, sd) * np.sqrt((1 + np.eye(D)) / ess_ij)
    tolerance = NUM_SIGMAS * scale + variance_bias * np.abs(data.cov)
    np.testing.assert_array_less(np.abs(cov - data.cov), tolerance)


def test_sgld_posterior_diagnostics(sgld_regression):
    post, h = sgld_regression
    diag = post.diagnostics
    assert post.method == "sgld"
    np.testing.assert_array_equal(diag["steps"], 11_000)
    np.testing.assert_array_equal(diag["grad_evals"], 22_000)  # two gradients with CVs
    np.testing.assert_allclose(diag["step_size"], h, rtol=1e-6)
    assert post.sample_stats["lp"].shape == (8, 10_000)
    assert np.all(np.isfinite(post.sample_stats["lp"]))


def test_sgld_convergence_checks_can_be_turned_off(data):
    model, method = regression(data.x, data.y), SGLD(step_size=1e-4)
    settings = dict(num_samples=50, num_warmup=10, num_chains=2, seed=1, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 50 draws: low ESS, as expected
        checked = ppl.infer(model, method, **settings)
    unchecked = ppl.infer(model, method, convergence_checks=False, **settings)
    np.testing.assert_array_equal(unchecked.samples["w"], checked.samples["w"])
    assert "ess_bulk_min" in checked.diagnostics and checked.diagnostics["warnings"]
    assert "ess_bulk_min" not in unchecked.diagnostics and not unchecked.diagnostics["warnings"]


# ----- every sampler on a correlated Gaussian ---------------------------------------

RHO, MU = 0.7, np.array([1.0, -1.0])


@ppl.model
def correlated():
    """(x1, x2) ~ N(MU, [[1, RHO], [RHO, 1]]), written as x1 then x2 | x1."""
    x1 = ppl.sample("x1", dist.Normal(MU[0], 1.0))
    ppl.sample("x2", dist.Normal(MU[1] + RHO * (x1 - MU[0]), np.sqrt(1 - RHO**2)))


def _check_gaussian(post, variance_bias):
    draws = np.stack([post.samples["x1"], post.samples["x2"]], -1).astype(np.float64)
    for i in range(2):
        x, ess = draws[..., i], ess_mean(draws[..., i])
        assert abs(x.mean() - MU[i]) < NUM_SIGMAS * x.std() / np.sqrt(ess), (i, x.mean())
        # sd of a sample variance of a Gaussian ≈ var √(2/ESS)
        assert abs(x.var() - 1.0) < NUM_SIGMAS * np.sqrt(2 / ess) + variance_bias, (i, x.var())
    corr = np.corrcoef(draws[..., 0].ravel(), draws[..., 1].ravel())[0, 1]
    assert abs(corr - RHO) < 0.05 + variance_bias, corr


@pytest.mark.parametrize(
    "method, bias",
    [
        # the precision's eigenvalues are 1/(1 ± RHO) ≤ 3.33; SGLD's variance bias is
        # hλ/2/(1 − hλ/2) ≤ 0.035 at h = 0.02; the momentum samplers' (second order in h
        # for symplectic Euler) is below 0.01 at h = 0.05; PSGLD's preconditioner is ~1 here.
        (SGLD(step_size=0.02), 0.035),
        (PSGLD(step_size=0.02), 0.05),
        (SGHMC(step_size=0.05, friction=2.0), 0.02),
        (SGNHT(step_size=0.05, diffusion=2.0), 0.02),
    ],
    ids=["sgld", "psgld", "sghmc", "sgnht"],
)
def test_samplers_match_a_correlated_gaussian(method, bias):
    post = ppl.infer(
        correlated(), method, num_samples=10_000, num_warmup=1000, num_chains=4, seed=1,
        progress=False,
    )  # fmt: skip
    _check_gaussian(post, bias)


# ----- schedules, thinning, the infer() interface -----------------------------------


def test_schedules():
    t = jnp.arange(5000)
    np.testing.assert_allclose(Constant()(0.1, t), 0.1)
    poly = Polynomial(b=100.0, gamma=0.55)
    np.testing.assert_allclose(poly(0.1, 0), 0.1)
    np.testing.assert_allclose(poly(0.1, 100), 0.1 * 2**-0.55, rtol=1e-6)  # a(b+t)^-γ
    assert np.all(np.diff(np.asarray(poly(0.1, t))) < 0)
    cyc = np.asarray(Cyclical(cycle_length=1000)(0.1, t))
    np.testing.assert_allclose(cyc[[0, 500, 1000, 2000]], [0.1, 0.05, 0.1, 0.1], rtol=1e-5)
    assert cyc[999] < 1e-5 * 0.1 * 10


def test_infer_by_name_with_thinning_and_schedule():
    post = ppl.infer(correlated(), "sgld", num_samples=50, num_warmup=10, num_chains=2,
                     seed=0, progress=False)  # fmt: skip
    assert post.samples["x1"].shape == (2, 50) and post.method == "sgld"
    method = SGLD(step_size=0.05, schedule=Polynomial(b=10.0), thinning=3)
    post = ppl.infer(correlated(), method, num_samples=50, num_warmup=10, num_chains=2,
                     seed=0, progress=False)  # fmt: skip
    assert post.samples["x2"].shape == (2, 50)
    np.testing.assert_array_equal(post.diagnostics["steps"], 3 * (4 + 50))  # 10 → 12 burn-in
    h = post.sample_stats["step_size"]
    np.testing.assert_allclose(h[:, -1], 0.05 * (1 + (3 * 54 - 1) / 10) ** -0.55, rtol=1e-5)


def test_same_seed_same_draws():
    kw = dict(num_samples=30, num_warmup=5, num_chains=2, seed=3, progress=False)
    a = ppl.infer(correlated(), SGHMC(step_size=0.05, friction=2.0), **kw).samples["x1"]
    b = ppl.infer(correlated(), SGHMC(step_size=0.05, friction=2.0), **kw).samples["x1"]
    np.testing.assert_array_equal(a, b)


def test_checkpoint_returns_the_same_draws(tmp_path):
    kw = dict(num_samples=40, num_warmup=10, num_chains=2, seed=4, progress=False)
    method = SGHMC(step_size=0.05, friction=2.0)
    path = tmp_path / "sgmcmc.ckpt"
    first = ppl.infer(correlated(), method, checkpoint=path, **kw).samples["x2"]
    again = ppl.infer(correlated(), method, checkpoint=path, **kw).samples["x2"]  # from file
    plain = ppl.infer(correlated(), method, **kw).samples["x2"]
    np.testing.assert_array_equal(first, plain)
    np.testing.assert_array_equal(again, plain)


# ----- bad input --------------------------------------------------------------------


def test_diverging_step_size_stops_the_run_naming_the_step(data):
    with pytest.raises(InferenceError, match=r"diverged: at step \d+ \(burn-in") as err:
        ppl.infer(regression(data.x, data.y), SGLD(step_size=0.5), num_samples=20,
                  num_warmup=20, num_chains=2, seed=0, progress=False)  # fmt: skip
    assert "step_size=0.05" in str(err.value)  # the suggested fix


def test_subsample_size_larger_than_the_data():
    with pytest.raises(ModelError, match=r"subsample_size=200 exceeds its size 100"):
        ppl.infer(regression(np.ones((100, 2)), np.ones(100), batch=200), "sgld",
                  num_samples=10, progress=False)  # fmt: skip


@ppl.model
def logistic(x, y):
    w = ppl.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    with ppl.plate("data", x.shape[0], subsample_size=50) as idx:
        ppl.sample("y", dist.Bernoulli(logits=x[idx] @ w), obs=y[idx])


def test_a_chain_settled_in_the_wrong_distribution_is_warned_about():
    """With bounded gradients a step size far too large does not diverge: the chains
    wander ~100 posterior sds wide, all alike (R-hat is quiet). The Stein check sees it;
    at a sound step size it stays quiet (the ratio is 1 within its noise)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 2)).astype(np.float32)
    y = (rng.uniform(size=500) < 1 / (1 + np.exp(-x @ np.array([1.0, -0.5])))).astype(np.float32)
    run = dict(num_samples=500, num_warmup=500, num_chains=2, seed=0, progress=False)
    with pytest.warns(ppl.SamplingWarning, match=r"spread disagrees.*too wide\): lower step"):
        wrong = ppl.infer(logistic(x, y), SGLD(step_size=1.0), **run)
    assert (wrong.diagnostics["variance_ratio"][0] > 100).all()
    with warnings.catch_warnings(record=True) as found:
        warnings.simplefilter("always")
        sound = ppl.infer(logistic(x, y), SGLD(step_size=1e-3), **run)
    assert not [w for w in found if "spread disagrees" in str(w.message)]
    ratio, se = sound.diagnostics["variance_ratio"]
    assert (np.abs(ratio - 1) < 5 * se + 0.5).all(), (ratio, se)


@ppl.model
def with_discrete():
    ppl.sample("k", dist.Bernoulli(0.3))
    ppl.sample("x", dist.Normal(0.0, 1.0))


def test_discrete_sites_are_refused():
    with pytest.raises(ModelError, match=r"site 'k'.*discrete.*'sghmc'"):
        ppl.infer(with_discrete(), "sghmc", num_samples=10, progress=False)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SGLD(step_size=-1.0), "step_size=-1.0 must be a positive number"),
        (lambda: SGLD(thinning=0), "thinning=0 must be an integer >= 1"),
        (lambda: SGLD(schedule="cosine"), "schedule='cosine' must be a schedule object"),
        (lambda: Polynomial(gamma=2.0), "gamma=2.0 must be a number in"),
        (lambda: Cyclical(cycle_length=0), "cycle_length=0 must be a positive integer"),
        (lambda: SGHMC(step_size=0.2, friction=10.0), "step_size \\* friction = 2 must be < 1"),
        (lambda: PSGLD(alpha=1.0), "alpha=1.0 must be a number in"),
        (lambda: SGLD(control_variate="yes"), "control_variate='yes' must be True or False"),
    ],
)
def test_bad_options(make, message):
    with pytest.raises(OptionError, match=message):
        make()


def test_numpy_and_jax_scalars_are_numbers():
    """A step size as a JAX array (BlackJAX's habit) or NumPy scalar options are numbers:
    accepted, and the objects stay hashable (compiled code is shared by equal ones)."""
    assert SGLD(step_size=jnp.array(1e-4)) == SGLD(step_size=np.float32(1e-4))
    hash(SGLD(step_size=jnp.array(1e-4), schedule=Polynomial(gamma=np.float32(0.55))))
    assert Cyclical(cycle_length=np.int64(100)).cycle_length == 100


def test_method_option_given_to_infer_points_to_the_method():
    with pytest.raises(OptionError, match=r"ppl.sgmcmc.SGLD\(step_size=...\)"):
        ppl.infer(correlated(), "sgld", step_size=0.1, progress=False)


def test_sgnht_reports_its_thermostat():
    post = ppl.infer(correlated(), SGNHT(step_size=0.01), num_samples=50, num_warmup=50,
                     num_chains=2, seed=0, progress=False, convergence_checks=False)  # fmt: skip
    assert post.diagnostics["thermostat"].shape == (2,)
    assert np.isfinite(post.diagnostics["thermostat"]).all()
