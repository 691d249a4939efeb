"""Bad input raises a ppl error that names what is at fault and how to fix it.

Every check here must fire before a sampler is built or compiled: the autouse
fixture `no_sampler` makes the MCMC kernels fail loudly, so a check that only
triggered inside compiled code would fail these tests with the wrong error.
"""

import contextlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.errors import DataError, InferenceError, ModelError, OptionError, PPLError
from ppl.infer import registry
from ppl.infer.method import Method

X = jnp.linspace(-1.0, 1.0, 6)
Y = jnp.array([-0.8, -0.1, 0.3, 0.4, 1.2, 1.9])
FAST = dict(num_samples=10, num_warmup=10, num_chains=1, progress=False)


@ppl.model
def regression(x, y=None):
    a = ppl.sample("a", dist.Normal(0.0, 2.0))
    b = ppl.sample("b", dist.Normal(0.0, 2.0))
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", dist.Normal(a + b * x, 1.0), obs=y)


@pytest.fixture(autouse=True)
def no_sampler(monkeypatch):
    """Building a sampler means every check has passed; here that is a test failure."""

    def kernel(self, logdensity, num_warmup):
        raise AssertionError("reached the sampler: the bad input was not caught up front")

    monkeypatch.setattr(ppl.mcmc.NUTS, "kernel", kernel)
    monkeypatch.setattr(ppl.mcmc.RWMH, "kernel", kernel)


@contextlib.contextmanager
def raises(kind, match):
    """pytest.raises for a PPLError subclass whose message matches and mentions no tracer."""
    assert issubclass(kind, PPLError)
    with pytest.raises(kind, match=match) as info:
        yield info
    message = str(info.value)
    assert "Tracer" not in message and "jax.errors" not in message, message


def test_error_classes_share_one_base():
    for kind in (ModelError, DataError, OptionError, InferenceError):
        assert issubclass(kind, PPLError)


# ----- methods and options ---------------------------------------------------------------


def test_unknown_method_lists_the_valid_ones():
    with raises(OptionError, r"unknown method 'nutz' \(did you mean 'nuts'\?\)") as info:
        ppl.infer(regression(X, Y), method="nutz")
    assert all(name in str(info.value) for name in ppl.method_names())
    with raises(OptionError, "method must be a name .* or a method object.*got int"):
        ppl.infer(regression(X, Y), method=3)
    with raises(OptionError, r"pass an instance, e.g. method=NUTS\(\)"):
        ppl.infer(regression(X, Y), method=ppl.mcmc.NUTS)


def test_unknown_option_lists_the_valid_ones():
    valid = r"num_samples, num_warmup, num_chains, seed, progress.*target_accept"
    with raises(OptionError, r"unknown option 'num_sample' \(did you mean 'num_samples'\?\).*"):
        ppl.infer(regression(X, Y), num_sample=100)
    with raises(OptionError, r"unknown option 'thin' for infer\(method='nuts'\).*" + valid):
        ppl.infer(regression(X, Y), thin=2)


def test_numpyro_run_options_say_where_ppl_has_them():
    with raises(OptionError, r"no option 'init_params'.*method=ppl\.mcmc\.RWMH\(init=\{"):
        ppl.infer(regression(X, Y), method="rwmh", init_params={"a": 0.0})
    with raises(OptionError, r"'extra_fields'.*post\.sample_stats \(diverging, energy, tree_dep"):
        ppl.infer(regression(X, Y), extra_fields=("diverging",))
    with raises(OptionError, r"chain_method='parallel' is NumPyro's.*chain_method='sharded'"):
        ppl.infer(regression(X, Y), chain_method="parallel")
    with raises(OptionError, r"chain_method='sequential' is NumPyro's.*'vectorized'"):
        ppl.infer(regression(X, Y), chain_method="sequential")


def test_init_values_are_checked_against_the_model():
    def start(init):
        ppl.infer(regression(X, Y), method=ppl.mcmc.NUTS(init=init), **FAST)

    with raises(OptionError, r"init names 'aa'.* \(did you mean 'a'\?\); latent sites are"):
        start({"aa": 0.0})
    with raises(OptionError, r"init value of site 'b' has shape \(2,\), but the site has shape"):
        start({"b": [0.0, 1.0]})
    with raises(OptionError, r"NUTS: init value of site 'a' must be finite numbers, got 'x'"):
        ppl.mcmc.NUTS(init={"a": "x"})

    @ppl.model
    def scale(y):
        s = ppl.sample("s", dist.HalfNormal(1.0))
        ppl.sample("y", dist.Normal(0.0, s), obs=y)

    with raises(OptionError, r"init value of site 's' lies outside its support Positive"):
        ppl.infer(scale(Y), method=ppl.mcmc.RWMH(init={"s": -1.0}), **FAST)


def test_numpyro_init_strategy_functions_are_refused_when_the_method_is_built():
    from numpyro.infer import init_to_median, init_to_value

    with raises(OptionError, r"NUTS: init=init_to_median is not .*init='median'.*dict of"):
        ppl.mcmc.NUTS(init=init_to_median)
    with raises(OptionError, r"RWMH: init=init_to_value is not .*init=\{'mu': 0.0\}"):
        ppl.mcmc.RWMH(init=init_to_value(values={"a": 0.0}))


def test_method_option_given_to_infer_says_where_it_belongs():
    with raises(OptionError, r"'target_accept' is an option of the method.*NUTS\(target_accept="):
        ppl.infer(regression(X, Y), target_accept=0.9)
    with raises(OptionError, r"ppl\.mcmc\.RWMH\(target_accept="):
        ppl.infer(regression(X, Y), method="rwmh", target_accept=0.3)


@pytest.mark.parametrize("name", ["num_samples", "num_chains"])
@pytest.mark.parametrize("value", [0, -3, True, 10.0, 2.5, None, "100"])
def test_num_samples_and_num_chains_must_be_positive_integers(name, value):
    with raises(OptionError, rf"{name} must be an integer >= 1, got {re.escape(repr(value))}"):
        ppl.infer(regression(X, Y), **{name: value})


def test_other_common_options_are_checked():
    with raises(OptionError, r"num_warmup must be an integer >= 0, got -1"):
        ppl.infer(regression(X, Y), num_warmup=-1)
    with raises(OptionError, r"seed must be an integer or a jax.random.key.*got 'abc'"):
        ppl.infer(regression(X, Y), seed="abc")
    with raises(OptionError, r"progress must be True, False or None"):
        ppl.infer(regression(X, Y), progress="yes")


@pytest.mark.parametrize(
    "seed", [3, np.int64(3), jax.random.key(3), jax.random.PRNGKey(3), jnp.array(3)]
)
def test_every_kind_of_seed_passes_the_checks(seed):
    with pytest.raises(AssertionError, match="reached the sampler"):
        ppl.infer(regression(X, Y), seed=seed, **FAST)


def test_a_batch_of_keys_is_not_a_seed():
    with raises(OptionError, r"seed must be an integer or a jax.random.key \(one key\)"):
        ppl.infer(regression(X, Y), seed=jax.random.split(jax.random.key(0), 2))


def test_method_objects_check_their_options():
    with raises(OptionError, r"target_accept=1.5 must be a number in \(0, 1\)"):
        ppl.mcmc.NUTS(target_accept=1.5)
    with raises(OptionError, r"max_tree_depth=True must be an integer >= 1"):
        ppl.mcmc.NUTS(max_tree_depth=True)
    with raises(OptionError, r"step_size='a' must be a positive number"):
        ppl.mcmc.NUTS(step_size="a")
    with raises(OptionError, r"NUTS: unknown init strategy 'zero'.*uniform, prior, median"):
        ppl.mcmc.NUTS(init="zero")
    with raises(OptionError, r"NUTS: step_size is NaN"):
        ppl.mcmc.NUTS(step_size=float("nan"))


@pytest.mark.parametrize(
    "make, typo, meant",
    [
        (lambda **kw: ppl.sgmcmc.SGLD(**kw), "stepsize", "step_size"),
        (lambda **kw: ppl.smc.Tempered(**kw), "num_particle", "num_particles"),
        (lambda **kw: ppl.gp.Exact(**kw), "num_step", "num_steps"),
        (lambda **kw: ppl.mcmc.NUTS(**kw), "target_acept", "target_accept"),
        (lambda **kw: ppl.smc.PMMH(**kw), "num_partcles", "num_particles"),
        (lambda **kw: ppl.sgmcmc.Structured(base=ppl.sgmcmc.SGLD(), **kw), "group", "groups"),
    ],
)
def test_misspelt_method_option_suggests_the_right_one(make, typo, meant):
    with raises(
        OptionError, rf"unknown option '{typo}' \(did you mean '{meant}'\?\); options are "
    ):
        make(**{typo: 1})


def test_every_method_class_checks_its_constructor_arguments():
    class Plain(Method):  # not a dataclass: its own __init__ is what is checked
        def __init__(self, num_particles=10):
            self.num_particles = num_particles

    assert Plain(num_particles=3).num_particles == 3
    with raises(OptionError, r"Plain: unknown option 'num_particle' \(did you mean"):
        Plain(num_particle=3)
    with raises(OptionError, r"Exact: too many positional arguments; give options by keyword"):
        ppl.gp.Exact(10)


# ----- the model argument ----------------------------------------------------------------


def test_unbound_model_plain_function_or_other_object():
    with raises(ModelError, r"'regression'.* not bound to data yet.*regression\(x, y=\.\.\.\)"):
        ppl.infer(regression)

    def plain(x):
        ppl.sample("z", dist.Normal())

    with raises(ModelError, r"'plain' is a plain function.*ppl\.model\(plain\)\(x\)"):
        ppl.infer(plain)
    with raises(ModelError, r"expected a bound model, got dict"):
        ppl.infer({"a": 1})
    with raises(ModelError, r"ppl\.model expects a function, got int"):
        ppl.model(3)


# ----- observed data ---------------------------------------------------------------------


@ppl.model
def column_mean(x, y=None):
    """The classic silent broadcast: the mean is a column (N, 1), the data a vector (N,)."""
    a = ppl.sample("a", dist.Normal(0.0, 2.0))
    ppl.sample("y", dist.Normal(a + x[:, None], 1.0), obs=y)


@ppl.model
def column_mean_in_plate(x, y=None):
    a = ppl.sample("a", dist.Normal(0.0, 2.0))
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", dist.Normal(a + x[:, None], 1.0), obs=y)


def test_observed_shape_that_does_not_broadcast():
    with raises(DataError, r"regression: observed site 'y' has data of shape \(5,\).*\(6,\)"):
        ppl.infer(regression(X, Y[:5]))


def test_observed_shape_that_broadcasts_silently():
    shapes = r"data of shape \(6,\).*distribution's shape \(6, 1\).*broadcast to \(6, 6\)"
    with raises(DataError, r"observed site 'y' has " + shapes):
        ppl.infer(column_mean(X, Y))
    with raises(DataError, r"'y' has data of shape \(6,\).*distribution's shape \(6, 6\)"):
        ppl.infer(column_mean_in_plate(X, Y))
    with raises(DataError, r"'y' has data of shape \(6, 1\).*distribution's shape \(6,\)"):
        ppl.infer(regression(X, Y[:, None]))


def test_data_with_extra_batch_dims_or_a_scalar_is_accepted():
    @ppl.model
    def scalar_obs(y):
        a = ppl.sample("a", dist.Normal())
        with ppl.plate("data", 4):
            ppl.sample("y", dist.Normal(a, 1.0), obs=y)

    @ppl.model
    def no_plate(y):
        a = ppl.sample("a", dist.Normal())
        ppl.sample("y", dist.Normal(a, 1.0), obs=y)

    assert list(scalar_obs(1.0).log_density().sites) == ["a"]
    assert list(no_plate(Y).log_density().sites) == ["a"]


def test_full_data_in_a_subsampled_plate_says_to_index_it():
    @ppl.model
    def unindexed(y):
        a = ppl.sample("a", dist.Normal())
        with ppl.plate("data", 6, subsample_size=2):
            ppl.sample("y", dist.Normal(a, 1.0), obs=y)

    with raises(DataError, r"'y' has data of shape \(6,\).*\(2,\).*obs=data\[idx\]"):
        ppl.infer(unindexed(Y))


@ppl.model
def local_means(y, batch=None):
    m = ppl.sample("m", dist.Normal())
    with ppl.plate("data", 6, subsample_size=batch) as idx:
        z = ppl.sample("z", dist.Normal(m, 1.0))
        ppl.sample("y", dist.Normal(z, 1.0), obs=y[idx])


@pytest.mark.parametrize("method", ["nuts", "smc"])
def test_full_data_methods_refuse_a_subsampled_plate(method):
    # each step would score one fixed minibatch, scaled up: a wrong posterior
    options = {**FAST, "num_warmup": None} if method == "smc" else FAST
    with raises(ModelError, r"scores all the data at every step, but plate 'data' draws a "
                r"minibatch of 2 of its 6 .*subsample_size=None.*'sgld'"):  # fmt: skip
        ppl.infer(local_means(Y, 2), method, **options)


@pytest.mark.parametrize("method", ["sgld", ppl.vi.SVI(num_steps=2)])
def test_per_point_latents_of_a_subsampled_plate_need_a_dsl_guide(method):
    options = FAST if method == "sgld" else {**FAST, "num_warmup": None}
    with raises(ModelError, r"site 'z' lies in plate 'data', which draws a minibatch of 2"):
        ppl.infer(local_means(Y, 2), method, **options)


def test_nan_and_inf_in_observed_data_are_counted():
    bad = Y.at[1].set(jnp.nan).at[4].set(jnp.inf)
    with raises(DataError, r"regression: observed site 'y' has 2 non-finite value\(s\).* of 6"):
        ppl.infer(regression(X, bad))
    with raises(DataError, r"'y' has 1 non-finite"):
        ppl.infer(regression(X, np.asarray(Y.at[0].set(-np.inf))))


def test_nan_hidden_by_obs_mask_is_allowed():
    @ppl.model
    def missing(x, y, mask):
        a = ppl.sample("a", dist.Normal(0.0, 2.0))
        with ppl.plate("data", x.shape[0]):
            ppl.sample("y", dist.Normal(a + x, 1.0), obs=y, obs_mask=mask)

    y = Y.at[2].set(jnp.nan)
    ld = missing(X, y, jnp.isfinite(y)).log_density()
    value, grad = ld.value_and_grad(jnp.zeros(ld.size))
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    hides_the_wrong_one = jnp.isfinite(y).at[2].set(True).at[0].set(False)
    with raises(DataError, r"'y_observed' has 1 non-finite"):
        ppl.infer(missing(X, y, hides_the_wrong_one))


def test_observed_data_outside_its_support_is_named():
    @ppl.model
    def coin(y, mask=True):
        p = ppl.sample("p", dist.Beta(1.0, 1.0))
        with ppl.plate("flips", y.shape[0]):
            ppl.sample("y", dist.Bernoulli(p).mask(mask), obs=y)

    flips = jnp.array([0.0, 1.0, 2.0, 0.5])
    with raises(DataError, r"coin: observed site 'y' has 2 value\(s\) outside the support "):
        ppl.infer(coin(flips))
    # entries masked out may hold anything (e.g. padding)
    ld = coin(flips, jnp.array([True, True, False, False])).log_density()
    assert np.isfinite(ld(jnp.zeros(1)))


def test_checks_still_apply_when_the_model_is_built_under_jit():
    """Building a model inside jit (e.g. vmapping over datasets) checks shapes, no tracer."""

    def log_density_at_zero(y):
        return regression(X, y).log_density()(jnp.zeros(2))

    with raises(DataError, r"'y' has data of shape \(5,\)"):
        jax.jit(log_density_at_zero)(Y[:5])
    assert np.isfinite(jax.jit(log_density_at_zero)(Y))


# ----- the model itself ------------------------------------------------------------------


@ppl.model
def with_count(y=None):
    k = ppl.sample("k", dist.Poisson(3.0))
    ppl.sample("y", dist.Normal(k, 1.0), obs=y)


def test_discrete_latent_site_given_to_nuts():
    site = r"with_count: site 'k' \(Poisson, support .*\) is discrete"
    with raises(
        ModelError,
        site + r", and method 'nuts' samples continuous densities only.*Marginalise it out",
    ):
        ppl.infer(with_count(1.0), **FAST)


def test_enumerate_mark_under_nuts_is_named():
    @ppl.model
    def marked(y=None):
        k = ppl.sample("k", dist.Bernoulli(0.3), infer={"enumerate": "parallel"})
        ppl.sample("y", dist.Normal(k, 1.0), obs=y)

    with raises(ModelError, r"infer=\{'enumerate': ...\} on \['k'\] asks for NumPyro's enum"):
        ppl.infer(marked(1.0), **FAST)


def test_discrete_site_error_suggests_methods_that_handle_discrete_sites(monkeypatch):
    class Gibbs(Method):
        handles_discrete = True

    monkeypatch.setitem(registry._METHODS, "gibbs", Gibbs)
    with raises(ModelError, r"site 'k'.*a method that handles discrete sites \(gibbs[^)]*\)"):
        ppl.infer(with_count(1.0), **FAST)


def test_model_with_no_latent_sites():
    @ppl.model
    def all_observed(y):
        ppl.sample("y", dist.Normal(0.0, 1.0), obs=y)

    with raises(ModelError, r"all_observed has no latent sites.*nothing to infer"):
        ppl.infer(all_observed(0.3), **FAST)


def test_duplicate_site_names():
    @ppl.model
    def twice():
        ppl.sample("z", dist.Normal())
        ppl.sample("z", dist.Normal())

    def numpyro_twice():  # the same check covers plain NumPyro functions
        ppl.sample("w", dist.Normal())
        ppl.deterministic("w", 1.0)

    with raises(ModelError, r"twice: two sites are named 'z'"):
        ppl.infer(twice(), **FAST)
    with raises(ModelError, r"numpyro_twice: two sites are named 'w'"):
        ppl.model(numpyro_twice)().trace()


def test_site_names_must_be_strings():
    @ppl.model
    def numbered():
        ppl.sample(1, dist.Normal())

    with raises(ModelError, r"site names must be strings, got 1 \(int\)"):
        numbered().trace()


def test_improper_prior_has_no_prior_draws():
    @ppl.model
    def flat():
        ppl.sample("x", dist.ImproperUniform(dist.constraints.real, (), ()))

    with raises(ModelError, r"\['x'\] have an improper prior"):
        flat().prior(3)
    assert list(flat().log_density().sites) == ["x"]


# ----- plates ----------------------------------------------------------------------------


def test_subsample_size_larger_than_the_plate():
    @ppl.model
    def too_big(y):
        a = ppl.sample("a", dist.Normal())
        with ppl.plate("data", 6, subsample_size=10) as idx:
            ppl.sample("y", dist.Normal(a, 1.0), obs=y[idx])

    with raises(ModelError, r"plate 'data': subsample_size=10 exceeds its size 6"):
        ppl.infer(too_big(Y), **FAST)


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_subsample_size_must_be_a_positive_integer(bad):
    with raises(ModelError, rf"plate 'data': subsample_size={bad!r} must be a positive integer"):
        ppl.plate("data", 6, subsample_size=bad)


def test_plate_size_and_dim_are_checked():
    with raises(ModelError, r"plate 'p': size=0 must be a positive integer"):
        ppl.plate("p", 0)
    with raises(ModelError, r"plate 'p': dim=1 must be a negative integer"):
        ppl.plate("p", 3, dim=1)


def test_batch_shape_that_does_not_fit_its_plate_names_the_site():
    @ppl.model
    def misfit():
        with ppl.plate("groups", 5):
            ppl.sample("theta", dist.Normal(jnp.zeros(3), 1.0))

    with raises(ModelError, r"site 'theta' \(Normal, batch shape \(3,\).*'groups' \(size 5"):
        ppl.infer(misfit(), **FAST)


def test_invalid_parameter_is_named_with_its_site():
    @ppl.model
    def bad_scale(scale_tril):
        ppl.sample("x", dist.MultivariateNormal(jnp.zeros(2), scale_tril=scale_tril))

    upper = jnp.array([[1.0, 0.5], [0.0, 1.0]])  # not lower triangular
    with raises(ModelError, r"bad_scale: site 'x': MultivariateNormal got an invalid scale_tril"):
        ppl.infer(bad_scale(upper))
    assert bad_scale(jnp.eye(2)).log_density().size == 2


def test_traced_parameters_cost_no_eager_compilations():
    """NumPyro checks a new distribution's parameters under `ensure_compile_time_eval`; on
    traced ones that decides nothing but compiled each constant part of the check eagerly
    (21 programs here). A bound model skips those checks (concrete ones still run)."""

    @ppl.model
    def gaussian(scale_tril):
        ppl.sample("x", dist.MultivariateNormal(jnp.zeros(7), scale_tril=scale_tril))

    def value(ld, z):  # the log density as an argument: its data traced, as in ppl's programs
        return ld.value_and_grad(z)[0]

    ld, z = gaussian(jnp.eye(7) * 2.0).log_density(), jnp.zeros(7)
    compiled = []

    def listen(event, duration, **kwargs):
        if event.endswith("backend_compile_duration"):
            compiled.append(kwargs.get("fun_name"))

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        log_p = jax.jit(value)(ld, z)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert compiled == ["jit(value)"]
    expected = dist.MultivariateNormal(z, scale_tril=jnp.eye(7) * 2.0).log_prob(z)
    np.testing.assert_allclose(log_p, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="got invalid scale_tril"):  # concrete, eager: checked
        with ppl.handlers.seed(rng_seed=0):
            gaussian(-jnp.eye(7))()


def test_scan_step_that_returns_no_pair_or_changes_its_carry():
    def no_pair(x, y):
        x = ppl.sample("x", dist.Normal(0.9 * x, 1.0))
        ppl.sample("y", dist.Normal(x, 0.5), obs=y)
        return x

    def growing(x, y):
        x = ppl.sample("x", dist.Normal(0.9 * x, 1.0).expand([2]).to_event(1))
        ppl.sample("y", dist.Normal(x.sum(), 0.5), obs=y)
        return x, None

    @ppl.model
    def walk(step, ys):
        ppl.scan(step, 0.0, ys)

    with raises(ModelError, r"step function 'no_pair' must return a pair .*`return x, None`"):
        ppl.infer(walk(no_pair, Y))
    with raises(ModelError, r"'growing' returns a carry shaped \(2,\), but .* shaped \(\)"):
        ppl.infer(walk(growing, Y))


def test_data_outside_the_support_is_named_for_scalar_and_matrix_data():
    @ppl.model
    def counts(k):
        p = ppl.sample("p", dist.Beta(1.0, 1.0))
        ppl.sample("k", dist.Binomial(10, p), obs=k)

    with raises(DataError, r"'k' has 1 value\(s\) outside the support of its BinomialProbs.*11"):
        ppl.infer(counts(11))
    with raises(DataError, r"'k' has 1 value\(s\) outside .* e.g. -6"):
        ppl.infer(counts(np.array([[1, 2], [3, -6]])))


def test_a_mask_computed_in_the_model_is_left_to_the_density():
    @ppl.model
    def masked(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
        with ppl.plate("d", 5):
            ppl.sample("y", dist.Normal(mu, 1.0).mask(~jnp.isnan(y)), obs=y)

    ld = masked(np.array([1.0, 2.0, np.nan, 3.0, 4.0])).log_density()
    value, grad = ld.value_and_grad(jnp.zeros(1))
    assert np.isfinite(value) and np.isfinite(grad).all()


def test_categorical_data_must_be_integers():
    @ppl.model
    def categories(y):
        p = ppl.sample("p", dist.Dirichlet(jnp.ones(3)))
        with ppl.plate("n", 3):
            ppl.sample("y", dist.Categorical(p), obs=y)

    with raises(DataError, r"'y' \(CategoricalProbs\) has data of dtype float32.*astype\(int\)"):
        ppl.infer(categories(np.array([0.0, 1.0, 2.0])))


def test_infer_inside_a_jax_transformation_says_to_call_it_outside():
    def fit(y):
        return ppl.infer(regression(X, y)).samples["a"].mean()

    with raises(PPLError, r"inside jax.jit, vmap or grad .* call it outside"):
        jax.jit(fit)(Y)


def test_plates_sharing_a_dim_a_plate_named_like_a_site_and_a_draw_outside_inference():
    @ppl.model
    def same_dim(y):
        with ppl.plate("rows", 4, dim=-1), ppl.plate("cols", 3, dim=-1):
            ppl.sample("y", dist.Normal(0.0, 1.0), obs=y)

    with raises(ModelError, r"plate 'cols': dim=-1 is taken by the enclosing plate 'rows'"):
        ppl.infer(same_dim(np.zeros((4, 3))))

    @ppl.model
    def clash(y):
        a = ppl.sample("a", dist.Normal())
        with ppl.plate("y", 6):
            ppl.sample("y", dist.Normal(a, 1.0), obs=y)

    with raises(ModelError, r"clash: a site and a plate are both named 'y'"):
        ppl.infer(clash(Y))
    with raises(ModelError, r"ppl.sample\('a'\) ran outside inference.*model.prior"):
        regression(X, Y)()  # a bound model called directly
