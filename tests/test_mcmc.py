"""Statistical and contract tests of the MCMC methods (NUTS, RWMH) and the driver.

Tolerances come from the Monte Carlo error of each run, estimated from its own
effective sample size, never from a fixed number. A comparison passes when the
error is below 4 standard errors: a correct sampler fails one such check with
probability about 6e-5, so the ~40 checks here would all pass on a fresh seed
with probability > 99.7%, while a biased sampler (wrong Jacobian, wrong mass
matrix, wrong acceptance rule) misses by far more than that.
"""

import warnings
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist, examples
from ppl.infer.driver import Phase, run
from ppl.infer.summary import ess_bulk, ess_mean
from ppl.mcmc import NUTS, adaptive, nuts_proposal

NUM_SIGMAS = 4.0


# ----- helpers --------------------------------------------------------------------------


def flat(draws):
    """(chains, draws, d) -> (chains, draws, d) float64; scalars get a trailing axis."""
    draws = np.asarray(draws, dtype=np.float64)
    return draws[..., None] if draws.ndim == 2 else draws


def mcse_mean(x):
    """MC standard error of the mean of (chains, draws): sd / sqrt(ESS)."""
    return x.std() / np.sqrt(ess_mean(x))


def mcse_moment(x, y):
    """MC standard error of the sample covariance of x and y (each (chains, draws)).

    The sample covariance is the mean of the products of centred draws, so its
    error is the sd of that product over sqrt of the product's own ESS (which is
    often much lower than the ESS of the mean for NUTS's antithetic draws).
    """
    prod = (x - x.mean()) * (y - y.mean())
    return prod.std() / np.sqrt(ess_mean(prod))


def assert_gaussian_moments(draws, mean, cov, mean_ref_err=0.0, cov_ref_err=0.0):
    """Posterior mean and covariance of `draws` (chains, draws, d) match N(mean, cov).

    `*_ref_err` is the MC error of a reference that is itself estimated (0 when exact).
    """
    draws = flat(draws)
    mean, cov = np.atleast_1d(mean), np.atleast_2d(cov)
    for i in range(draws.shape[-1]):
        xi = draws[..., i]
        tol = NUM_SIGMAS * np.hypot(mcse_mean(xi), mean_ref_err)
        assert abs(xi.mean() - mean[i]) < tol, (i, xi.mean(), mean[i], tol)
        for j in range(i + 1):
            xj = draws[..., j]
            got = np.mean((xi - xi.mean()) * (xj - xj.mean()))
            tol = NUM_SIGMAS * np.hypot(mcse_moment(xi, xj), cov_ref_err)
            assert abs(got - cov[i, j]) < tol, ((i, j), got, cov[i, j], tol)


@ppl.model
def normal_mean(y=None):
    """mu ~ N(0, 10²), y_i ~ N(mu, 1): posterior N(sum y / (n + 0.01), 1 / (n + 0.01))."""
    mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
    with ppl.plate("data", 10):
        ppl.sample("y", dist.Normal(mu, 1.0), obs=y)


NM_Y = jnp.linspace(-1.0, 3.0, 10)
NM_PRECISION = 10 + 1 / 10.0**2
NM_MEAN, NM_VAR = float(NM_Y.sum()) / NM_PRECISION, 1 / NM_PRECISION


def nuts_small(method="nuts", **kw):
    """The small run that reproducibility and option tests share: cheap to compile."""
    options = dict(num_warmup=200, num_samples=200, num_chains=2, seed=0, progress=False)
    return ppl.infer(normal_mean(NM_Y), method, **{**options, **kw})


# ----- NUTS recovers exact posteriors ---------------------------------------------------


def test_nuts_recovers_conjugate_regression(regression, regression_nuts):
    assert_gaussian_moments(regression_nuts.samples["w"], regression.mean, regression.cov)


def test_nuts_deterministic_site_is_function_of_draws(regression, regression_nuts):
    w, signal = regression_nuts.samples["w"], regression_nuts.samples["signal"]
    np.testing.assert_allclose(signal, w @ regression.x.T, rtol=1e-5, atol=1e-5)


# Reference posterior of the non-centred eight schools (the model in ppl.examples, data
# of Rubin 1981) from numpyro 0.22's NUTS (target_accept_prob=0.95, vectorized chains):
# 4 chains x 500,000 draws (seed 7) and 4 x 100,000 draws (seed 123), which agreed to
# within their MC errors (largest gap: tau mean 3.597 vs 3.611). Values of the longer
# run; the `_ERR` numbers are conservative MC errors (about twice the estimated MCSE).
ES_REF_MEAN = {"mu": 4.400, "tau": 3.597}
ES_REF_SD = {"mu": 3.318, "tau": 3.223}
ES_REF_THETA_MEAN = np.array([6.212, 4.942, 3.929, 4.760, 3.617, 4.040, 6.307, 4.857])
ES_REF_MEAN_ERR, ES_REF_SD_ERR = 0.01, 0.01


@pytest.fixture(scope="module")
def eight_schools_nuts():
    model = examples.eight_schools(examples.EIGHT_SCHOOLS_SIGMA, y=examples.EIGHT_SCHOOLS_Y)
    with warnings.catch_warnings(record=True):  # a stray divergence is checked, not printed
        return ppl.infer(
            model,
            NUTS(target_accept=0.9),
            num_warmup=500,
            num_samples=1000,
            num_chains=4,
            seed=0,
            progress=False,
        )


def test_nuts_eight_schools_matches_reference(eight_schools_nuts):
    post = eight_schools_nuts
    # The non-centred parameterisation has (almost) no divergences; a handful would
    # not bias these moments beyond their MC error.
    assert post.diagnostics["divergences"].sum() <= 4
    for name in ("mu", "tau"):
        x = np.asarray(post.samples[name], np.float64)
        tol = NUM_SIGMAS * np.hypot(mcse_mean(x), ES_REF_MEAN_ERR)
        assert abs(x.mean() - ES_REF_MEAN[name]) < tol, (name, x.mean(), tol)
        # sd error ≈ error of the variance / (2 sd)
        tol = NUM_SIGMAS * np.hypot(mcse_moment(x, x) / (2 * x.std()), ES_REF_SD_ERR)
        assert abs(x.std() - ES_REF_SD[name]) < tol, (name, x.std(), tol)
    theta = np.asarray(post.samples["theta"], np.float64)
    for i in range(8):
        tol = NUM_SIGMAS * np.hypot(mcse_mean(theta[..., i]), ES_REF_MEAN_ERR)
        assert abs(theta[..., i].mean() - ES_REF_THETA_MEAN[i]) < tol, (i, tol)


# ----- RWMH ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=[False, True], ids=["diag", "dense"])
def regression_rwmh(regression, request):
    # RWMH mixes ~1/d as fast as NUTS per draw but each step is one density evaluation.
    return ppl.infer(
        regression.model(), ppl.mcmc.RWMH(dense_mass=request.param), num_warmup=2000,
        num_samples=5000, num_chains=4, seed=2, progress=False,
    )  # fmt: skip


def test_rwmh_recovers_conjugate_regression(regression, regression_rwmh):
    assert_gaussian_moments(regression_rwmh.samples["w"], regression.mean, regression.cov)


def test_rwmh_tunes_toward_its_target_acceptance(regression_rwmh):
    # Dual averaging aims the mean acceptance at 0.234. Per chain it lands within about
    # ±0.1 of that (16 chains at another seed: 0.135-0.305); restarting dual averaging
    # at each mass-matrix window (as for NUTS) spread it over 0.05-0.35.
    accept = regression_rwmh.diagnostics["accept_rate"]
    assert accept.shape == (4,)
    assert np.all((accept > 0.1) & (accept < 0.4)), accept
    np.testing.assert_array_equal(regression_rwmh.diagnostics["grad_evals"], 0)  # gradient-free
    assert regression_rwmh.sample_stats["accepted"].shape == (4, 5000)


# ----- reproducibility and the driver ---------------------------------------------------


@pytest.fixture(scope="module")
def small_runs():
    return {"a": nuts_small(seed=0), "b": nuts_small(seed=0), "c": nuts_small(seed=1)}


def test_same_seed_gives_bit_identical_draws(small_runs):
    a, b = small_runs["a"], small_runs["b"]
    np.testing.assert_array_equal(a.samples["mu"], b.samples["mu"])
    for k in a.sample_stats:
        np.testing.assert_array_equal(a.sample_stats[k], b.sample_stats[k])
    np.testing.assert_array_equal(a.diagnostics["step_size"], b.diagnostics["step_size"])


def test_different_seed_gives_different_draws(small_runs):
    a, c = small_runs["a"], small_runs["c"]
    assert not np.any(a.samples["mu"] == c.samples["mu"])


def test_chains_are_distinct(small_runs):
    mu = small_runs["a"].samples["mu"]
    assert not np.any(mu[0] == mu[1])


@dataclass(frozen=True)
class GaussianNUTS:
    """A driver program: the real NUTS kernel with warmup on N(0, diag(scales²))."""

    num_warmup: int

    def kernel(self, scales):
        def potential(z):
            return 0.5 * jnp.sum((z / scales) ** 2)

        return adaptive(nuts_proposal(potential), potential, self.num_warmup, target_accept=0.8)

    def __call__(self, scales):
        return self.kernel(scales).step, lambda s, info: (s.z, info.accept_prob)


@pytest.fixture(scope="module")
def chunked_driver_runs():
    """One program run by the driver with several chunk lengths, warmup included."""
    program, scales = GaussianNUTS(num_warmup=30), jnp.array([1.0, 3.0])
    keys = jax.random.split(jax.random.key(3), 3)
    state = jax.vmap(program.kernel(scales).init)(keys, jnp.zeros((3, 2)) + 0.5)
    phases = [Phase("warmup", 30, keep=False), Phase("sample", 40, keep=True)]
    chain_keys = jax.random.split(jax.random.key(4), 3)
    return {
        chunk_len: run(
            program, scales, state, chain_keys, phases, progress=False, chunk_len=chunk_len
        )
        for chunk_len in (1, 7, None)
    }


def test_driver_output_shapes(chunked_driver_runs):
    state, (z, accept), timings = chunked_driver_runs[None]
    assert z.shape == (3, 40, 2) and accept.shape == (3, 40)
    assert set(timings) == {"warmup", "sample"} and all(t >= 0 for t in timings.values())
    assert np.all(np.asarray(state.i) == 70)
    np.testing.assert_array_equal(np.asarray(state.z), z[:, -1])


def test_chunking_does_not_change_draws(chunked_driver_runs):
    _, (z_ref, acc_ref), _ = chunked_driver_runs[None]
    for chunk_len, (state, (z, acc), _) in chunked_driver_runs.items():
        np.testing.assert_array_equal(z, z_ref, err_msg=f"chunk_len={chunk_len}")
        np.testing.assert_array_equal(acc, acc_ref, err_msg=f"chunk_len={chunk_len}")
        np.testing.assert_array_equal(np.asarray(state.z), z_ref[:, -1])


def _random_walk(scale):
    def step(key, state):
        return state + scale * jax.random.normal(key), None

    return step, lambda s, info: s


def test_driver_returns_none_when_nothing_is_kept():
    state, kept, timings = run(
        _random_walk, 1.0, jnp.zeros(2), jax.random.split(jax.random.key(0), 2),
        [Phase("burn", 5, keep=False)], progress=False,
    )  # fmt: skip
    assert kept is None and set(timings) == {"burn"} and np.all(np.asarray(state) != 0)


# ----- diagnostics --------------------------------------------------------------------------


def test_nuts_diagnostics_present_and_sane(regression_nuts):
    post, chains, draws = regression_nuts, 4, 1000
    d, s = post.diagnostics, post.sample_stats
    for name in ("lp", "accept_prob", "diverging", "num_grad_evals", "tree_depth", "step_size"):
        assert s[name].shape == (chains, draws), name
    assert s["diverging"].dtype == bool
    assert np.all(np.isfinite(s["lp"]))

    np.testing.assert_array_equal(d["divergences"], s["diverging"].sum(axis=1))
    assert d["divergences"].shape == (chains,) and d["divergences"].sum() == 0
    assert d["accept_rate"].shape == (chains,)
    assert np.all((d["accept_rate"] >= 0) & (d["accept_rate"] <= 1))
    np.testing.assert_allclose(d["accept_rate"], s["accept_prob"].mean(axis=1), rtol=1e-6)
    assert d["step_size"].shape == (chains,) and np.all(d["step_size"] > 0)
    # the step size is frozen after warmup: every kept draw used the final one
    np.testing.assert_array_equal(
        s["step_size"], np.broadcast_to(d["step_size"][:, None], (chains, draws))
    )
    assert d["grad_evals"].shape == (chains,)  # per chain, warmup included
    assert np.all(d["grad_evals"] > s["num_grad_evals"].sum(axis=1))  # warmup adds to sampling
    assert np.all(s["num_grad_evals"].sum(axis=1) > 0)
    assert d["tree_depth"].shape == (chains,)
    assert np.all((d["tree_depth"] >= 1) & (d["tree_depth"] <= 10))
    np.testing.assert_allclose(d["tree_depth"], s["tree_depth"].mean(axis=1))
    np.testing.assert_array_equal(d["max_tree_depth_hits"], 0)
    assert d["nonfinite_draws"] == 0
    assert d["wall_time"] >= d["warmup_time"] + d["sampling_time"]
    assert d["warmup_time"] > 0 and d["sampling_time"] > 0


def test_lp_is_the_log_density_of_the_draw(regression, regression_nuts):
    ld = regression.model().log_density()
    w, lp = regression_nuts.samples["w"], regression_nuts.sample_stats["lp"]
    for c, i in [(0, 0), (1, 500), (3, 999)]:
        z = ld.unconstrain({"w": w[c, i]})
        np.testing.assert_allclose(float(ld(z)), lp[c, i], rtol=1e-5)


def test_warmup_adapts_step_size_to_target(regression_nuts, small_runs):
    # Dual averaging targets a mean acceptance of 0.8; the averaged final step size
    # usually lands a little above it. A loose band catches a broken adaptation
    # (untuned step sizes give acceptance near 0 or 1).
    for post in (regression_nuts, small_runs["a"]):
        accept = post.sample_stats["accept_prob"].mean()
        assert 0.7 < accept < 0.97, accept
    # A higher target must shrink the step and raise the acceptance.
    strict = nuts_small(NUTS(target_accept=0.97), seed=0)
    assert strict.sample_stats["accept_prob"].mean() > 0.93
    assert np.all(strict.diagnostics["step_size"] < small_runs["a"].diagnostics["step_size"].min())


# ----- options ------------------------------------------------------------------------------


def test_no_warmup_and_one_chain():
    # Without warmup the step size comes from the initial heuristic alone; the draws must
    # still target the posterior (an untuned step of 1.0 froze this chain once).
    post = nuts_small(num_warmup=0, num_samples=1000, num_chains=1)
    mu = np.asarray(post.samples["mu"], np.float64)
    assert mu.shape == (1, 1000)
    assert post.sample_stats["lp"].shape == (1, 1000)
    assert post.diagnostics["divergences"].shape == (1,)
    assert post.diagnostics["warmup_time"] < post.diagnostics["sampling_time"]
    # Drop the first few draws: no warmup means the chain starts from Uniform(-2, 2).
    assert_gaussian_moments(mu[:, 10:], NM_MEAN, NM_VAR)


def test_no_warmup_takes_the_largest_step_the_heuristic_accepted():
    # Here the heuristic's doubling ends at 4.0, the first step it rejects (a start for
    # dual averaging), at which every NUTS proposal was rejected; without warmup the run
    # takes the last accepted one, 2.0.
    @ppl.model
    def wide_prior(y):
        mu = ppl.sample("mu", dist.Normal(5.0, 3.0))
        ppl.sample("y", dist.Normal(mu, 2.0).expand([4]), obs=y)

    post = ppl.infer(wide_prior(jnp.array([1.0, 2.0, 3.0, 4.0])), "nuts", num_warmup=0,
                     num_samples=300, num_chains=2, seed=0, progress=False)  # fmt: skip
    np.testing.assert_array_equal(post.diagnostics["step_size"], [2.0, 2.0])
    assert np.all(post.diagnostics["accept_rate"] > 0.2)


CORR_SCALES = np.array([1.0, 2.0, 0.5, 3.0])
CORR_COV = (np.full((4, 4), 0.95) + 0.05 * np.eye(4)) * np.outer(CORR_SCALES, CORR_SCALES)


@ppl.model
def correlated_gaussian():
    ppl.sample("z", dist.MultivariateNormal(jnp.zeros(4), covariance_matrix=jnp.asarray(CORR_COV)))


@pytest.fixture(scope="module")
def mass_matrix_runs():
    return {
        dense: ppl.infer(
            correlated_gaussian(),
            NUTS(dense_mass=dense),
            num_warmup=500,
            num_samples=500,
            num_chains=4,
            seed=0,
            progress=False,
        )
        for dense in (False, True)
    }


@pytest.mark.parametrize("dense", [False, True])
def test_mass_matrix_recovers_correlated_gaussian(mass_matrix_runs, dense):
    assert_gaussian_moments(mass_matrix_runs[dense].samples["z"], np.zeros(4), CORR_COV)


def test_dense_mass_mixes_better_on_correlated_gaussian(mass_matrix_runs):
    # A dense mass matrix whitens the 0.95 correlations: shallower trees and several
    # times the ESS (about 7x at this seed; 2x leaves ample room).
    def min_ess(post):
        z = post.samples["z"]
        return min(ess_bulk(z[..., i]) for i in range(4))

    diag, dense = mass_matrix_runs[False], mass_matrix_runs[True]
    assert min_ess(dense) > 2 * min_ess(diag)
    assert dense.diagnostics["tree_depth"].mean() < diag.diagnostics["tree_depth"].mean()


# ----- divergences --------------------------------------------------------------------------


def test_centered_eight_schools_reports_divergences():
    model = examples.eight_schools_centred(examples.EIGHT_SCHOOLS_SIGMA, y=examples.EIGHT_SCHOOLS_Y)
    with pytest.warns(UserWarning, match="divergent transitions"):
        post = ppl.infer(model, num_warmup=300, num_samples=300, num_chains=4, seed=0,
                         progress=False)  # fmt: skip
    div = post.diagnostics["divergences"]
    assert div.sum() > 0
    np.testing.assert_array_equal(div, post.sample_stats["diverging"].sum(axis=1))


def test_chains_whose_start_is_impossible_are_drawn_again():
    # Uniform(-2, 2) starts land in x > 1 only a quarter of the time: most of the 8
    # chains need new draws, and every chain must end up inside the support.
    @ppl.model
    def truncated():
        x = ppl.sample("x", dist.Normal(0.0, 1.0))
        ppl.factor("cut", jnp.where(x > 1.0, 0.0, -jnp.inf))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = ppl.infer(
            truncated(), method="rwmh", num_samples=50, num_warmup=50, num_chains=8,
            seed=0, progress=False,
        )  # fmt: skip
    assert np.all(post.samples["x"] > 1.0)


def test_no_finite_start_names_the_site_at_fault():
    @ppl.model
    def impossible(y):
        x = ppl.sample("x", dist.Normal(0.0, 1.0))
        ppl.sample("y", dist.Normal(x, jnp.sqrt(x - 100.0)), obs=y)  # scale NaN for x < 100

    with pytest.raises(
        ppl.errors.InferenceError, match=r"chain\(s\) \[0\]; .*site\(s\) \['y'\] is not finite"
    ):
        ppl.infer(impossible(1.0), "rwmh", num_samples=5, num_warmup=5, num_chains=1,
                  progress=False)  # fmt: skip


def test_missing_data_by_obs_mask_is_imputed_and_the_rest_exact():
    @ppl.model
    def partly_missing(y, mask):
        mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
        with ppl.plate("n", 4):
            ppl.sample("y", dist.Normal(mu, 1.0), obs=y, obs_mask=mask)

    y = jnp.array([1.0, 2.0, jnp.nan, 3.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ppl.errors.SamplingWarning)  # none: no flat directions
        post = ppl.infer(partly_missing(y, jnp.isfinite(y)), "nuts", num_samples=1000,
                         num_warmup=500, num_chains=2, seed=0, progress=False)  # fmt: skip
    # exact: mu | y ~ N(6 / 3.01, 1 / 3.01); the missing y ~ N(mu, 1) given mu
    mean, var = 6.0 / 3.01, 1.0 / 3.01
    assert_gaussian_moments(post.samples["mu"], mean, var)
    assert_gaussian_moments(post.samples["y"][..., 2], mean, var + 1.0)
    np.testing.assert_array_equal(post.samples["y"][..., [0, 1, 3]][0, 0], [1.0, 2.0, 3.0])


def test_non_finite_deterministic_values_are_warned_about():
    @ppl.model
    def logged():
        x = ppl.sample("x", dist.Normal(0.0, 1.0))
        ppl.deterministic("log_x", jnp.log(x))  # NaN for the negative half of the draws

    with pytest.warns(ppl.errors.SamplingWarning, match=r"deterministic site\(s\) .*'log_x'"):
        ppl.infer(logged(), "rwmh", num_samples=50, num_warmup=50, num_chains=1,
                  progress=False, convergence_checks=False)  # fmt: skip


@ppl.model
def grouped(group, y=None):
    """Python computed from the data, as NumPyro users write it (not traceable)."""
    num_groups = int(group.max()) + 1
    with ppl.plate("groups", num_groups):
        a = ppl.sample("a", dist.Normal(0.0, 5.0))
    with ppl.plate("data", len(np.unique(group)) * 2):
        ppl.sample("y", dist.Normal(a[group], 0.5), obs=y)


def test_a_model_computing_python_values_from_its_data_runs_on_constant_data():
    group, y = np.array([0, 0, 1, 1, 2, 2]), np.array([1.0, 1.2, 2.0, 2.2, 3.0, 3.2])
    bound = grouped(group, y)
    post = ppl.infer(bound, "nuts", num_samples=500, num_warmup=300, num_chains=2, seed=0,
                     progress=False)  # fmt: skip
    assert bound.static_data and not normal_mean(NM_Y).log_density().model.static_data
    # exact: a_g | y ~ N(sum_g(y) / 0.25 / precision, 1 / precision), precision 2/0.25 + 1/25
    precision = 2 / 0.25 + 1 / 25
    means = np.array([2.2, 4.2, 6.2]) / 0.25 / precision
    assert_gaussian_moments(post.samples["a"], means, np.eye(3) / precision)


def test_params_held_fixed_by_a_sampler_are_warned_about():
    @ppl.model
    def with_param(y):
        w = ppl.param("w", 1.0)
        mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
        ppl.sample("y", dist.Normal(mu * w, 1.0), obs=y)

    with pytest.warns(ppl.errors.SamplingWarning, match=r"ppl.param \['w'\], which rwmh holds"):
        ppl.infer(with_param(1.0), "rwmh", num_samples=20, num_warmup=20, num_chains=1,
                  progress=False, convergence_checks=False)  # fmt: skip


@ppl.model
def start_here(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
    sigma = ppl.sample("sigma", dist.HalfNormal(2.0))
    k = ppl.sample("k", dist.Categorical(probs=jnp.ones(3) / 3).expand([2]).to_event(1))
    ppl.sample("y", dist.Normal(mu + k.sum(), sigma), obs=y)


def test_init_values_start_the_given_sites_there():
    from ppl.mcmc.method import MCMCProgram, start_chains

    ld = start_here(jnp.array([0.1, 0.3])).log_density()
    for method in (
        ppl.mcmc.DiscreteGibbs(init={"mu": 30.0, "k": [2, 1]}),
        ppl.mcmc.blocks({"k": ppl.mcmc.DiscreteGibbs(), ("mu", "sigma"): ppl.mcmc.NUTS()},
                        init={"k": np.array([2, 1]), "mu": 30}),
    ):  # fmt: skip
        state, found, _ = start_chains(MCMCProgram(method, 0), ld, jax.random.key(0), 3)
        start = jax.vmap(ld.constrain)(state.z)
        assert np.all(found)
        np.testing.assert_array_equal(start["mu"], 30.0)
        np.testing.assert_array_equal(start["k"], [[2, 1]] * 3)
        assert np.unique(np.asarray(start["sigma"])).size == 3  # the others: "uniform" draws
    # the first draw of a run with tiny steps and no warmup is near the start (posterior: ~0)
    method = NUTS(init={"mu": 30.0}, step_size=1e-4, adapt_step_size=False, max_tree_depth=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ppl.errors.SamplingWarning)  # (tree depth: 2 of 2)
        post = ppl.infer(normal_mean(NM_Y), method, num_warmup=0, num_samples=1, num_chains=2,
                         progress=False, convergence_checks=False)  # fmt: skip
    np.testing.assert_allclose(post.samples["mu"], 30.0, atol=0.01)


def test_init_values_keep_method_objects_hashable():
    a, b = NUTS(init={"mu": 1.0, "s": [1, 2]}), NUTS(init={"s": np.array([1, 2]), "mu": 1})
    assert a == b and hash(a) == hash(b) and a != NUTS(init={"mu": 2.0, "s": [1, 2]})
    assert repr(a.init) == "{'mu': 1.0, 's': (1.0, 2.0)}"


def test_a_latent_value_set_by_a_handler_is_said_to_be_ignored():
    """handlers.substitute on a latent site does not fix it for a sampler (NumPyro ignores
    it too, with a warning): say so, and point to condition. Conditioned sites are not
    flagged (nor scan sites, which come with their values: tests/test_particle_filter)."""

    @ppl.model
    def two(y=None):
        m = ppl.sample("m", dist.Normal(0.0, 1.0))
        s = ppl.sample("s", dist.HalfNormal(1.0))
        ppl.sample("y", dist.Normal(m, s), obs=y)

    substituted = ppl.handlers.substitute(two(1.0), data={"m": 0.5})
    with pytest.warns(ppl.SamplingWarning, match=r"latent site\(s\) \['m'\] .* set by a handler"):
        ppl.infer(substituted, num_samples=10, num_warmup=10, num_chains=1, progress=False)
    with warnings.catch_warnings(record=True) as found:
        warnings.simplefilter("always")
        ppl.infer(
            ppl.handlers.condition(two(1.0), data={"m": 0.5}),
            num_samples=10,
            num_warmup=10,
            num_chains=1,
            progress=False,
        )
    assert not [w for w in found if "set by a handler" in str(w.message)]
