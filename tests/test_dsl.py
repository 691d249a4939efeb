"""Semantics of the model DSL: plates, subsampling, handlers, NumPyro interop,
submodels, BoundModel, and the primitives deterministic/factor/param/scan.

`ppl` promises that its primitives are NumPyro's, so most checks compare a ppl
model with the same model written in plain NumPyro, or with numbers worked out
by hand (jax.scipy.stats).
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.handlers as nh
import pytest
from jax.scipy import stats
from numpyro.infer import MCMC, NUTS, Predictive
from numpyro.infer.util import log_density as numpyro_log_density

import ppl
from ppl import dist, handlers
from ppl.errors import ModelError, OptionError, PPLError

TOL = dict(rtol=1e-5, atol=1e-5)  # float32, same operations on both sides

X = jnp.array([-1.0, -0.5, 0.0, 0.5, 1.0, 1.5])
Y = jnp.array([-0.8, -0.1, 0.3, 0.4, 1.2, 1.9])


@ppl.model
def regression(x, y=None):
    a = ppl.sample("a", dist.Normal(0.0, 2.0))
    b = ppl.sample("b", dist.Normal(0.0, 2.0))
    sigma = ppl.sample("sigma", dist.HalfNormal(1.0))
    mean = ppl.deterministic("mean", a + b * x)
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", dist.Normal(mean, sigma), obs=y)


def numpyro_regression(x, y=None):
    """The same model in plain NumPyro."""
    a = numpyro.sample("a", dist.Normal(0.0, 2.0))
    b = numpyro.sample("b", dist.Normal(0.0, 2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    mean = numpyro.deterministic("mean", a + b * x)
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(mean, sigma), obs=y)


def hand_log_joint(a, b, sigma, x=X, y=Y):
    """Constrained-space log joint of `regression` (no Jacobian)."""
    return (
        stats.norm.logpdf(a, 0.0, 2.0)
        + stats.norm.logpdf(b, 0.0, 2.0)
        + jnp.log(2.0) + stats.norm.logpdf(sigma, 0.0, 1.0)
        + stats.norm.logpdf(y, a + b * x, sigma).sum()
    )  # fmt: skip


def trace_of(fn, seed=0, *args, **kwargs):
    return handlers.trace(handlers.seed(fn, rng_seed=seed)).get_trace(*args, **kwargs)


PARAMS = {"a": jnp.array(0.3), "b": jnp.array(0.9), "sigma": jnp.array(0.7)}


# ----- binding --------------------------------------------------------------------------


def test_calling_a_model_binds_and_runs_nothing():
    calls = []

    @ppl.model
    def counted(x):
        calls.append(x)
        ppl.sample("z", dist.Normal())

    bound = counted(1.0)
    assert isinstance(bound, ppl.BoundModel) and calls == []
    assert bound.name == "counted" and "counted" in repr(bound)
    bound.trace()
    assert calls == [1.0]
    assert isinstance(regression, ppl.Model) and regression.__name__ == "regression"
    assert ppl.model(regression).fn is regression.fn


def test_numpy_data_is_bound_as_jax_arrays():
    bound = regression(np.asarray(X), y=np.asarray(Y))
    assert isinstance(bound.args[0], jax.Array) and isinstance(bound.kwargs["y"], jax.Array)


# ----- plates ---------------------------------------------------------------------------


@ppl.model
def nested_plates():
    with ppl.plate("rows", 3, dim=-2):
        ppl.sample("row", dist.Normal())
        with ppl.plate("cols", 4):
            ppl.sample("cell", dist.Normal())
            ppl.sample("vec", dist.Normal().expand([2]).to_event(1))
    with ppl.plate("far", 2, dim=-3):
        ppl.sample("far_site", dist.Normal(jnp.zeros(5), 1.0))
    with ppl.plate("i", 3):
        with ppl.plate("j", 5):  # automatic dims: i -> -1, j -> -2
            ppl.sample("auto", dist.Normal())


def test_plate_batch_shapes_and_dims():
    tr = nested_plates().trace()
    shapes = {n: s["value"].shape for n, s in tr.items() if s["type"] == "sample"}
    assert shapes == {
        "row": (3, 1), "cell": (3, 4), "vec": (3, 4, 2), "far_site": (2, 1, 5), "auto": (5, 3),
    }  # fmt: skip
    frames = {n: {(f.name, f.dim) for f in tr[n]["cond_indep_stack"]} for n in shapes}
    assert frames["cell"] == {("rows", -2), ("cols", -1)}
    assert frames["auto"] == {("i", -1), ("j", -2)}
    assert tr["rows"]["type"] == "plate" and tr["rows"]["value"].tolist() == [0, 1, 2]
    ld = nested_plates().log_density()
    assert {n: s.shape for n, s in ld.sites.items()} == shapes
    assert ld.size == 3 + 12 + 24 + 10 + 15


def test_plate_log_density_sums_over_the_plate():
    ld = regression(X, Y).log_density()
    z = jnp.array([0.3, 0.9, jnp.log(0.7)])
    expected = hand_log_joint(0.3, 0.9, 0.7) + jnp.log(0.7)  # + log-Jacobian of exp
    np.testing.assert_allclose(ld(z), expected, **TOL)


N, B = 10, 4  # plate size and minibatch size
DATA = jnp.linspace(-2.0, 2.0, N)


@ppl.model
def minibatch(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 3.0))
    with ppl.plate("data", y.shape[0], subsample_size=B) as idx:
        ppl.deterministic("idx", idx)
        ppl.sample("y", dist.Normal(mu, 1.0), obs=y[idx])


def test_subsampled_plate_draws_a_minibatch_of_the_right_size():
    for seed in range(5):
        tr = minibatch(DATA).trace(seed=seed)
        idx = np.asarray(tr["data"]["value"])
        assert idx.shape == (B,) and len(set(idx.tolist())) == B
        assert idx.min() >= 0 and idx.max() < N
        assert tr["y"]["value"].shape == (B,)
        np.testing.assert_allclose(tr["y"]["scale"], N / B)


@pytest.fixture(scope="module")
def minibatch_ld():
    return minibatch(DATA).log_density()


def test_subsampled_log_likelihood_is_scaled_minibatch_sum(minibatch_ld):
    ld = minibatch_ld
    z = jnp.array([0.4])
    key = jax.random.key(7)
    terms = jax.jit(ld.terms)
    log_prior, log_lik = terms(z, key)
    idx = ld.values(z, key)["idx"]  # the minibatch this key draws
    np.testing.assert_allclose(log_lik, N / B * stats.norm.logpdf(DATA[idx], 0.4, 1.0).sum(), **TOL)
    np.testing.assert_allclose(log_prior, stats.norm.logpdf(0.4, 0.0, 3.0), **TOL)
    other = ld.values(z, jax.random.key(8))["idx"]
    assert not np.array_equal(idx, other), "another key draws another minibatch"
    # No key: a fixed minibatch, the same at every call (a deterministic function of z).
    np.testing.assert_allclose(ld(z), ld(z))


def test_subsampled_log_likelihood_is_unbiased(minibatch_ld):
    """Averaged over minibatches, N/B x minibatch sum is the full-data log-likelihood.
    The tolerance is 4 standard errors of the mean of 4000 independent minibatches."""
    z = jnp.array([0.4])
    keys = jax.random.split(jax.random.key(0), 4000)
    lik = jax.jit(jax.vmap(lambda k: minibatch_ld.log_likelihood(z, k)))(keys)
    full = stats.norm.logpdf(DATA, 0.4, 1.0).sum()
    stderr = np.std(np.asarray(lik)) / np.sqrt(len(keys))
    assert stderr > 0
    assert abs(float(lik.mean()) - float(full)) < 4 * stderr


def test_subsample_size_equal_to_size_is_the_full_plate():
    @ppl.model
    def full(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 3.0))
        with ppl.plate("data", y.shape[0], subsample_size=y.shape[0]) as idx:
            ppl.sample("y", dist.Normal(mu, 1.0), obs=y[idx])

    ld = full(DATA).log_density()
    expected = stats.norm.logpdf(0.4, 0.0, 3.0) + stats.norm.logpdf(DATA, 0.4, 1.0).sum()
    np.testing.assert_allclose(ld(jnp.array([0.4]), jax.random.key(3)), expected, **TOL)


# ----- handlers on a BoundModel, as in NumPyro -------------------------------------------


def test_ppl_handlers_are_numpyros():
    for name in ("trace", "seed", "condition", "substitute", "block", "scale", "mask", "replay"):
        assert getattr(handlers, name) is getattr(nh, name)
    assert ppl.handlers is handlers


HANDLER_STACKS = {
    "condition": lambda f: handlers.condition(f, data={"a": 0.5}),
    "substitute": lambda f: handlers.substitute(f, data={"b": -0.2}),
    "block": lambda f: handlers.block(handlers.seed(f, 1), hide=["sigma"]),  # seed inside
    "scale": lambda f: handlers.scale(f, scale=3.0),
    "mask": lambda f: handlers.mask(f, mask=False),
    "replay": lambda f: handlers.replay(f, trace=trace_of(numpyro_regression, 11, X, Y)),
    "nested": lambda f: handlers.condition(
        handlers.scale(handlers.block(f, hide=["mean"]), scale=0.5), data={"sigma": 0.9}
    ),
}


@pytest.mark.parametrize("stack", list(HANDLER_STACKS))
def test_handlers_on_a_bound_model_act_as_on_the_numpyro_function(stack):
    wrap = HANDLER_STACKS[stack]
    ours = trace_of(wrap(regression(X, Y)), 5)
    theirs = trace_of(wrap(numpyro_regression), 5, X, Y)
    assert list(ours) == list(theirs)
    for name, site in theirs.items():
        np.testing.assert_array_equal(ours[name]["value"], site["value"], err_msg=name)
        assert ours[name].get("is_observed") == site.get("is_observed"), name
        assert ours[name].get("scale") == site.get("scale"), name
    ours_lp, _ = numpyro_log_density(wrap(regression(X, Y)), (), {}, PARAMS)
    theirs_lp, _ = numpyro_log_density(wrap(numpyro_regression), (X, Y), {}, PARAMS)
    np.testing.assert_allclose(ours_lp, theirs_lp, **TOL)


def test_seed_and_trace_give_the_same_draws_as_numpyro():
    ours = trace_of(regression(X), 3)
    theirs = trace_of(numpyro_regression, 3, X)
    assert list(ours) == list(theirs)
    for name in ours:
        np.testing.assert_array_equal(ours[name]["value"], theirs[name]["value"], err_msg=name)
    other = trace_of(regression(X), 4)
    assert other["a"]["value"] != ours["a"]["value"]


def test_condition_and_substitute():
    bound = regression(X, Y)
    tr = trace_of(handlers.condition(bound, data={"a": 0.5}))
    assert tr["a"]["value"] == 0.5 and tr["a"]["is_observed"]
    tr = trace_of(handlers.substitute(bound, data={"a": 0.5}))
    assert tr["a"]["value"] == 0.5 and not tr["a"]["is_observed"]
    np.testing.assert_allclose(tr["mean"]["value"], 0.5 + tr["b"]["value"] * X, **TOL)


def test_block_hides_sites():
    bound = regression(X, Y)
    assert "a" not in trace_of(handlers.block(bound, hide=["a"]))
    assert set(trace_of(handlers.block(bound, expose=["y"]))) == {"y"}
    assert trace_of(handlers.block(bound)) == {}


def test_scale_and_mask_change_the_log_density_as_in_numpyro():
    bound = regression(X, Y)
    base, _ = numpyro_log_density(bound, (), {}, PARAMS)
    expected = hand_log_joint(**PARAMS)
    np.testing.assert_allclose(base, expected, **TOL)
    theirs, _ = numpyro_log_density(numpyro_regression, (X, Y), {}, PARAMS)
    np.testing.assert_allclose(base, theirs, **TOL)
    scaled, _ = numpyro_log_density(handlers.scale(bound, scale=2.5), (), {}, PARAMS)
    np.testing.assert_allclose(scaled, 2.5 * expected, **TOL)
    masked, _ = numpyro_log_density(handlers.mask(bound, mask=False), (), {}, PARAMS)
    np.testing.assert_allclose(masked, 0.0)
    keep = jnp.arange(X.shape[0]) < 2  # only the first two observations count

    @ppl.model
    def partly_masked(x, y):
        a = ppl.sample("a", dist.Normal(0.0, 2.0))
        b = ppl.sample("b", dist.Normal(0.0, 2.0))
        sigma = ppl.sample("sigma", dist.HalfNormal(1.0))
        with ppl.plate("data", x.shape[0]), handlers.mask(mask=keep):
            ppl.sample("y", dist.Normal(a + b * x, sigma), obs=y)

    partial, _ = numpyro_log_density(partly_masked(X, Y), (), {}, PARAMS)
    np.testing.assert_allclose(partial, hand_log_joint(**PARAMS, x=X[:2], y=Y[:2]), **TOL)
    ld = partly_masked(X, Y).log_density()
    z = jnp.array([0.3, 0.9, jnp.log(0.7)])
    np.testing.assert_allclose(ld(z), partial + jnp.log(0.7), **TOL)


def test_replay_reuses_a_guide_trace():
    bound = regression(X, Y)
    guide_trace = trace_of(bound, 11)
    tr = trace_of(handlers.replay(bound, trace=guide_trace), 12)
    for name in ("a", "b", "sigma"):
        assert tr[name]["value"] == guide_trace[name]["value"]
    assert trace_of(bound, 12)["a"]["value"] != guide_trace["a"]["value"]


def test_handlers_compose_with_a_log_density():
    """A BoundModel built from a handler-wrapped function is a model like any other."""
    conditioned = ppl.model(handlers.condition(regression.fn, data={"sigma": 0.7}))(X, Y)
    ld = conditioned.log_density()
    assert list(ld.sites) == ["a", "b"]
    np.testing.assert_allclose(ld(jnp.array([0.3, 0.9])), hand_log_joint(**PARAMS), **TOL)


# ----- NumPyro interop ------------------------------------------------------------------


def test_wrapped_numpyro_function_equals_the_ppl_model():
    ours, theirs = regression(X, Y), ppl.model(numpyro_regression)(X, Y)
    ld_ours, ld_theirs = ours.log_density(), theirs.log_density()
    assert ld_ours.sites == ld_theirs.sites
    for seed in range(3):
        z = jax.random.normal(jax.random.key(seed), (3,))
        np.testing.assert_allclose(ld_ours(z), ld_theirs(z), **TOL)
        np.testing.assert_allclose(jax.grad(ld_ours)(z), jax.grad(ld_theirs)(z), **TOL)
    prior_ours, prior_theirs = ours.prior(4, seed=2), theirs.prior(4, seed=2)
    assert set(prior_ours) == set(prior_theirs)
    for name in prior_ours:
        np.testing.assert_array_equal(prior_ours[name], prior_theirs[name])
    tr_ours, tr_theirs = ours.trace(5), theirs.trace(5)
    assert [s["type"] for s in tr_ours.values()] == [s["type"] for s in tr_theirs.values()]


def test_unbound_ppl_model_runs_under_numpyro_handlers():
    tr = trace_of(regression, 3, X, Y)
    theirs = trace_of(numpyro_regression, 3, X, Y)
    for name in theirs:
        np.testing.assert_array_equal(tr[name]["value"], theirs[name]["value"])
    draws = Predictive(regression, num_samples=5)(jax.random.key(0), X)
    assert draws["y"].shape == (5, X.shape[0]) and draws["mean"].shape == (5, X.shape[0])


def test_ppl_model_runs_unchanged_in_numpyro_mcmc():
    """Same key, same model: the ppl model and the NumPyro one give identical draws."""

    def run(model, *args):
        mcmc = MCMC(NUTS(model), num_warmup=40, num_samples=40, progress_bar=False)
        mcmc.run(jax.random.key(0), *args)
        return mcmc.get_samples()

    ours = run(regression, X, Y)  # the decorated function itself, arguments from MCMC.run
    theirs = run(numpyro_regression, X, Y)
    assert set(ours) == {"a", "b", "sigma", "mean"}
    for name in ours:
        assert ours[name].shape[0] == 40
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-5, atol=1e-5)


# ----- submodels ------------------------------------------------------------------------


@ppl.model
def centre(scale):
    loc = ppl.sample("loc", dist.Normal(0.0, scale))
    return loc + 1.0


@ppl.model
def with_submodel(y=None):
    shift = centre(2.0)  # runs as a submodel: its sites join this trace
    with ppl.plate("data", 3):
        ppl.sample("y", dist.Normal(shift, 1.0), obs=y)
    return shift


def test_model_called_inside_a_model_runs_as_a_submodel():
    assert isinstance(centre(2.0), ppl.BoundModel), "outside a model it binds"
    tr = with_submodel(jnp.zeros(3)).trace(seed=1)
    assert list(tr) == ["loc", "data", "y"]
    out = handlers.seed(with_submodel(jnp.zeros(3)), rng_seed=1)()
    np.testing.assert_allclose(out, tr["loc"]["value"] + 1.0, **TOL)
    ld = with_submodel(jnp.zeros(3)).log_density()
    z = jnp.array([0.5])
    expected = stats.norm.logpdf(0.5, 0.0, 2.0) + stats.norm.logpdf(jnp.zeros(3), 1.5).sum()
    np.testing.assert_allclose(ld(z), expected, **TOL)


# ----- BoundModel.prior and .condition -------------------------------------------------


def test_prior_shapes():
    draws = regression(X).prior(num_samples=7, seed=0)
    assert {k: v.shape for k, v in draws.items()} == {
        "a": (7,), "b": (7,), "sigma": (7,), "mean": (7, 6), "y": (7, 6),
    }  # fmt: skip
    np.testing.assert_allclose(draws["mean"], draws["a"][:, None] + draws["b"][:, None] * X, **TOL)
    assert np.all(draws["sigma"] > 0)
    again = regression(X).prior(num_samples=7, seed=0)
    np.testing.assert_array_equal(again["a"], draws["a"])
    assert not np.array_equal(regression(X).prior(7, seed=1)["a"], draws["a"])
    observed = regression(X, Y).prior(num_samples=2)
    np.testing.assert_array_equal(observed["y"], jnp.broadcast_to(Y, (2, 6)))


def test_prior_leaves_out_factors_and_params_and_checks_num_samples():
    @ppl.model
    def extras():
        c = ppl.param("c", 1.0)
        z = ppl.sample("z", dist.Normal(c, 1.0))
        ppl.factor("f", -(z**2))

    assert set(extras().prior(3)) == {"z"}
    with pytest.raises(OptionError, match="num_samples"):
        extras().prior(0)


def test_condition_observes_sites():
    bound = regression(X, Y)
    conditioned = bound.condition({"sigma": 0.7})
    assert isinstance(conditioned, ppl.BoundModel) and conditioned.name == "regression"
    tr = conditioned.trace()
    assert tr["sigma"]["is_observed"] and tr["sigma"]["value"] == 0.7
    assert not bound.trace()["sigma"]["is_observed"], "the original is unchanged"
    ld = conditioned.log_density()
    assert list(ld.sites) == ["a", "b"]
    log_prior, log_lik = ld.terms(jnp.array([0.3, 0.9]))
    # sigma is now data: its prior density moves to the likelihood side
    expected_lik = (
        jnp.log(2.0) + stats.norm.logpdf(0.7) + stats.norm.logpdf(Y, 0.3 + 0.9 * X, 0.7).sum()
    )
    np.testing.assert_allclose(log_lik, expected_lik, **TOL)
    np.testing.assert_allclose(log_prior + log_lik, hand_log_joint(**PARAMS), **TOL)
    twice = conditioned.condition({"a": 0.3})
    assert list(twice.log_density().sites) == ["b"]


def test_condition_on_unknown_or_deterministic_site_is_a_model_error():
    with pytest.raises(ModelError, match=r"\['slope'\].*'a', 'b', 'sigma', 'y'"):
        regression(X, Y).condition({"slope": 1.0})
    with pytest.raises(ModelError, match=r"deterministic.*'mean'"):
        regression(X, Y).condition({"mean": X})


# ----- primitives -----------------------------------------------------------------------


def test_deterministic_site_records_its_value():
    tr = regression(X).trace(seed=2)
    assert tr["mean"]["type"] == "deterministic"
    np.testing.assert_allclose(tr["mean"]["value"], tr["a"]["value"] + tr["b"]["value"] * X, **TOL)
    ld = regression(X, Y).log_density()
    assert ld.deterministic == ("mean",) and "mean" not in ld.sites
    values = ld.values(jnp.array([0.3, 0.9, 0.0]))
    np.testing.assert_allclose(values["mean"], 0.3 + 0.9 * X, **TOL)


def test_factor_adds_to_the_log_density():
    @ppl.model
    def with_factor():
        z = ppl.sample("z", dist.Normal())
        ppl.factor("penalty", -3.0 * z**2)

    tr = with_factor().trace()
    assert tr["penalty"]["is_observed"] and isinstance(tr["penalty"]["fn"], dist.Unit)
    ld = with_factor().log_density()
    assert list(ld.sites) == ["z"] and ld.observed == ()
    log_prior, log_lik = ld.terms(jnp.array(0.5)[None])
    np.testing.assert_allclose(log_prior, stats.norm.logpdf(0.5), **TOL)
    np.testing.assert_allclose(log_lik, -0.75, **TOL)


def test_param_is_a_site_but_not_a_latent_variable():
    @ppl.model
    def with_param(y=None):
        c = ppl.param("c", 1.5, constraint=dist.constraints.positive)
        z = ppl.sample("z", dist.Normal(0.0, c))
        ppl.sample("y", dist.Normal(z, 1.0), obs=y)

    tr = with_param(0.2).trace()
    assert tr["c"]["type"] == "param" and tr["c"]["value"] == 1.5
    tr = trace_of(handlers.substitute(with_param(0.2), data={"c": 3.0}))
    assert tr["c"]["value"] == 3.0
    ld = with_param(0.2).log_density()
    assert list(ld.sites) == ["z"]
    expected = stats.norm.logpdf(0.4, 0.0, 1.5) + stats.norm.logpdf(0.2, 0.4, 1.0)
    np.testing.assert_allclose(ld(jnp.array([0.4])), expected, **TOL)


T = 6


@ppl.model
def ar1(y=None):
    """x_t = phi x_{t-1} + sigma eps_t, x_0 = 0, through ppl.scan."""
    phi = ppl.sample("phi", dist.Uniform(-1.0, 1.0))
    sigma = ppl.sample("sigma", dist.HalfNormal(1.0))

    def step(prev, y_t):
        x = ppl.sample("x", dist.Normal(phi * prev, sigma), obs=y_t)
        return x, x

    _, xs = ppl.scan(step, 0.0, y, length=T)
    ppl.deterministic("path", xs)


def test_scan_ar1_shapes():
    tr = ar1().trace()
    assert tr["x"]["value"].shape == (T,) and tr["path"]["value"].shape == (T,)
    np.testing.assert_array_equal(tr["x"]["value"], tr["path"]["value"])
    draws = ar1().prior(num_samples=4)
    assert draws["x"].shape == (4, T) and draws["phi"].shape == (4,)
    ld = ar1().log_density()
    assert ld.sites["x"].shape == (T,) and ld.size == T + 2


def test_scan_ar1_log_density():
    y = jnp.array([0.5, 0.1, -0.4, 0.2, 0.9, 0.6])
    ld = ar1(y).log_density()
    assert list(ld.sites) == ["phi", "sigma"] and ld.observed == ("x",)
    z = jnp.array([0.8, -0.3])
    phi, sigma = jnp.tanh(0.8 / 2), jnp.exp(-0.3)  # -1 + 2 sigmoid(u) = tanh(u / 2)
    prev = jnp.concatenate([jnp.zeros(1), y[:-1]])
    expected = (
        jnp.log(0.5) + jnp.log(0.5 * (1 - phi**2))  # Uniform(-1, 1) and its Jacobian
        + jnp.log(2.0) + stats.norm.logpdf(sigma) - 0.3  # HalfNormal and exp Jacobian
        + stats.norm.logpdf(y, phi * prev, sigma).sum()
    )  # fmt: skip
    np.testing.assert_allclose(ld(z), expected, **TOL)
    np.testing.assert_allclose(ld.values(z)["path"], y, **TOL)


def test_scan_outside_a_model_is_a_model_error():
    def step(x, y):
        return ppl.sample("x", dist.Normal(0.9 * x, 1.0)), None

    with pytest.raises(ModelError, match=r"ppl.scan ran outside inference.*inside a @ppl.model"):
        ppl.scan(step, 0.0, jnp.zeros(3))


def test_param_deterministic_factor_document_ppl_and_pass_everything_on():
    import inspect

    for ours, theirs in [(ppl.param, numpyro.param), (ppl.deterministic, numpyro.deterministic),
                         (ppl.factor, numpyro.factor)]:  # fmt: skip
        assert "numpyro" not in ours.__doc__ and ">>> @ppl.model" in ours.__doc__
        assert list(inspect.signature(ours).parameters) == list(
            inspect.signature(theirs).parameters
        )
    assert "ppl.vi.SVI" in ppl.param.__doc__
    tr = handlers.trace(handlers.seed(lambda: ppl.param("p", 2.0, event_dim=0), 0)).get_trace()
    assert tr["p"]["kwargs"] == {"event_dim": 0} and tr["p"]["value"] == 2.0


# ----- per-site estimator ---------------------------------------------------------------


def test_estimator_is_stored_in_the_site_infer_dict():
    @ppl.model
    def with_estimators():
        ppl.sample("a", dist.Normal(), estimator="reinforce")
        ppl.sample("b", dist.Normal(), estimator="reparam", infer={"note": 1})
        ppl.sample("c", dist.Normal())

    tr = with_estimators().trace()
    assert tr["a"]["infer"]["estimator"] == "reinforce"
    assert tr["b"]["infer"] == {"note": 1, "estimator": "reparam"}
    assert "estimator" not in tr["c"]["infer"]


def test_unknown_estimator_is_rejected():
    @ppl.model
    def bad():
        ppl.sample("a", dist.Normal(), estimator="magic")

    with pytest.raises(OptionError, match=r"site 'a'.*'magic'.*reparam, reinforce, enum, mvd"):
        bad().trace()
    assert issubclass(OptionError, PPLError)


def test_int_seeds_give_jax_keys():
    """`int_key` skips JAX's seeding program for the default threefry keys; the keys must
    be JAX's own (fallback included: negative seeds)."""
    from ppl.core.model import int_key

    for seed in (0, 1, 7, 2**31 - 1, -3):
        ours, theirs = int_key(seed), jax.random.key(seed)
        assert jax.random.key_impl(ours) == jax.random.key_impl(theirs)
        np.testing.assert_array_equal(jax.random.key_data(ours), jax.random.key_data(theirs))


def test_infer_takes_a_bound_model_inside_numpyro_handlers():
    @ppl.model
    def scale_and_mean(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
        sigma = ppl.sample("sigma", dist.HalfNormal(2.0))
        with ppl.plate("n", len(y)):
            ppl.sample("y", dist.Normal(mu, sigma), obs=y)

    y = np.array([1.0, 2.0, 3.0, 4.0])
    conditioned = ppl.handlers.condition(scale_and_mean(y), data={"sigma": 1.0})
    post = ppl.infer(conditioned, "nuts", num_samples=500, num_warmup=300, num_chains=2,
                     seed=0, progress=False)  # fmt: skip
    assert list(post.samples) == ["mu"]
    # sigma fixed at 1: mu | y ~ N(10 / 4.01, 1 / 4.01); 1000 draws, ESS several hundred
    mu = post.samples["mu"]
    assert abs(mu.mean() - 10 / 4.01) < 0.15 and abs(mu.std() - 4.01**-0.5) < 0.08
