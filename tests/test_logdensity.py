"""LogDensity against a log density written by hand, Jacobians included.

The expected values are built from jax.scipy.stats and explicit formulas for
each bijection and its log-Jacobian (Stan reference manual, "Constraint
transforms"); numpyro is never used to compute them. Everything runs in float32,
so values and gradients are compared with rtol/atol 1e-4: the densities are
O(10) and float32 carries about 7 significant digits, so 1e-4 leaves room for
the different order of the sums without hiding a missing term (the smallest
Jacobian term here is O(0.1)).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy import stats
from jax.scipy.special import betaln, gammaln

import ppl
import ppl.examples
from ppl import dist
from ppl.errors import OptionError, PPLError
from ppl.mcmc.method import constrained_values

TOL = dict(rtol=1e-4, atol=1e-4)

ALPHA = jnp.array([1.0, 2.0, 3.0, 0.5])  # Dirichlet concentration, K = 4
ETA = 2.0  # LKJ concentration
X = jnp.array([-1.0, -0.3, 0.2, 0.9, 1.5])
Y = jnp.array([0.3, -1.2, 2.0, 0.7, 1.1])


@ppl.model
def constrained(x, y=None):
    """One site per common constraint; flat layout s, r, p, w(3), v(3), L(1), u = 11."""
    s = ppl.sample("s", dist.HalfNormal(2.0))  # positive: exp
    r = ppl.sample("r", dist.Exponential(1.5))  # positive: exp
    p = ppl.sample("p", dist.Beta(2.0, 3.0))  # unit interval: sigmoid
    w = ppl.sample("w", dist.Dirichlet(ALPHA))  # simplex: stick-breaking, K-1 coords
    v = ppl.sample("v", dist.Normal(0.0, 1.5).expand([3]).to_event(1))  # real vector
    chol = ppl.sample("L", dist.LKJCholesky(2, ETA))  # 2x2 correlation Cholesky: tanh
    u = ppl.sample("u", dist.Uniform(-1.0, 3.0))  # interval: affine sigmoid
    ppl.deterministic("sr", s * r)
    ppl.factor("penalty", -0.5 * p**2)
    loc = v[0] + v[1] * x + v[2] * w[0] + chol[1, 0] + 0.1 * u
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", dist.Normal(loc, s + r), obs=y)


def stick_breaking(y):
    """Stan's simplex transform: R^(K-1) -> K-simplex, and its log-Jacobian."""
    k = y.shape[0] + 1
    z = jax.nn.sigmoid(y - jnp.log(k - 1 - jnp.arange(k - 1)))
    x, remaining, log_jac = [], 1.0, 0.0
    for i in range(k - 1):
        x.append(remaining * z[i])
        log_jac += jnp.log(remaining) + jnp.log(z[i]) + jnp.log1p(-z[i])
        remaining = remaining - x[-1]
    return jnp.stack([*x, remaining]), log_jac


def log_dirichlet(w, alpha):
    return gammaln(alpha.sum()) - gammaln(alpha).sum() + jnp.sum((alpha - 1) * jnp.log(w))


def log_lkj_2x2(t, eta):
    """LKJ(eta) on the one free entry t = L[1, 0] of a 2x2 correlation Cholesky factor:
    p(t) ∝ (1 - t²)^(eta - 1) on (-1, 1), normaliser 2^(2 eta - 1) B(eta, eta)."""
    return (eta - 1) * jnp.log1p(-(t**2)) - (2 * eta - 1) * jnp.log(2.0) - betaln(eta, eta)


def hand_terms(z):
    """(log prior + log-Jacobians, log likelihood + factor, constrained values) at z."""
    s, r = jnp.exp(z[0]), jnp.exp(z[1])
    p = jax.nn.sigmoid(z[2])
    w, jac_w = stick_breaking(z[3:6])
    v = z[6:9]
    t = jnp.tanh(z[9])
    chol = jnp.array([[1.0, 0.0], [t, jnp.sqrt(1 - t**2)]])
    u = -1.0 + 4.0 * jax.nn.sigmoid(z[10])
    log_jac = (
        z[0]  # d exp(z)/dz = exp(z)
        + z[1]
        + jax.nn.log_sigmoid(z[2]) + jax.nn.log_sigmoid(-z[2])  # sigmoid' = p (1 - p)
        + jac_w
        + jnp.log1p(-(t**2))  # tanh' = 1 - tanh²
        + jnp.log(4.0) + jax.nn.log_sigmoid(z[10]) + jax.nn.log_sigmoid(-z[10])
    )  # fmt: skip
    log_prior = (
        jnp.log(2.0) + stats.norm.logpdf(s, 0.0, 2.0)  # half-normal
        + stats.expon.logpdf(r, scale=1 / 1.5)
        + stats.beta.logpdf(p, 2.0, 3.0)
        + log_dirichlet(w, ALPHA)
        + stats.norm.logpdf(v, 0.0, 1.5).sum()
        + log_lkj_2x2(t, ETA)
        + stats.uniform.logpdf(u, -1.0, 4.0)
    )  # fmt: skip
    loc = v[0] + v[1] * X + v[2] * w[0] + t + 0.1 * u
    log_lik = stats.norm.logpdf(Y, loc, s + r).sum() - 0.5 * p**2
    values = dict(s=s, r=r, p=p, w=w, v=v, L=chol, u=u, sr=s * r)
    return log_prior + log_jac, log_lik, values


def hand_log_joint(z):
    log_prior, log_lik, _ = hand_terms(z)
    return log_prior + log_lik


# Compiled once: op-by-op dispatch of these functions costs seconds on 2 cores.
hand_value_and_grad = jax.jit(jax.value_and_grad(hand_log_joint))
hand_terms_jit = jax.jit(hand_terms)
hand_grad_lik = jax.jit(jax.grad(lambda z: hand_terms(z)[1]))


@pytest.fixture(scope="module")
def ld():
    return constrained(X, y=Y).log_density()


def points(n=3):
    """Random unconstrained points; scale 1.5 reaches well into each transform's tails."""
    return [1.5 * jax.random.normal(jax.random.key(i), (11,)) for i in range(n)]


@pytest.mark.parametrize("z", points(), ids=["z0", "z1", "z2"])
def test_value_and_gradient_match_hand_written(ld, z):
    value, grad = jax.jit(ld.value_and_grad)(z)
    expected, expected_grad = hand_value_and_grad(z)
    np.testing.assert_allclose(value, expected, **TOL)
    np.testing.assert_allclose(grad, expected_grad, **TOL)
    np.testing.assert_allclose(jax.jit(ld.potential)(z), -expected, **TOL)


@pytest.mark.parametrize("z", points(2), ids=["z0", "z1"])
def test_terms_split_prior_with_jacobians_from_likelihood_with_factors(ld, z):
    log_prior, log_lik = jax.jit(ld.terms)(z)
    hand_prior, hand_lik, _ = hand_terms_jit(z)
    np.testing.assert_allclose(log_prior, hand_prior, **TOL)
    np.testing.assert_allclose(log_lik, hand_lik, **TOL)
    np.testing.assert_allclose(jax.jit(ld.log_prior)(z), hand_prior, **TOL)
    grad_lik = jax.jit(jax.grad(ld.log_likelihood))(z)
    np.testing.assert_allclose(grad_lik, hand_grad_lik(z), **TOL)


def test_values_are_constrained_and_include_deterministic_sites(ld):
    z = points(1)[0]
    values = jax.jit(ld.values)(z)
    expected = hand_terms_jit(z)[2]
    assert set(values) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(values[name], value, err_msg=name, **TOL)
    constrained_only = jax.jit(ld.constrain)(z)
    assert set(constrained_only) == set(ld.sites) and "sr" not in constrained_only
    assert ld.deterministic == ("sr",)
    assert ld.observed == ("y",)


def test_draws_of_untransformed_sites_are_cut_on_the_host(ld):
    """Without transforms or deterministic sites, a run's draws are sliced with NumPy (no
    program to compile): the same values as the model's own `values`."""

    @ppl.model
    def reals():
        ppl.sample("a", dist.Normal(0.0, 1.0))
        ppl.sample("b", dist.Normal(jnp.zeros((2, 3)), 1.0).to_event(2))

    flat = reals().log_density()
    assert flat.values_are_slices and not ld.values_are_slices  # ld: transforms, "sr"
    zs = np.random.default_rng(0).normal(size=(2, 5, flat.size)).astype(np.float32)
    host = constrained_values(flat, zs)
    compiled = jax.jit(jax.vmap(jax.vmap(flat.values)))(zs)
    assert set(host) == set(compiled) == {"a", "b"}
    for name in host:
        assert isinstance(host[name], np.ndarray)
        np.testing.assert_array_equal(host[name], compiled[name])


def test_constrain_unconstrain_round_trip(ld):
    round_trip = jax.jit(lambda z: ld.unconstrain(ld.constrain(z)))
    for z in points():
        np.testing.assert_allclose(round_trip(z), z, **TOL)
    values = jax.jit(ld.constrain)(points(1)[0])
    again = jax.jit(lambda v: ld.constrain(ld.unconstrain(v)))(values)
    for name in values:
        np.testing.assert_allclose(again[name], values[name], err_msg=name, **TOL)


def test_unflatten_gives_each_site_its_slice(ld):
    z = jnp.arange(11.0)
    parts = ld.unflatten(z)
    np.testing.assert_array_equal(parts["w"], [3.0, 4.0, 5.0])
    np.testing.assert_array_equal(parts["L"], [9.0])
    assert parts["s"].shape == () and parts["u"] == 10.0


def test_site_metadata(ld):
    c = dist.constraints
    expected = {  # name: (shape, unconstrained shape, offset)
        "s": ((), (), 0), "r": ((), (), 1), "p": ((), (), 2), "w": ((4,), (3,), 3),
        "v": ((3,), (3,), 6), "L": ((2, 2), (1,), 9), "u": ((), (), 10),
    }  # fmt: skip
    assert list(ld.sites) == list(expected)
    assert ld.size == 11
    for name, (shape, ushape, offset) in expected.items():
        site = ld.sites[name]
        assert (site.shape, site.unconstrained_shape, site.offset) == (shape, ushape, offset)
        assert site.is_discrete is False
    assert ld.sites["s"].support is c.positive
    assert ld.sites["p"].support is c.unit_interval
    assert ld.sites["w"].support is c.simplex
    assert ld.sites["L"].support is c.corr_cholesky
    assert ld.sites["v"].support.event_dim == 1
    assert (ld.sites["u"].support.lower_bound, ld.sites["u"].support.upper_bound) == (-1, 3)
    assert ld.sites["w"].distribution == "Dirichlet"
    assert ld.discrete_sites == ()


@ppl.model
def dependent_support(y=None):
    """b's support (0, a) depends on another latent value."""
    a = ppl.sample("a", dist.HalfNormal(1.0))
    b = ppl.sample("b", dist.Uniform(0.0, a))
    ppl.sample("y", dist.Normal(b, 1.0), obs=y)


def test_support_that_depends_on_a_latent_value():
    ld = dependent_support(0.4).log_density()

    def hand(z):
        a = jnp.exp(z[0])
        sig = jax.nn.sigmoid(z[1])
        b = a * sig
        log_jac = z[0] + jnp.log(a) + jnp.log(sig) + jnp.log1p(-sig)
        log_prior = jnp.log(2.0) + stats.norm.logpdf(a) - jnp.log(a)
        return log_prior + log_jac + stats.norm.logpdf(0.4, b, 1.0)

    for z in points(2):
        z = z[:2]
        np.testing.assert_allclose(ld(z), hand(z), **TOL)
        np.testing.assert_allclose(jax.grad(ld)(z), jax.grad(hand)(z), **TOL)


@ppl.model
def bounded_by_latent(y):
    """y's support (0, a) depends on a latent value: its check stays in the density."""
    a = ppl.sample("a", dist.HalfNormal(1.0))
    ppl.sample("y", dist.Uniform(0.0, a), obs=y)


def test_bound_data_checked_once_is_scored_without_the_support_check():
    x = jnp.linspace(-1.0, 1.0, 7)
    y = (x > 0).astype(jnp.float32)
    m = ppl.examples.logistic_regression(x[:, None], y)
    ld = m.log_density()
    assert m.checked_data == {"y"}
    unchecked = jax.tree.unflatten(jax.tree.structure(m), jax.tree.leaves(m))
    unchecked.checked_data = frozenset()
    z = jnp.array([0.7, -0.2])
    over = lambda model: ld.tree_unflatten(ld._layout, [model])  # noqa: E731
    np.testing.assert_allclose(ld(z), over(unchecked)(z), **TOL)
    selects = lambda model: str(jax.make_jaxpr(over(model))(z)).count("select_n")  # noqa: E731
    assert selects(m) < selects(unchecked)
    # a support that depends on a latent value is checked in the density itself
    m = bounded_by_latent(0.8)
    ld = m.log_density()
    assert m.checked_data == frozenset()
    with pytest.warns(UserWarning, match="Out-of-support"):
        assert ld(jnp.log(jnp.array([0.5]))) == -jnp.inf
    assert np.isfinite(ld(jnp.log(jnp.array([1.5]))))


@ppl.model
def mixed(y=None):
    """A discrete and an improper site beside a proper continuous one."""
    k = ppl.sample("k", dist.Poisson(3.0))
    x = ppl.sample("x", dist.ImproperUniform(dist.constraints.ordered_vector, (), (3,)))
    s = ppl.sample("s", dist.LogNormal(0.0, 1.0))
    ppl.sample("y", dist.Normal(x + k, s).to_event(1), obs=y)


def test_discrete_site_metadata_and_improper_site():
    ld = mixed(jnp.array([0.0, 1.0, 2.0])).log_density()
    assert ld.discrete_sites == ("k",)
    k = ld.sites["k"]
    assert k.is_discrete and k.shape == () and "int" in k.dtype
    assert k.support is dist.constraints.nonnegative_integer
    assert ld.sites["x"].unconstrained_shape == (3,) and not ld.sites["x"].is_discrete
    # ordered vector: x0 = z0, x_i = x_{i-1} + exp(z_i); flat prior; log-Jacobian z1 + z2
    z = jnp.array([2.0, 0.3, -0.2, 0.5, 0.1])
    x = jnp.cumsum(jnp.array([0.3, jnp.exp(-0.2), jnp.exp(0.5)]))
    s = jnp.exp(0.1)
    expected = (
        stats.poisson.logpmf(2, 3.0)
        + (-0.2 + 0.5)
        + stats.norm.logpdf(jnp.log(s), 0.0, 1.0) - jnp.log(s) + 0.1  # LogNormal + exp Jacobian
        + stats.norm.logpdf(jnp.array([0.0, 1.0, 2.0]), x + 2, s).sum()
    )  # fmt: skip
    np.testing.assert_allclose(ld(z), expected, **TOL)
    np.testing.assert_array_equal(ld.constrain(z)["k"], 2)


def _check_init(ld, strategy, keys):
    """Compiled: init from each key, then the density, gradient and support checks at z."""

    def one(key):
        z, found = ld.init(key, strategy)
        value, grad = ld.value_and_grad(z)
        values = ld.constrain(z)
        inside = jnp.stack([jnp.all(s.support(values[n])) for n, s in ld.sites.items()])
        return z, found, jnp.isfinite(value) & jnp.all(jnp.isfinite(grad)), inside

    return jax.jit(jax.vmap(one))(keys)


# "median" is covered on the smaller model below: on this one its 15 vmapped Dirichlet and
# LKJ draws take ~10 s to compile and test nothing that "prior" does not.
@pytest.mark.parametrize("strategy", ["uniform", "prior"])
def test_init_strategies_give_finite_points_inside_support(ld, strategy):
    z, found, finite, inside = _check_init(ld, strategy, jax.random.split(jax.random.key(0), 4))
    assert z.shape == (4, 11)
    assert np.all(found) and np.all(finite)
    assert np.all(inside), dict(zip(ld.sites, np.asarray(inside).T))
    if strategy == "uniform":
        assert np.all(np.abs(z) < 2.0)
    assert np.unique(np.asarray(z)[:, 0]).size == 4, "different keys give different starts"


@pytest.mark.parametrize("strategy", ["uniform", "prior", "median"])
def test_init_with_discrete_and_improper_sites(strategy):
    ld = mixed(jnp.array([0.0, 1.0, 2.0])).log_density()
    z, found, finite, inside = _check_init(ld, strategy, jax.random.split(jax.random.key(1), 3))
    assert np.all(found) and np.all(finite) and np.all(inside)
    k = np.asarray(z[:, 0])  # the Poisson count: a non-negative integer, stored as a float
    assert np.all(k >= 0) and np.all(k == np.round(k))
    assert np.unique(np.asarray(z[:, 1])).size == 3, "the improper site starts anywhere"


def test_bad_init_strategy_is_an_option_error(ld):
    with pytest.raises(OptionError, match=r"'laplace'.*uniform, prior, median"):
        ld.init(jax.random.key(0), "laplace")
    assert issubclass(OptionError, PPLError)


def test_init_values_set_their_sites_and_leave_dependent_supports_to_the_density():
    ld = dependent_support(0.4).log_density()
    keys = jax.random.split(jax.random.key(0), 3)
    z, found = jax.jit(jax.vmap(lambda k: ld.init(k, {"b": 2.5, "a": 3.0})))(keys)
    values = jax.vmap(ld.constrain)(z)
    assert np.all(found)
    np.testing.assert_allclose(values["a"], 3.0, rtol=1e-6)
    np.testing.assert_allclose(values["b"], 2.5, rtol=1e-6)  # inside (0, a) for this a only
    with pytest.raises(OptionError, match=r"site 'a' lies outside its support Positive"):
        ld.init(jax.random.key(0), {"a": -1.0})


def test_log_density_is_a_pytree_that_jit_accepts(ld):
    """Passed as an argument (not closed over), so one compiled program serves new data."""
    z = points(1)[0]
    f = jax.jit(lambda ld, z: ld.terms(z))
    hand_prior, hand_lik, v = hand_terms_jit(z)
    np.testing.assert_allclose(f(ld, z), (hand_prior, hand_lik), **TOL)
    y_new = Y + 1.0
    ld_new = constrained(X, y=y_new).log_density()
    loc = v["v"][0] + v["v"][1] * X + v["v"][2] * v["w"][0] + v["L"][1, 0] + 0.1 * v["u"]
    lik_new = stats.norm.logpdf(y_new, loc, v["s"] + v["r"]).sum() - 0.5 * v["p"] ** 2
    np.testing.assert_allclose(f(ld_new, z), (hand_prior, lik_new), **TOL)
    assert f._cache_size() == 1, "new data of the same shapes reuses the compiled program"
    z_batch = jnp.stack(points())
    np.testing.assert_allclose(
        jax.jit(jax.vmap(ld))(z_batch), jax.jit(jax.vmap(hand_log_joint))(z_batch), **TOL
    )


class _Scale:
    """A mutable model argument: a LogDensity read from it must not be reused."""

    def __init__(self, value):
        self.value = value


@ppl.model
def scaled(scale, y=None):
    mu = ppl.sample("mu", dist.Normal(0.0, scale.value if isinstance(scale, _Scale) else scale))
    ppl.sample("y", dist.Normal(mu, 1.0), obs=y)


def test_log_density_built_once_for_immutable_arguments():
    bound = scaled(2.0, y=Y)
    assert bound.log_density() is bound.log_density()
    mutable = scaled(_Scale(2.0), y=Y)
    assert mutable.log_density() is not mutable.log_density()


def test_data_given_as_a_python_list_scores_as_an_array():
    @ppl.model
    def located(y):
        mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
        with ppl.plate("n", 4):
            ppl.sample("y", dist.Normal(mu, 1.0), obs=y)

    z = jnp.array([0.5])
    as_list = located([1.0, 2.0, 3.0, 4.0]).log_density()(z)
    as_array = located(jnp.array([1.0, 2.0, 3.0, 4.0])).log_density()(z)
    np.testing.assert_allclose(as_list, as_array)
