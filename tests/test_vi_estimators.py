"""Per-site gradient estimators of ppl.vi: each is unbiased for the exact gradient of the
objective, with the expected variance ordering, and bad input is a clear error.

Exact gradients are jax.grad of closed-form objectives: the ELBO of a Normal-Normal model
under a Normal guide, and the IWAE bound of a Bernoulli-logit model under a Bernoulli guide
(a finite sum over the joint assignments of the particles).

Tolerance: the mean of N independent gradient draws has standard error sd/√N, so it
must lie within TOL_SE = 4.5 standard errors of the exact gradient (a false alarm has
probability ~1e-5 per component; seeds are fixed anyway).
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

import ppl
import ppl.vi as vi
from ppl import dist
from ppl.errors import ModelError, OptionError

N = 4000  # gradient draws per estimator
TOL_SE = 4.5
X = 1.0


def gradient_draws(objective, model, guide, params, seed, estimators=None, baseline=0.0):
    """N independent draws of (objective value, gradient estimate), one compiled function."""

    def one(key):
        def surrogate(p):
            out = objective.surrogate(key, p, model, guide, jnp.asarray(baseline), estimators)
            return out.surrogate, out.value

        grad, value = jax.grad(surrogate, has_aux=True)(params)
        return value, grad

    keys = jax.random.split(jax.random.key(seed), N)
    values, grads = jax.jit(jax.vmap(one))(keys)
    return np.asarray(values), {k: np.asarray(v) for k, v in grads.items()}


def assert_unbiased(grads, exact):
    for name, g in grads.items():
        se = g.std() / np.sqrt(g.size)
        assert abs(g.mean() - exact[name]) < TOL_SE * se, (name, g.mean(), exact[name], se)


# ----- Normal-Normal model, Normal guide: reparam / reinforce / mvd ------------------

M0, S0 = 0.3, 0.8  # guide N(m, s), away from the posterior N(X/2, √0.5)


@ppl.model
def normal_model(x):
    z = ppl.sample("z", dist.Normal(0.0, 1.0))
    ppl.sample("x", dist.Normal(z, 1.0), obs=x)


def normal_guide(x):
    m = ppl.param("m", M0)
    s = ppl.param("s", S0, constraint=constraints.positive)
    ppl.sample("z", dist.Normal(m, s))


def normal_elbo(params):
    """E_q[log N(x; z, 1) + log N(z; 0, 1) - log q(z)] in closed form."""
    m, s = params["m"], biject_to(constraints.positive)(params["s"])
    log_lik = -0.5 * jnp.log(2 * jnp.pi) - ((X - m) ** 2 + s**2) / 2
    log_prior = -0.5 * jnp.log(2 * jnp.pi) - (m**2 + s**2) / 2
    entropy = 0.5 * jnp.log(2 * jnp.pi * jnp.e * s**2)
    return log_lik + log_prior + entropy


NORMAL_CASES = {  # name -> (estimator, baseline)
    "reparam": ("reparam", "auto"),
    "reinforce-none": ("reinforce", "none"),
    "reinforce-moving_average": ("reinforce", "moving_average"),
    "reinforce-leave_one_out": ("reinforce", "leave_one_out"),
    "mvd": ("mvd", "auto"),
}


@pytest.fixture(scope="module")
def normal():
    model, guide = normal_model(X), ppl.BoundModel(normal_guide, (X,))
    params = vi.init_params(vi.ELBO(num_particles=2), jax.random.key(0), model, guide)
    exact = {k: float(v) for k, v in jax.grad(normal_elbo)(params).items()}
    draws = {}
    for i, (case, (estimator, baseline)) in enumerate(NORMAL_CASES.items()):
        objective = vi.ELBO(num_particles=2, baseline=baseline)
        # any constant moving-average baseline keeps the estimate unbiased; a good one
        # (the ELBO itself) is what the running average converges to
        b = float(normal_elbo(params))
        draws[case] = gradient_draws(objective, model, guide, params, i, {"z": estimator}, b)[1]
    return exact, draws


@pytest.mark.parametrize("case", list(NORMAL_CASES))
def test_normal_gradient_unbiased(normal, case):
    exact, draws = normal
    assert_unbiased(draws[case], exact)


def test_normal_variance_ordering(normal):
    # the sd of N=4000 draws is known to a few percent, far inside these gaps
    _, draws = normal
    sd = {case: {k: g.std() for k, g in d.items()} for case, d in draws.items()}
    for name in ("m", "s"):
        assert sd["reparam"][name] < 0.5 * sd["reinforce-none"][name]
        assert sd["reinforce-leave_one_out"][name] < 0.8 * sd["reinforce-none"][name]


# ----- Bernoulli-logit model, Bernoulli guide: reinforce / enum / mvd -----------------

T0 = 0.2  # guide logit
K_BERNOULLI = 3  # IWAE particles: 2³ joint assignments in the exact sum
PRIOR = 0.3


@ppl.model
def bernoulli_model(x):
    z = ppl.sample("z", dist.Bernoulli(PRIOR))
    ppl.sample("x", dist.Bernoulli(logits=3.0 * z - 1.5), obs=x)


def bernoulli_guide(x):
    t = ppl.param("t", T0)
    ppl.sample("z", dist.Bernoulli(logits=t))


def bernoulli_iwae(params, x=1.0, k=K_BERNOULLI):
    """E over K iid z_k ~ q of log (1/K) Σ_k p(x, z_k)/q(z_k): a sum over 2^K assignments."""
    q1 = jax.nn.sigmoid(params["t"])
    q = jnp.array([1 - q1, q1])
    log_p = jnp.log(jnp.array([1 - PRIOR, PRIOR])) + jax.nn.log_sigmoid(
        (2 * x - 1) * (3.0 * jnp.arange(2) - 1.5)
    )
    log_w = log_p - jnp.log(q)
    total = 0.0
    for c in itertools.product([0, 1], repeat=k):
        c = jnp.array(c)
        total += jnp.prod(q[c]) * (jax.nn.logsumexp(log_w[c]) - jnp.log(k))
    return total


BERNOULLI_CASES = {
    "reinforce-none": ("reinforce", "none"),
    "reinforce-moving_average": ("reinforce", "moving_average"),
    "reinforce-leave_one_out": ("reinforce", "leave_one_out"),
    "enum": ("enum", "auto"),
    "mvd": ("mvd", "auto"),
}


@pytest.fixture(scope="module")
def bernoulli():
    model, guide = bernoulli_model(1.0), ppl.BoundModel(bernoulli_guide, (1.0,))
    objective = vi.IWAE(num_particles=K_BERNOULLI)
    params = vi.init_params(objective, jax.random.key(0), model, guide)
    value, grad = jax.jit(jax.value_and_grad(bernoulli_iwae))(params)
    exact, value = {"t": float(grad["t"])}, float(value)
    draws = {}
    for i, (case, (estimator, baseline)) in enumerate(BERNOULLI_CASES.items()):
        objective = vi.IWAE(num_particles=K_BERNOULLI, baseline=baseline)
        draws[case] = gradient_draws(
            objective, model, guide, params, 100 + i, {"z": estimator}, value
        )
    return exact, value, draws


@pytest.mark.parametrize("case", [c for c in BERNOULLI_CASES if c != "enum"])
def test_bernoulli_gradient_unbiased(bernoulli, case):
    exact, _, draws = bernoulli
    assert_unbiased(draws[case][1], exact)


def test_enumeration_is_exact_with_zero_variance(bernoulli):
    exact, value, draws = bernoulli
    values, grads = draws["enum"]
    np.testing.assert_allclose(grads["t"], exact["t"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values, value, rtol=1e-5)
    assert grads["t"].std() < 1e-6


def test_numpyro_enumerate_mark_means_enum(bernoulli):
    """A guide site marked as NumPyro's config_enumerate marks it is summed exactly."""
    exact = bernoulli[0]

    def marked_guide(x):
        t = ppl.param("t", T0)
        ppl.sample("z", dist.Bernoulli(logits=t), infer={"enumerate": "parallel"})

    model, guide = bernoulli_model(1.0), ppl.BoundModel(marked_guide, (1.0,))
    objective = vi.IWAE(num_particles=K_BERNOULLI)
    params = vi.init_params(objective, jax.random.key(0), model, guide)
    for seed in (0, 1):
        key = jax.random.key(seed)
        grad = jax.grad(
            lambda p, k=key: objective.surrogate(k, p, model, guide, jnp.zeros(())).surrogate
        )(params)
        np.testing.assert_allclose(grad["t"], exact["t"], rtol=1e-5, atol=1e-6)


def test_bernoulli_variance_ordering(bernoulli):
    # sd estimates from N=4000 draws are good to a few percent; the gaps are larger
    _, _, draws = bernoulli
    sd = {case: d[1]["t"].std() for case, d in draws.items()}
    assert sd["reinforce-leave_one_out"] < 0.5 * sd["reinforce-none"]
    assert sd["mvd"] < 0.5 * sd["reinforce-none"]


# ----- bad input -----------------------------------------------------------------


def _init(objective, guide_fn, estimators=None, model=None):
    model = bernoulli_model(1.0) if model is None else model
    guide = ppl.BoundModel(guide_fn, (1.0,))
    params = vi.init_params(objective, jax.random.key(0), model, guide)
    return jax.eval_shape(
        lambda: objective.surrogate(
            jax.random.key(1), params, model, guide, jnp.zeros(()), estimators
        )
    )


def test_reparam_on_bernoulli_names_site_and_working_estimators():
    def guide(x):
        ppl.sample("z", dist.Bernoulli(logits=ppl.param("t", 0.0)), estimator="reparam")

    with pytest.raises(OptionError, match="site 'z'") as err:
        _init(vi.ELBO(), guide)
    for name in ("'enum'", "'reinforce'", "'mvd'"):
        assert name in str(err.value)


def test_enum_on_continuous_site():
    def guide(x):
        ppl.sample("z", dist.Normal(ppl.param("m", 0.0), 1.0), estimator="enum")

    with pytest.raises(OptionError, match="site 'z'.*finite support"):
        _init(vi.ELBO(), guide)


@pytest.mark.parametrize("shape, k", [((13,), 1), ((), 13)])
def test_too_many_enumeration_assignments(shape, k):
    def guide(x):
        t = ppl.param("t", jnp.zeros(shape))
        ppl.sample("z", dist.Bernoulli(logits=t).to_event(len(shape)), estimator="enum")

    @ppl.model
    def model(x):
        z = ppl.sample("z", dist.Bernoulli(PRIOR).expand(shape).to_event(len(shape)))
        ppl.sample("x", dist.Bernoulli(logits=3.0 * z.sum() - 1.5), obs=x)

    with pytest.raises(OptionError, match="8192 joint assignments.*MAX_ENUMERATION"):
        _init(vi.IWAE(num_particles=k), guide, model=model(1.0))


def test_unknown_estimator_in_mapping():
    with pytest.raises(OptionError, match="site 'z'.*unknown estimator 'pathwise'"):
        _init(vi.ELBO(), bernoulli_guide, {"z": "pathwise"})


def test_mvd_on_unsupported_distribution():
    def guide(x):
        ppl.sample("z", dist.Poisson(jnp.exp(ppl.param("t", 0.0))), estimator="mvd")

    with pytest.raises(OptionError, match="mvd.*Poisson"):
        _init(vi.ELBO(), guide)


def test_mvd_refuses_transformed_distributions():
    # LogNormal's base is a Normal, but mvd's Normal replacements are not its values
    def guide(x, estimator="mvd"):
        ppl.sample("z", dist.LogNormal(ppl.param("m", 0.0), 1.0), estimator=estimator)

    for estimator in ("mvd", "enum"):
        with pytest.raises(OptionError, match=f"site 'z': estimator='{estimator}'") as err:
            _init(vi.ELBO(), functools.partial(guide, estimator=estimator))
        assert str(err.value).endswith("work for it: 'reparam', 'reinforce'")


def test_estimators_must_name_a_site_the_objective_draws():
    with pytest.raises(OptionError, match=r"'zz' is not a site .*\(did you mean 'z'\?\).*\['z'\]"):
        _init(vi.ELBO(), bernoulli_guide, {"zz": "enum"})
    model = normal_model(X)
    guide = vi.guides.Normal().bind(model)
    params = vi.init_params(vi.ELBO(), jax.random.key(0), model, guide)
    with pytest.raises(OptionError, match=r"does not sample 'z'.*automatic guide.*reparameter"):
        jax.eval_shape(
            lambda: vi.ELBO().surrogate(jax.random.key(1), params, model, guide, 0.0, {"z": "mvd"})
        )


def test_unknown_baseline():
    with pytest.raises(OptionError, match="unknown baseline 'median'.*leave_one_out"):
        vi.ELBO(baseline="median")


def test_leave_one_out_needs_two_particles():
    with pytest.raises(OptionError, match="VIMCO: num_particles=1 must be >= 2"):
        vi.VIMCO(num_particles=1)  # refused when made
    with pytest.raises(OptionError, match="num_particles >= 2"):
        _init(vi.IWAE(num_particles=1, baseline="leave_one_out"), bernoulli_guide)


def test_draw_outside_an_objective():
    with pytest.raises(ModelError, match="inside a function decorated with @ppl.vi.objective"):
        vi.draw(ppl.BoundModel(bernoulli_guide, (1.0,)))


# ----- particles returning a pytree: estimators re-evaluate the objective on it -----


@vi.objective(bound=True)
def iwae_from_pairs(model, guide, num_particles=K_BERNOULLI):
    """IWAE written with particles that return (log p, log q) pairs."""

    def one():
        d = vi.draw(guide)
        return {"log_p": vi.score(model, d), "log_q": d.log_q}

    pairs = vi.particles(one, num_particles)
    return vi.logmeanexp(pairs["log_p"] - pairs["log_q"])


@pytest.mark.parametrize("estimator, baseline", [("enum", "auto"), ("reinforce", "leave_one_out")])
def test_pytree_particles(bernoulli, estimator, baseline):
    exact, value, draws = bernoulli
    model, guide = bernoulli_model(1.0), ppl.BoundModel(bernoulli_guide, (1.0,))
    objective = iwae_from_pairs(baseline=baseline)
    params = vi.init_params(objective, jax.random.key(0), model, guide)
    seed = 100 + list(BERNOULLI_CASES).index(f"{estimator}-{baseline}".replace("-auto", ""))
    values, grads = gradient_draws(objective, model, guide, params, seed, {"z": estimator})
    if estimator == "enum":
        np.testing.assert_allclose(grads["t"], exact["t"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(values, value, rtol=1e-5)
    else:  # the same draws as IWAE's own (same keys), so the same estimates
        np.testing.assert_allclose(grads["t"], draws[f"{estimator}-{baseline}"][1]["t"], rtol=1e-4)
        assert_unbiased(grads, exact)


# ----- minibatches: a plate's scale weights the objective, not the estimator's weights ----

X_LOCAL = jnp.array([0.5, -1.0, 2.0, 0.0])


@ppl.model
def local_bits(x):
    with ppl.plate("data", 4, subsample_size=2) as idx:
        z = ppl.sample("z", dist.Bernoulli(0.4))
        ppl.sample("x", dist.Normal(2.0 * z, 1.0), obs=x[idx])


def local_guide(x):
    t = ppl.param("t", jnp.array([0.3, -0.2, 0.1, 0.5]))
    with ppl.plate("data", 4, subsample_size=2) as idx:
        ppl.sample("z", dist.Bernoulli(logits=t[idx]))


def _local_exact_elbo(t):
    q1 = jax.nn.sigmoid(t)
    total = 0.0
    for z, q in ((0.0, 1 - q1), (1.0, q1)):
        log_p = jnp.log(jnp.where(z == 1.0, 0.4, 0.6)) + jax.scipy.stats.norm.logpdf(
            X_LOCAL, 2.0 * z, 1.0
        )
        total = total + jnp.sum(q * (log_p - jnp.log(q)))
    return total


@pytest.mark.parametrize("estimator", ["enum", "reinforce"])
def test_subsampled_plate_gradients_are_unbiased(estimator):
    # the minibatch ELBO (scaled by N/B = 2) is unbiased for the full-data ELBO, so the
    # mean of many gradient draws must equal the exact full-data gradient (4.5 MC se)
    model = local_bits(X_LOCAL)
    guide = ppl.BoundModel(local_guide, (X_LOCAL,))
    objective = ppl.vi.ELBO(num_particles=1 if estimator == "enum" else 4)
    params = ppl.vi.init_params(objective, jax.random.key(0), model, guide)

    def grad(key):
        g = jax.grad(
            lambda p: objective.surrogate(key, p, model, guide, 0.0, {"z": estimator}).surrogate
        )(params)
        return g["t"]

    n = 4000
    draws = np.asarray(jax.jit(jax.vmap(grad))(jax.random.split(jax.random.key(1), n)))
    exact = np.asarray(jax.grad(_local_exact_elbo)(params["t"]))
    se = draws.std(axis=0) / np.sqrt(n) + 1e-6
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - exact), 4.5 * se + 1e-4)
