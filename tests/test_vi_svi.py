"""SVI (ppl.vi.svi): fits against exact posteriors, NaN-safe steps, early stopping,
minibatching, the registry and error messages.

The main model is Normal-Normal: mu ~ N(0, 1), x_i ~ N(mu, 1), i = 1..20, whose
posterior N(Σx/(n+1), 1/(n+1)) is in the mean-field Normal family, so the optimum of
the ELBO (and of IWAE) is the exact posterior and log p(x) is exact (x ~ N(0, I + 11ᵀ)).
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.infer.autoguide
import numpyro.optim
import optax
import pytest
from jax.scipy.stats import multivariate_normal
from numpyro.distributions import constraints
from numpyro.infer.autoguide import AutoDelta, AutoNormal
from scipy import stats

import ppl
from ppl import dist
from ppl.errors import InferenceError, ModelError, OptionError, SamplingWarning
from ppl.infer.registry import method_names, resolve
from ppl.vi import svi as svi_module
from ppl.vi.guides import Delta, Laplace, Normal
from ppl.vi.objectives import ELBO, IWAE
from ppl.vi.svi import SVI, EarlyStopping

N = 20
X = np.random.default_rng(0).normal(1.0, 1.0, N).astype(np.float32)
POST_VAR = 1.0 / (N + 1)
POST_MEAN = float(X.sum()) * POST_VAR
POST_SD = POST_VAR**0.5
LOG_EVIDENCE = float(multivariate_normal.logpdf(X, jnp.zeros(N), jnp.eye(N) + 1.0))
# A learning rate decaying to 0 (cosine) makes the last iterates average the gradient
# noise away, so the fit lands close to the optimum (the exact posterior here).
DECAYING = optax.adam(optax.cosine_decay_schedule(0.05, 2000))


@ppl.model
def normal_mean(x):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    ppl.deterministic("twice", 2 * mu)
    with ppl.plate("n", x.shape[0]):
        ppl.sample("x", dist.Normal(mu, 1.0), obs=x)


def dsl_guide(x):
    loc = ppl.param("loc", 0.0)
    scale = ppl.param("scale", 1.0, constraint=constraints.positive)
    ppl.sample("mu", dist.Normal(loc, scale))


def check_exact(loc, scale, mean_tol, sd_tol):
    assert np.all(np.abs(np.asarray(loc) - POST_MEAN) < mean_tol * POST_SD), (loc, POST_MEAN)
    assert np.all(np.abs(np.asarray(scale) / POST_SD - 1) < sd_tol), (scale, POST_SD)


@pytest.fixture(scope="module")
def elbo_fit():
    method = SVI(objective=ELBO(), optimizer=DECAYING, num_steps=2000)
    return ppl.infer(normal_mean(X), method, num_samples=1000, num_chains=2, seed=0, progress=False)


def test_elbo_recovers_conjugate_posterior(elbo_fit):
    post = elbo_fit
    params = post.diagnostics["params"]
    # the decayed-rate iterate still carries gradient noise: over 12 fits (6 seeds x 2)
    # its loc was off by 0.06 posterior sd (sd over fits; at most 0.16) and its scale by
    # 3.5% (at most 10%); 0.3 sd and 15% leave room for that and are far below the error
    # of an unfinished fit (init: loc 0, 4 posterior sd away; scale 0.1, 54% low)
    check_exact(params["auto_loc"][:, 0], params["auto_scale"][:, 0], 0.3, 0.15)
    mu = post.samples["mu"]
    assert mu.shape == (2, 1000)
    np.testing.assert_allclose(post.samples["twice"], 2 * mu, rtol=1e-6)
    # 2000 draws: Monte Carlo sd of the mean is POST_SD/45, of the sd about 1.6%
    assert abs(mu.mean() - POST_MEAN) < 0.3 * POST_SD + 4 * POST_SD / np.sqrt(2000)
    assert abs(mu.std() / POST_SD - 1) < 0.15 + 4 * 0.016
    d = post.diagnostics
    assert d["loss"].shape == (2, 2000) and np.all(np.isfinite(d["loss"]))
    assert np.all(d["nonfinite_steps"] == 0) and np.all(d["stopped_early_at"] == -1)
    # at the exact posterior log p(x, z) - log q(z) = log p(x) for every z: the loss has
    # no noise left and equals -log p(x); the IWAE estimate is log p(x) up to ~1e-3
    np.testing.assert_allclose(d["final_loss"], -LOG_EVIDENCE, atol=0.02)
    assert abs(post.log_evidence - LOG_EVIDENCE) < 0.01
    assert d["log_evidence_per_chain"].shape == (2,) and "IWAE" in d["log_evidence_method"]
    assert d["wall_time"] > d["fit_time"] > 0


@ppl.model
def new_points(n):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("n", n):
        ppl.sample("x", dist.Normal(mu, 1.0))


def test_predictive_from_fitted_guide(elbo_fit):
    pred = elbo_fit.predictive(new_points(N), seed=1)
    assert pred["x"].shape == (2, 1000, N)
    # x_new | data ~ N(POST_MEAN, 1 + POST_VAR): 40000 values, sd of the mean ~0.005 (plus
    # the fitted guide's own error, a few hundredths of a posterior sd)
    assert abs(pred["x"].mean() - POST_MEAN) < 0.1 * POST_SD + 0.05
    assert abs(pred["x"].std() / np.sqrt(1 + POST_SD**2) - 1) < 0.05


def test_iwae_recovers_conjugate_posterior():
    # IWAE(K) = log p(x) when q is the posterior, its maximum: the optimum is exact too
    method = SVI(objective=IWAE(num_particles=5), optimizer=DECAYING, num_steps=2000)
    post = ppl.infer(normal_mean(X), method, num_samples=200, num_chains=1, seed=1, progress=False)
    params = post.diagnostics["params"]
    # near the optimum IWAE(K) is ~K times flatter in the guide's scale than the ELBO
    # (its gap is ~Var(log w)/2K), so the same gradient noise leaves the scale further off
    check_exact(params["auto_loc"][0, 0], params["auto_scale"][0, 0], 0.3, 0.15)
    assert abs(post.log_evidence - LOG_EVIDENCE) < 0.01


def test_dsl_guide_with_params_and_clipping():
    method = SVI(guide=dsl_guide, optimizer=DECAYING, num_steps=2000, clip_norm=10.0)
    post = ppl.infer(normal_mean(X), method, num_samples=500, num_chains=1, seed=2, progress=False)
    params = post.diagnostics["params"]
    assert set(params) == {"loc", "scale"}
    # "scale": constrained, > 0; tolerances as for the auto guide's fit above
    check_exact(params["loc"][0], params["scale"][0], 0.3, 0.15)
    assert post.samples["mu"].shape == (1, 500) and "twice" in post.samples


def test_laplace_draws_from_its_gaussian():
    # the posterior is Gaussian: Laplace's N(mode, H⁻¹) is exact
    method = SVI(guide=Laplace(), optimizer=DECAYING, num_steps=2000)
    post = ppl.infer(normal_mean(X), method, num_samples=2000, num_chains=2, seed=3, progress=False)
    mu = post.samples["mu"]  # 4000 draws: MC sd of the mean POST_SD/63, of the sd ~1.1%
    assert abs(mu.mean() - POST_MEAN) < 0.1 * POST_SD + 4 * POST_SD / np.sqrt(4000)
    assert abs(mu.std() / POST_SD - 1) < 0.05


# ----- a discrete latent with a DSL guide ------------------------------------------

MEANS = jnp.array([-1.0, 2.0])
XD = np.array([0.5, 0.3, 0.6], np.float32)
# p(c=1 | x) = sigmoid(Σ log N(x|2,1) - log N(x|-1,1)) = sigmoid(Σ (3x - 1.5)) = sigmoid(-0.3)
P_EXACT = float(jax.nn.sigmoid(np.sum(3 * XD - 1.5)))
LOG_EVIDENCE_D = float(
    jnp.log(0.5) + jax.nn.logsumexp(
        jnp.array([dist.Normal(m, 1.0).log_prob(XD).sum() for m in MEANS])
    )
)  # fmt: skip


@ppl.model
def two_groups(x):
    c = ppl.sample("c", dist.Bernoulli(0.5))
    with ppl.plate("n", x.shape[0]):
        ppl.sample("x", dist.Normal(MEANS[c], 1.0), obs=x)


def choice_guide(x):
    p = ppl.param("p", 0.5, constraint=constraints.unit_interval)
    ppl.sample("c", dist.Bernoulli(p), estimator="enum")


def test_discrete_latent_with_enumeration():
    method = SVI(guide=choice_guide, optimizer=optax.adam(0.05), num_steps=600)
    post = ppl.infer(two_groups(XD), method, num_samples=1000, num_chains=1, seed=0, progress=False)
    # enumeration: exact gradients, a deterministic ascent to the exact posterior
    assert abs(post.diagnostics["params"]["p"][0] - P_EXACT) < 1e-3
    np.testing.assert_allclose(post.diagnostics["final_loss"], -LOG_EVIDENCE_D, atol=1e-4)
    assert abs(post.log_evidence - LOG_EVIDENCE_D) < 1e-3
    # 1000 Bernoulli draws: sd of the frequency <= 0.016
    assert abs(post.samples["c"].mean() - P_EXACT) < 4 * 0.016


def test_estimators_mapping_overrides_the_guide():
    # the same guide trained with REINFORCE (moving-average baseline) instead of "enum"
    method = SVI(guide=choice_guide, optimizer=DECAYING, num_steps=2000,
                 estimators={"c": "reinforce"})  # fmt: skip
    post = ppl.infer(two_groups(XD), method, num_samples=10, num_chains=1, seed=0, progress=False)
    # REINFORCE's gradient is noisy but unbiased; with the decaying rate the fit ends
    # within a few hundredths of the exact p (a wrong gradient would stay near 0.5 or
    # drift to 0/1)
    assert abs(post.diagnostics["params"]["p"][0] - P_EXACT) < 0.05


# ----- non-finite steps, early stopping ---------------------------------------------


@ppl.model
def cut_off(cut):
    """N(0, 1) with a log density that is NaN beyond `cut`."""
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    ppl.factor("cut", jnp.where(mu > cut, jnp.nan, 0.0))


NAN_SVI = SVI(guide=dsl_guide, optimizer=optax.adam(1e-2), num_steps=300, max_nonfinite=5)


def test_nonfinite_steps_are_skipped_and_counted():
    # q starts at N(0, 1): about 16% of draws land beyond 1 and give a NaN loss
    with pytest.warns(SamplingWarning, match="were skipped"):
        post = ppl.infer(cut_off(jnp.array(1.0)), NAN_SVI, num_samples=10, num_chains=1,
                         progress=False)  # fmt: skip
    d = post.diagnostics
    skipped = int(d["nonfinite_steps"][0])
    assert 10 < skipped < 150
    assert any(f"{skipped} optimisation step(s)" in w for w in d["warnings"])  # and warned
    assert skipped == int(np.sum(~np.isfinite(d["loss"])))
    assert all(np.all(np.isfinite(v)) for v in d["params"].values())


def test_fast_steps_redone_safely_equal_guarded_steps(monkeypatch):
    # the driver runs unguarded steps and redoes a chunk with guarded ones when a
    # non-finite value appears: the fit must be exactly that of guarded steps throughout
    run = dict(num_samples=10, num_chains=1, progress=False, seed=3)
    fast = ppl.infer(cut_off(jnp.array(1.0)), NAN_SVI, **run)
    guarded = functools.partial(svi_module.SVIProgram, safe=True)
    monkeypatch.setattr(svi_module, "SVIProgram", guarded)
    safe = ppl.infer(cut_off(jnp.array(1.0)), NAN_SVI, **run)
    assert int(fast.diagnostics["nonfinite_steps"][0]) > 10
    np.testing.assert_array_equal(fast.diagnostics["loss"], safe.diagnostics["loss"])
    for name, value in fast.diagnostics["params"].items():
        np.testing.assert_array_equal(value, safe.diagnostics["params"][name])


def test_persistent_nonfinite_stops_with_a_message():
    with pytest.raises(
        InferenceError, match=r"failed at step 5: 6 consecutive steps.*learning rate"
    ):
        ppl.infer(cut_off(jnp.array(-np.inf)), NAN_SVI, num_samples=10, num_chains=1,
                  progress=False)  # fmt: skip


def test_early_stopping_on_a_plateau():
    stop = EarlyStopping(patience=200, tolerance=0.01)
    method = SVI(optimizer=optax.adam(2e-2), num_steps=20000, early_stopping=stop)
    post = ppl.infer(normal_mean(X), method, num_samples=10, num_chains=1, progress=False)
    d = post.diagnostics
    at = int(d["stopped_early_at"][0])
    assert 200 < at < 20000 and int(d["steps"][0]) == at
    # the driver ends between chunks (1000 steps here): the run is cut short
    assert d["loss"].shape[1] < 20000
    assert np.all(np.isfinite(d["loss"][0, :at])) and np.all(np.isnan(d["loss"][0, at:]))
    # it stopped on a plateau: the fit has converged (Adam 2e-2 noise: ~0.1-0.2 sd)
    check_exact(d["params"]["auto_loc"][0, 0], d["params"]["auto_scale"][0, 0], 0.5, 0.3)


def test_a_stopped_fit_makes_the_driver_redo_no_chunk(monkeypatch):
    # a stopped fit's losses are NaN by design: chunks after its stop must not be rerun
    # with guarded steps (only a non-finite value in an active fit asks for that)
    answers = []
    needs_safe = svi_module.SVIProgram.needs_safe

    def spy(self, state, out):
        answers.append(needs_safe(self, state, out))
        return answers[-1]

    monkeypatch.setattr(svi_module.SVIProgram, "needs_safe", spy)
    stop = EarlyStopping(patience=200, tolerance=0.01)
    method = SVI(optimizer=optax.adam(2e-2), num_steps=20000, early_stopping=stop)
    post = ppl.infer(normal_mean(X), method, num_samples=10, num_chains=2, progress=False, seed=1)
    at = post.diagnostics["stopped_early_at"]
    assert np.all(at > 0) and at.min() // 1000 < at.max() // 1000  # chunks after a stop
    assert answers and not any(answers)


# ----- minibatches --------------------------------------------------------------------

BATCH = 5


@ppl.model
def normal_mean_minibatch(x):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("n", x.shape[0], subsample_size=BATCH) as idx:
        ppl.sample("x", dist.Normal(mu, 1.0), obs=x[idx])


def exact_elbo(loc, scale):
    """Closed form E_q[log p(x, mu) - log q(mu)] for q = N(loc, scale²), full data."""
    e_sq = lambda c: (c - loc) ** 2 + scale**2  # noqa: E731  E_q[(c - mu)²]
    log_lik = np.sum(-0.5 * np.log(2 * np.pi) - 0.5 * e_sq(X))
    log_prior = -0.5 * np.log(2 * np.pi) - 0.5 * e_sq(0.0)
    entropy = 0.5 * np.log(2 * np.pi * np.e * scale**2)
    return log_lik + log_prior + entropy


def test_minibatch_loss_is_unbiased():
    from ppl.vi.guides import bind_guide

    model = normal_mean_minibatch(X)
    guide = bind_guide(dsl_guide, model)
    loc, scale = 0.5, 0.4
    params = {"loc": jnp.array(loc), "scale": jnp.log(jnp.array(scale))}  # unconstrained
    elbo = ELBO()

    @jax.jit
    def values(keys):
        return jax.vmap(lambda k: elbo.surrogate(k, params, model, guide, 0.0).value)(keys)

    v = np.asarray(values(jax.random.split(jax.random.key(0), 4000)), np.float64)
    assert v.std() > 1.0  # minibatches of 5 of 20 points: a noisy estimate
    # unbiased: the mean of 4000 draws is within 4 standard errors of the exact ELBO
    assert abs(v.mean() - exact_elbo(loc, scale)) < 4 * v.std() / np.sqrt(v.size)


def test_minibatch_fit_recovers_full_data_posterior():
    method = SVI(guide=dsl_guide, optimizer=DECAYING, num_steps=2000)
    post = ppl.infer(normal_mean_minibatch(X), method, num_samples=10, num_chains=1,
                     seed=4, progress=False)  # fmt: skip
    p = post.diagnostics["params"]
    # minibatch gradients are noisier than full-data ones: looser than the full-data fit
    check_exact(p["loc"][0], p["scale"][0], 0.25, 0.15)
    # a bound over one minibatch, scaled up, is no evidence estimate: none is given
    assert post.log_evidence is None
    assert "plate 'n' subsamples" in post.diagnostics["log_evidence_method"]


@ppl.model
def local_means(y, batch=None):
    """m ~ N(0, 10²), z_i ~ N(m, 1), y_i ~ N(z_i, 1): a latent value per data point."""
    m = ppl.sample("m", dist.Normal(0.0, 10.0))
    with ppl.plate("n", y.shape[0], subsample_size=batch) as idx:
        z = ppl.sample("z", dist.Normal(m, 1.0))
        ppl.sample("y", dist.Normal(z, 1.0), obs=y[idx])


def local_guide(y, batch=None):
    """A full-size parameter per point, indexed by the plate's minibatch."""
    ppl.sample("m", dist.Normal(ppl.param("m_loc", 0.0), 0.5))
    z_loc = ppl.param("z_loc", jnp.zeros(y.shape[0]))
    with ppl.plate("n", y.shape[0], subsample_size=batch) as idx:
        ppl.sample("z", dist.Normal(z_loc[idx], 0.7))


def test_per_point_latents_of_a_subsampled_plate_with_a_dsl_guide():
    y = np.linspace(-3.0, 3.0, 20).astype(np.float32)
    method = SVI(guide=local_guide, num_steps=1500)
    post = ppl.infer(local_means(y, 5), method, num_samples=50, num_chains=1, seed=0,
                     progress=False)  # fmt: skip
    # draws cover every point (not one minibatch); the exact E[z_i | y] = (E[m | y] + y_i) / 2
    assert post.samples["z"].shape == (1, 50, 20)
    z_loc = post.diagnostics["params"]["z_loc"][0]
    slope = np.polyfit(y, z_loc, 1)[0]
    assert abs(slope - 0.5) < 0.1, slope


def test_evidence_of_a_guide_without_params_and_none_for_a_point_mass():
    @ppl.model
    def prior_only():
        ppl.sample("z", dist.Normal(0.0, 1.0))

    def fixed(): ppl.sample("z", dist.Normal(0.5, 1.0))  # fmt: skip

    post = ppl.infer(prior_only(), SVI(guide=fixed, num_steps=2), num_samples=5, num_chains=1,
                     progress=False)  # fmt: skip
    assert abs(post.log_evidence) < 0.05  # log p(x) = 0: no data
    post = ppl.infer(prior_only(), SVI(guide=Delta(), num_steps=2), num_samples=5,
                     num_chains=1, progress=False)  # fmt: skip
    assert post.log_evidence is None
    assert "point mass" in post.diagnostics["log_evidence_method"]

    # a DSL guide with a Delta site (as NumPyro's AutoDelta): no evidence either (it was
    # log p(x, z_MAP), above log p(x))
    def map_guide(): ppl.sample("z", dist.Delta(ppl.param("z_map", 0.0)))  # fmt: skip

    post = ppl.infer(prior_only(), SVI(guide=map_guide, num_steps=2), num_samples=5,
                     num_chains=1, progress=False)  # fmt: skip
    assert post.log_evidence is None
    assert "point mass (Delta) at site(s) ['z']" in post.diagnostics["log_evidence_method"]


def _guide_error(guide, model=None):
    """The error of fitting `guide` to normal_mean (raised before any step)."""
    model = normal_mean(jnp.array([0.5, 1.0])) if model is None else model
    with pytest.raises(ModelError) as err:
        ppl.infer(model, SVI(guide=guide, num_steps=2), num_samples=2, num_chains=1)
    return str(err.value)


def test_guides_that_do_not_fit_the_model_are_named():
    def scalar_guide(x):  # the model's site is a vector (a plate)
        ppl.sample("w", dist.Normal(ppl.param("loc", 0.0), 1.0))

    @ppl.model
    def vector_model(x):
        with ppl.plate("d", 3):
            w = ppl.sample("w", dist.Normal(0.0, 1.0))
            ppl.sample("x", dist.Normal(w, 1.0), obs=x)

    message = _guide_error(scalar_guide, vector_model(jnp.ones(3)))
    assert "the guide's site 'w' has shape (), but the model's has shape (3,)" in message

    def real_line_guide(x):  # sigma > 0 in the model
        ppl.sample("sigma", dist.Normal(ppl.param("loc", 1.0), 1.0))

    @ppl.model
    def scale_model(x):
        sigma = ppl.sample("sigma", dist.HalfNormal(1.0))
        ppl.sample("x", dist.Normal(0.0, sigma), obs=x)

    message = _guide_error(real_line_guide, scale_model(jnp.ones(3)))
    assert "guide draws site 'sigma' on the whole real line" in message

    def narrow_signature():
        ppl.sample("mu", dist.Normal(0.0, 1.0))

    assert "guide narrow_signature() cannot take the arguments" in _guide_error(narrow_signature)

    def zero_scale(x):
        scale = ppl.param("scale", 0.0, constraint=constraints.positive)
        ppl.sample("mu", dist.Normal(0.0, scale))

    message = _guide_error(zero_scale)
    assert "ppl.param('scale'): initial value 0.0 lies outside its constraint Positive" in message

    flat = numpyro.infer.autoguide.AutoDiagonalNormal(normal_mean.fn)
    assert "NumPyro's AutoContinuous guides" in _guide_error(flat)


# ----- registry and errors --------------------------------------------------------------


def test_registered_as_vi_with_defaults():
    assert "vi" in method_names()
    method = resolve("vi")
    assert isinstance(method, SVI) and method == SVI()
    assert isinstance(method.guide, Normal) and method.num_steps == 5000
    post = ppl.infer(normal_mean(X), "vi", num_samples=100, num_chains=1, progress=False)
    assert post.method == "vi"
    # Adam 1e-2 with a constant rate: the last iterate wanders ~0.1-0.2 posterior sd
    check_exact(
        post.diagnostics["params"]["auto_loc"][0, 0], post.diagnostics["params"]["auto_scale"][0, 0],
        0.5, 0.3,
    )  # fmt: skip


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_step": 10}, r"unknown option 'num_step' \(did you mean 'num_steps'\?\)"),
        ({"num_steps": 0}, r"num_steps=0 must be an integer >= 1"),
        ({"clip_norm": -1.0}, r"clip_norm=-1.0 must be None or a positive number"),
        ({"max_nonfinite": 1.5}, r"max_nonfinite=1.5 must be an integer >= 0"),
        ({"objective": ELBO}, r"objective=.* must be an objective .*\(call it: e.g. ELBO\(\)\)"),
        ({"optimizer": "adam"}, r"optimizer='adam' must be an optax GradientTransformation"),
        ({"optimizer": numpyro.optim.Adam(1e-2)}, r"Adam\(...\) is a NumPyro optimizer .*optax"),
        ({"guide": Normal}, r"guide=Normal is a class; pass an instance"),
        ({"estimators": {"c": "pathwise"}}, r"estimators\['c'\]='pathwise' is not an estimator"),
        ({"early_stopping": 100}, r"early_stopping=100 must be None, True or"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(OptionError, match=message):
        SVI(**kwargs)


def test_bad_early_stopping_and_infer_options():
    with pytest.raises(OptionError, match="patience=0 must be an integer >= 1"):
        EarlyStopping(patience=0)
    with pytest.raises(OptionError, match="has no warmup phase"):
        ppl.infer(normal_mean(X), "vi", num_warmup=10)
    with pytest.raises(OptionError, match=re.escape("pass method=ppl.vi.SVI(num_steps=...)")):
        ppl.infer(normal_mean(X), "vi", num_steps=10)


def test_guide_missing_a_latent_site():
    def guide(x):
        ppl.param("loc", 0.0)

    with pytest.raises(ModelError, match=r"latent site 'mu'.*guide must sample every latent"):
        ppl.infer(normal_mean(X), SVI(guide=guide, num_steps=10), num_chains=1, progress=False)


def test_discrete_latent_with_an_auto_guide():
    with pytest.raises(ModelError, match=r"\['c'\] are discrete; write a DSL guide"):
        ppl.infer(two_groups(XD), SVI(num_steps=10), num_chains=1, progress=False)


# ----- ppl.vi.adam --------------------------------------------------------------------


def _adam_path(optimizer, steps=200):
    params = {"w": jnp.linspace(-1.0, 1.0, 5), "b": jnp.array(0.3)}

    def loss(p):
        return jnp.sum((p["w"] - 0.5) ** 2 * jnp.arange(1.0, 6.0)) + jnp.exp(p["b"])

    state = optimizer.init(params)
    for _ in range(steps):
        updates, state = optimizer.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
    return params


@pytest.mark.parametrize("rate", [1e-2, optax.exponential_decay(1e-2, 20, 0.5)])
def test_adam_follows_optax_adam(rate):
    # the same algorithm: only the rounding of the bias corrections differs
    ours, theirs = _adam_path(ppl.vi.adam(rate)), _adam_path(optax.adam(rate))
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-5, atol=1e-6)
    clipped = optax.chain(optax.clip_by_global_norm(0.1), ppl.vi.adam(rate))
    assert np.all(np.isfinite(_adam_path(clipped, steps=5)["w"]))


@pytest.mark.parametrize("rate", [-1e-2, 0.0, "1e-2", True, float("nan"), jnp.ones(2)])
def test_adam_needs_a_positive_learning_rate(rate):
    with pytest.raises(
        OptionError, match=r"learning_rate=.* must be a positive number or an optax"
    ):
        ppl.vi.adam(rate)


def test_adam_is_compared_by_value():
    assert ppl.vi.adam(1e-2) == ppl.vi.adam(1e-2) != ppl.vi.adam(1e-3)
    assert hash(ppl.vi.adam(1e-2)) == hash(ppl.vi.adam(1e-2))
    assert SVI() == SVI(optimizer=ppl.vi.adam(1e-2))  # the default: compiled code shared


def test_optimizers_that_watch_the_loss_get_it_and_line_searches_are_refused():
    plateau = optax.chain(optax.adam(0.1), optax.contrib.reduce_on_plateau(patience=5))
    post = ppl.infer(normal_mean(X), SVI(optimizer=plateau, num_steps=20), num_samples=5,
                     num_chains=1, progress=False)  # fmt: skip
    assert np.all(np.isfinite(post.samples["mu"]))
    with pytest.raises(OptionError, match=r"needs more than the gradient and the loss.*adam"):
        ppl.infer(normal_mean(X), SVI(optimizer=optax.lbfgs(), num_steps=2), num_samples=5,
                  num_chains=1, progress=False)  # fmt: skip


def test_svi_objects_pickle():
    import pickle

    method = SVI(objective=IWAE(num_particles=3), num_steps=7)
    assert pickle.loads(pickle.dumps(method)) == method


def test_a_models_own_param_is_reported_on_its_constrained_space():
    @ppl.model
    def noisy(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 5.0))
        scale = ppl.param("scale", 1.0, constraint=constraints.positive)
        ppl.deterministic("scale_used", scale)
        with ppl.plate("data", 3):
            ppl.sample("y", dist.Normal(mu, scale), obs=y)

    y = jnp.array([0.3, -0.2, 0.5])
    post = ppl.infer(noisy(y), SVI(num_steps=50), num_samples=2, num_chains=2, progress=False)
    fitted = post.diagnostics["params"]["scale"]
    raw = post.diagnostics["unconstrained_params"]["scale"]
    np.testing.assert_allclose(fitted, np.exp(raw), rtol=1e-6)  # (was the raw value)
    assert abs(fitted[0] - 1.0) > 1e-3  # (it moved: the checks below can tell)
    # what is computed from the model after the fit uses the fitted value, per fit (it
    # used the initial 1.0: deterministic sites, the log likelihood, predictions)
    per_draw = np.broadcast_to(fitted[:, None], (2, 2))
    np.testing.assert_allclose(post.samples["scale_used"], per_draw, rtol=1e-6)
    loglik = post.log_likelihood()["y"]
    mu = post.samples["mu"][..., None]
    exact = stats.norm.logpdf(np.asarray(y), mu, fitted[:, None, None])
    np.testing.assert_allclose(loglik, exact, rtol=1e-4, atol=1e-5)
    predicted = post.predictive(noisy(None))["scale_used"]
    np.testing.assert_allclose(predicted, per_draw, rtol=1e-6)


def test_init_params_continue_a_fit_or_start_at_given_values():
    x = jnp.array([0.5, 1.0, 1.5])
    run = dict(num_chains=2, num_samples=4, progress=False)
    first = ppl.infer(normal_mean(x), SVI(num_steps=300), **run)
    more = ppl.infer(normal_mean(x), SVI(num_steps=20, init_params=first), **run)
    # the continued fits start where the first ended, not at the initial values
    start, end = first.diagnostics["loss"][:, :20].mean(), first.diagnostics["loss"][:, -20:].mean()
    assert abs(more.diagnostics["loss"].mean() - end) < 0.25 * (start - end)
    given = SVI(guide=dsl_guide, num_steps=1, init_params={"loc": 0.75, "scale": 0.5})
    post = ppl.infer(normal_mean(x), given, **run)
    np.testing.assert_allclose(post.diagnostics["params"]["loc"], 0.75, atol=0.02)  # 1 step
    np.testing.assert_allclose(post.diagnostics["params"]["scale"], 0.5, atol=0.02)
    typo = SVI(guide=dsl_guide, num_steps=1, init_params={"lco": 1.0})
    with pytest.raises(OptionError, match=r"names 'lco'.*did you mean 'loc'"):
        ppl.infer(normal_mean(x), typo, **run)
    with pytest.raises(OptionError, match="init_params=3.0 must be a Posterior"):
        SVI(init_params=3.0)


def test_guides_that_fit_their_model_are_accepted():
    """No false alarms from the guide checks: a Delta for a positive site (its param
    carries the constraint), NumPyro's AutoNormal and AutoDelta, a model with an
    ImproperUniform site, a pytree-valued param."""

    @ppl.model
    def positive(y):
        s = ppl.sample("s", dist.HalfNormal(5.0))
        flat = ppl.sample("flat", dist.ImproperUniform(constraints.real, (), ()))
        tree = ppl.param("tree", {"a": jnp.zeros(2), "b": jnp.ones(())})
        with ppl.plate("data", 3):
            ppl.sample("y", dist.Normal(flat + tree["a"].sum(), s * tree["b"]), obs=y)

    def map_guide(y):
        ppl.sample("s", dist.Delta(ppl.param("s_map", 1.0, constraint=constraints.positive)))
        ppl.sample("flat", dist.Delta(ppl.param("flat_map", 0.0)))

    model = positive(jnp.array([0.5, 1.0, 1.5]))
    run = dict(num_samples=2, num_chains=1, progress=False)
    for guide in (map_guide, AutoNormal(positive.fn), AutoDelta(positive.fn), Normal()):
        post = ppl.infer(model, SVI(guide=guide, num_steps=2), **run)
        assert np.isfinite(post.samples["s"]).all() and (post.samples["s"] > 0).all()
    assert post.diagnostics["params"]["tree"]["b"].shape == (1,)
    with pytest.raises(OptionError, match=r"init_params\['s_map'\] = -0.1 lies outside"):
        ppl.infer(model, SVI(guide=map_guide, num_steps=2, init_params={"s_map": -0.1}), **run)
