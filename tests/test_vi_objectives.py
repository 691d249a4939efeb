"""The objectives of ppl.vi against closed forms on conjugate Normal-Normal models.

z ~ N(mu0, 1), x | z ~ N(z, 1): log p(x) = log N(x; mu0, √2) and the posterior is
N((x + mu0)/2, √0.5), so bounds, their order and their gradients are known exactly.

Tolerances: a mean of N independent draws has standard error sd/√N; estimates must lie
within TOL_SE = 4.5 standard errors of the exact value (false alarm ~1e-5 per check), and
an ordering a < b is asserted only as mean(b) - mean(a) > TOL_SE · (its standard error),
so it is a real gap and not noise. Pathwise identities (same random draws) are checked
to float precision.
"""

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

N = 8000  # draws per objective
TOL_SE = 4.5
X = 1.0
LOG_EVIDENCE = float(jax.scipy.stats.norm.logpdf(X, 0.0, np.sqrt(2.0)))
positive = biject_to(constraints.positive)


def draws(objectives, model, guide, params, seed, estimators=None):
    """N draws of (value, gradient) of each objective; the objectives share each draw's
    key, and one compiled function evaluates them all."""

    def one(key):
        out = []
        for objective in objectives:

            def surrogate(p, objective=objective):
                o = objective.surrogate(key, p, model, guide, jnp.zeros(()), estimators)
                return o.surrogate, o.value

            grad, value = jax.grad(surrogate, has_aux=True)(params)
            out.append((value, grad))
        return out

    keys = jax.random.split(jax.random.key(seed), N)
    return jax.tree.map(np.asarray, jax.jit(jax.vmap(one))(keys))


def se(x):
    return x.std() / np.sqrt(x.size)


def assert_close(x, exact):
    assert abs(x.mean() - exact) < TOL_SE * se(x), (x.mean(), exact, se(x))


def assert_below(a, b):
    """E[a] < E[b] by more than Monte Carlo error. se(b - a) is right for independent
    draws and for paired ones (objectives evaluated with the same keys), where it is
    smaller."""
    assert (b - a).mean() > TOL_SE * se(b - a), (a.mean(), b.mean(), se(b - a))


@ppl.model
def normal_model(x):
    z = ppl.sample("z", dist.Normal(0.0, 1.0))
    ppl.sample("x", dist.Normal(z, 1.0), obs=x)


def normal_guide(x, m=0.2, s=0.5, estimator=None):
    """Too narrow and off-centre (the posterior is N(0.5, 0.71)), so bounds differ."""
    m = ppl.param("m", m)
    s = ppl.param("s", s, constraint=constraints.positive)
    ppl.sample("z", dist.Normal(m, s), estimator=estimator)


def elbo_exact(m, s, beta=1.0):
    """β E_q[log N(x; z, 1)] + E_q[log N(z; 0, 1)] + H[q] for q = N(m, s)."""
    log_lik = -0.5 * jnp.log(2 * jnp.pi) - ((X - m) ** 2 + s**2) / 2
    log_prior = -0.5 * jnp.log(2 * jnp.pi) - (m**2 + s**2) / 2
    return beta * log_lik + log_prior + 0.5 * jnp.log(2 * jnp.pi * jnp.e * s**2)


# ----- ELBO <= IWAE(K) <= IWAE(2K) <= log p(x) -------------------------------------


RENYI_ALPHAS = (-1.0, -0.5, 0.0, 0.5, 0.9, 1.0)


@pytest.fixture(scope="module")
def normal():
    model, guide = normal_model(X), ppl.BoundModel(normal_guide, (X,))
    params = vi.init_params(vi.ELBO(), jax.random.key(0), model, guide)
    objectives = {
        "elbo": vi.ELBO(),
        "iwae2": vi.IWAE(num_particles=2),
        "iwae4": vi.IWAE(num_particles=4),
        "vimco4": vi.VIMCO(num_particles=4),
        **{f"renyi{a}": vi.Renyi(alpha=a, num_particles=4) for a in RENYI_ALPHAS},
        "renyi_small": vi.Renyi(alpha=1e-4, num_particles=4),
        "elbo4": vi.ELBO(num_particles=4),
    }
    out = draws(list(objectives.values()), model, guide, params, 0)
    return params, {name: value for name, (value, _) in zip(objectives, out)}


def test_elbo_matches_closed_form(normal):
    _, values = normal
    assert_close(values["elbo"], float(elbo_exact(0.2, 0.5)))


def test_bounds_are_ordered(normal):
    _, v = normal
    assert_below(v["elbo"], v["iwae2"])
    assert_below(v["iwae2"], v["iwae4"])
    assert_below(v["iwae4"], np.full(N, LOG_EVIDENCE))


def test_vimco_is_iwae_with_leave_one_out_baselines(normal):
    _, v = normal
    np.testing.assert_allclose(v["vimco4"], v["iwae4"], rtol=1e-6)
    assert vi.VIMCO().baseline == "leave_one_out" and vi.VIMCO().is_bound


def test_renyi_limits_and_monotone_in_alpha(normal):
    _, v = normal
    np.testing.assert_allclose(v["renyi0.0"], v["iwae4"], rtol=1e-6)  # alpha = 0 is IWAE
    np.testing.assert_allclose(v["renyi_small"], v["iwae4"], atol=1e-3)  # alpha -> 0
    np.testing.assert_allclose(v["renyi1.0"], v["elbo4"], rtol=1e-6)  # alpha = 1 is the ELBO
    # for every draw the estimate is a power mean of the weights, non-increasing in alpha
    stacked = np.stack([v[f"renyi{a}"] for a in RENYI_ALPHAS])
    assert np.all(np.diff(stacked, axis=0) <= 1e-5)
    assert_below(v["renyi0.5"], v["renyi0.0"])
    assert vi.Renyi(alpha=0.5).is_bound and not vi.Renyi(alpha=-0.5).is_bound


# ----- Rényi gradient, exact by enumeration on a Bernoulli latent ------------------


@ppl.model
def bernoulli_model(x):
    z = ppl.sample("z", dist.Bernoulli(0.3))
    ppl.sample("x", dist.Normal(2.0 * z, 1.0), obs=x)


def bernoulli_guide(x):
    ppl.sample("z", dist.Bernoulli(logits=ppl.param("t", 0.2)))


def bernoulli_expected(f, t, k):
    """E over K iid z_k ~ Bernoulli(sigmoid(t)) of f(log weights): a sum over 2^K terms."""
    q1 = jax.nn.sigmoid(t)
    q = jnp.array([1 - q1, q1])
    log_p = jnp.log(jnp.array([0.7, 0.3])) + jax.scipy.stats.norm.logpdf(X, 2.0 * jnp.arange(2))
    log_w = log_p - jnp.log(q)
    total = 0.0
    for c in itertools.product([0, 1], repeat=k):
        c = jnp.array(c)
        total += jnp.prod(q[c]) * f(log_w[c])
    return total


def test_renyi_gradient_by_enumeration_is_exact():
    alpha, k = 0.5, 3
    model, guide = bernoulli_model(X), ppl.BoundModel(bernoulli_guide, (X,))
    objective = vi.Renyi(alpha=alpha, num_particles=k)
    params = vi.init_params(objective, jax.random.key(0), model, guide)

    def renyi(log_w):
        return (jax.nn.logsumexp((1 - alpha) * log_w) - jnp.log(k)) / (1 - alpha)

    exact = jax.jit(jax.value_and_grad(lambda t: bernoulli_expected(renyi, t, k)))(params["t"])
    [(value, grad)] = draws([objective], model, guide, params, 5, {"z": "enum"})
    np.testing.assert_allclose(value, exact[0], rtol=1e-5)
    np.testing.assert_allclose(grad["t"], exact[1], rtol=1e-4)  # every draw: no variance


# ----- reweighted wake-sleep ---------------------------------------------------------


@ppl.model
def learnable_prior_model(x):
    mu0 = ppl.param("mu0", 0.0)
    z = ppl.sample("z", dist.Normal(mu0, 1.0))
    ppl.sample("x", dist.Normal(z, 1.0), obs=x)


@pytest.fixture(scope="module")
def wake_sleep():
    model = learnable_prior_model(X)
    at_posterior = ppl.BoundModel(normal_guide, (X, 0.5, np.sqrt(0.5)))  # mu0 = 0
    off = ppl.BoundModel(normal_guide, (X, -0.3, 1.2))
    objectives = [vi.RWS(num_particles=4), vi.WakeP(num_particles=4), vi.WakeQ(num_particles=4)]
    params = vi.init_params(objectives[0], jax.random.key(0), model, at_posterior)
    exact = draws(objectives, model, at_posterior, params, 1)
    params_off = vi.init_params(objectives[0], jax.random.key(0), model, off)
    far = draws([vi.RWS(num_particles=64)], model, off, params_off, 2)[0]
    return params_off, exact, far


def test_wake_p_gradient_is_the_evidence_gradient(wake_sleep):
    # with q the exact posterior the weights are uniform, so Σ w̄ ∇ log p(x, z_k) is an
    # unbiased estimate of ∇ log p(x; mu0) = (x - mu0)/2 (Fisher's identity), and the
    # wake-q gradient E_p[∇ log q] is zero
    _, ((_, rws), (_, wake_p), (_, wake_q)), _ = wake_sleep
    assert_close(rws["mu0"], (X - 0.0) / 2)
    assert_close(rws["m"], 0.0)
    assert_close(rws["s"], 0.0)
    # the halves: wake-p moves only the model, wake-q only the guide (same draws)
    np.testing.assert_allclose(wake_p["mu0"], rws["mu0"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(wake_q["m"], rws["m"], rtol=1e-5, atol=1e-6)
    assert np.all(wake_p["m"] == 0) and np.all(wake_p["s"] == 0)
    assert np.all(wake_q["mu0"] == 0)


def test_wake_q_gradient_follows_the_forward_kl(wake_sleep):
    params_off, _, (_, grads) = wake_sleep

    def expected_log_q(p):  # E_{p(z|x)} log q(z): its gradient is -∇ KL(p || q)
        m, s = p["m"], positive(p["s"])
        return -0.5 * jnp.log(2 * jnp.pi) - jnp.log(s) - (0.5 + (0.5 - m) ** 2) / (2 * s**2)

    exact = jax.grad(expected_log_q)(params_off)
    exact = np.array([exact["m"], exact["s"]])
    estimate = np.array([grads["m"].mean(), grads["s"].mean()])
    # self-normalised weights bias the estimate by O(1/K) (about 1% here, with K = 64;
    # the MC error is 0.2%): compare the direction and the length within 5%. (Uniform
    # weights would give E_q[∇ log q] = 0.)
    cosine = estimate @ exact / (np.linalg.norm(estimate) * np.linalg.norm(exact))
    assert cosine > 0.999, (estimate, exact)
    assert abs(np.linalg.norm(estimate) / np.linalg.norm(exact) - 1) < 0.05, (estimate, exact)
    # and the wake-p half: ∇ log p(x; mu0) = (x - mu0)/2 at mu0 = 0, within 5% likewise
    assert abs(grads["mu0"].mean() / (X / 2) - 1) < 0.05


# ----- hierarchical VI: guide psi ~ N(0, 1), z | psi ~ N(a psi + b, s) -------------


def hierarchical_guide(x):
    a, b = ppl.param("a", 0.6), ppl.param("b", 0.1)
    s = ppl.param("s", 0.5, constraint=constraints.positive)
    psi = ppl.sample("psi", dist.Normal(0.0, 1.0))
    ppl.sample("z", dist.Normal(a * psi + b, s))


def reverse(z):
    """r(psi | z) = N(c z + d, t), deliberately not the exact q(psi | z)."""
    c, d = ppl.param("c", 0.3), ppl.param("d", 0.0)
    t = ppl.param("t", 0.9, constraint=constraints.positive)
    ppl.sample("psi", dist.Normal(c * z["z"] + d, t))


def hvi_exact(p):
    """E_q[log p(x, z) + log r(psi | z) - log q(psi, z)] in closed form."""
    a, b, s, c, d = p["a"], p["b"], positive(p["s"]), p["c"], p["d"]
    t = positive(p["t"])
    v = a**2 + s**2  # Var_q(z)
    log_joint = -jnp.log(2 * jnp.pi) - ((X - b) ** 2 + v) / 2 - (b**2 + v) / 2
    log_q = -jnp.log(2 * jnp.pi) - jnp.log(s) - 1.0
    sq = (1 - c * a) ** 2 + (c * s) ** 2 + (c * b + d) ** 2  # E (psi - c z - d)²
    log_r = -0.5 * jnp.log(2 * jnp.pi) - jnp.log(t) - sq / (2 * t**2)
    return log_joint + log_r - log_q


def marginal_elbo_exact(p):
    """The ELBO with the exact marginal q(z) = N(b, √(a² + s²)): the limit of IWHVI."""
    v = p["a"] ** 2 + positive(p["s"]) ** 2
    return elbo_exact(p["b"], jnp.sqrt(v))


@pytest.fixture(scope="module")
def hierarchical():
    model, guide = normal_model(X), ppl.BoundModel(hierarchical_guide, (X,))
    objectives = [
        vi.HVI(reverse=reverse),
        vi.IWHVI(reverse=reverse, num_inner=4),
        vi.IWHVI(reverse=reverse, num_inner=32),
        vi.DIWHVI(reverse=reverse, num_particles=4, num_inner=4),
    ]
    params = vi.init_params(objectives[0], jax.random.key(0), model, guide)
    return params, draws(objectives, model, guide, params, 3)


def test_hvi_value_and_gradient_match_closed_form(hierarchical):
    params, ((value, grads), *_) = hierarchical
    assert sorted(params) == ["a", "b", "c", "d", "s", "t"]  # the reverse model's params too
    assert_close(value, float(hvi_exact(params)))
    exact = jax.grad(hvi_exact)(params)
    for name, g in grads.items():
        assert_close(g, float(exact[name]))


def test_hierarchical_bounds_are_ordered(hierarchical):
    params, ((hvi, _), (iw4, _), (iw32, _), (diw, _)) = hierarchical
    marginal = np.full(N, float(marginal_elbo_exact(params)))
    assert_below(hvi, iw4)
    assert_below(iw4, iw32)
    assert iw32.mean() < marginal[0] + TOL_SE * se(iw32)  # IWHVI <= ELBO with exact q(z)
    assert_below(marginal, np.full(N, LOG_EVIDENCE))
    assert_below(iw4, diw)
    assert_below(diw, np.full(N, LOG_EVIDENCE))


def test_hierarchical_guide_contract():
    model = normal_model(X)
    with pytest.raises(OptionError, match="reverse="):
        vi.HVI()
    with pytest.raises(ModelError, match="no site 'psi'"):
        vi.init_params(
            vi.IWHVI(reverse=reverse), jax.random.key(0), model, ppl.BoundModel(normal_guide, (X,))
        )
    assert vi.DIWHVI(reverse=reverse, aux="u").auxiliary == ("u",)
    # the auxiliary site is the hierarchical objectives' to use; the ELBO refuses it
    with pytest.raises(ModelError, match=r"guide samples \['psi'\].*latent sites are \['z'\]"):
        vi.init_params(
            vi.ELBO(), jax.random.key(0), model, ppl.BoundModel(hierarchical_guide, (X,))
        )


def extra_site_guide(x):
    normal_guide(x)
    ppl.sample("t", dist.Normal(0.0, 1.0))


def observing_guide(x):
    normal_guide(x)
    ppl.sample("x", dist.Normal(0.0, 1.0), obs=x)


@pytest.mark.parametrize(
    "guide, error",
    [(extra_site_guide, r"guide samples \['t'\], which are not latent sites.*\['z'\]"),
     (observing_guide, r"guide observes site\(s\) \['x'\] \(obs=...\)")],
    ids=["extra-site", "observed-site"],
)  # fmt: skip
def test_guide_sites_the_model_lacks_are_errors(guide, error):
    with pytest.raises(ModelError, match=error):
        vi.init_params(vi.ELBO(), jax.random.key(0), normal_model(X), ppl.BoundModel(guide, (X,)))


# ----- an objective written from scratch: a tempered ELBO ---------------------------


def prior():
    ppl.sample("z", dist.Normal(0.0, 1.0))


@vi.objective
def tempered_elbo(model, guide, prior=None, beta=1.0, num_particles=1):
    """β E_q[log p(x | z)] + E_q[log p(z) - log q(z)] (the likelihood tempered by β)."""

    def one():
        d = vi.draw(guide)
        log_prior = vi.score(prior, d)
        return beta * (vi.score(model, d) - log_prior) + log_prior - d.log_q

    return vi.mean(vi.particles(one, num_particles))


@pytest.mark.parametrize("estimator", ["reparam", "reinforce"])
def test_user_objective_gradient(estimator):
    model = normal_model(X)
    guide = ppl.BoundModel(normal_guide, (X,), {"estimator": estimator})
    objective = tempered_elbo(prior=prior, beta=0.5, num_particles=2)
    params = vi.init_params(objective, jax.random.key(0), model, guide)
    [(value, grads)] = draws([objective], model, guide, params, 4)

    def exact(p):
        return elbo_exact(p["m"], positive(p["s"]), beta=0.5)

    assert_close(value, float(exact(params)))
    for name, g in jax.grad(exact)(params).items():
        assert_close(grads[name], float(g))


@vi.objective
def difference_of_two_draws(model, guide):
    """z - z' for z, z' from two single-particle sets: 0 only if they share their draws."""
    z = vi.particles(lambda: vi.draw(guide).values["z"], 1)
    z_prime = vi.particles(lambda: vi.draw(guide).values["z"], 1)
    return vi.mean(z - z_prime)


def test_single_particle_sets_draw_independently():
    # one-particle sets hash the step's key directly, told apart by their index
    model, guide = normal_model(X), ppl.BoundModel(normal_guide, (X,))
    objective = difference_of_two_draws()
    params = vi.init_params(objective, jax.random.key(0), model, guide)
    [(value, _)] = draws([objective], model, guide, params, 5)
    # z - z' ~ N(0, 2 s²) with s = 0.5 when the draws are independent
    assert abs(value.std() - np.sqrt(2) * 0.5) < TOL_SE * np.sqrt(2) * 0.5 / np.sqrt(2 * N)


# ----- options are checked when an objective is made ---------------------------------


@vi.objective
def needs_a_prior(model, guide, prior, num_particles=1):
    return vi.mean(vi.particles(lambda: vi.score(prior, vi.draw(guide)), num_particles))


@vi.objective
def k_as_option(model, guide, k=0):
    return vi.mean(vi.particles(lambda: vi.draw(guide).log_q, k))


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda: vi.ELBO(num_particle=4),
         r"ELBO: unknown option 'num_particle' \(did you mean 'num_particles'\?\); options are"),
        (lambda: vi.ELBO(num_particles=0), r"ELBO: num_particles=0 must be an integer >= 1"),
        (lambda: vi.IWAE(num_particles=-1), r"IWAE: num_particles=-1 must be"),
        (lambda: vi.VIMCO(num_particles=2.5), r"VIMCO: num_particles=2.5 must be"),
        (lambda: vi.VIMCO(num_particles=1), r"VIMCO: num_particles=1 must be >= 2"),
        (lambda: vi.RWS(num_particles=True), r"RWS: num_particles=True must be"),
        (lambda: vi.ELBO(path_gradient=1), r"path_gradient=1 must be True or False"),
        (lambda: vi.Renyi(alpha="0.5"), r"Renyi: alpha='0.5' must be a finite number"),
        (lambda: vi.Renyi(alpha=float("inf")), r"alpha=inf must be a finite number"),
        (lambda: vi.IWHVI(reverse=reverse, num_inner=-1), r"IWHVI: num_inner=-1 must be"),
        (lambda: vi.DIWHVI(reverse=reverse, aux=3), r"DIWHVI: aux=3 must be the name"),
        (lambda: tempered_elbo(betta=0.5), r"unknown option 'betta' \(did you mean 'beta'\?\)"),
        (lambda: tempered_elbo(num_particles=0), r"tempered_elbo: num_particles=0 must be"),
        (lambda: needs_a_prior(), r"option 'prior' has no default: give prior=\.\.\."),
    ],
)  # fmt: skip
def test_objective_options_are_checked_when_made(make, error):
    with pytest.raises(OptionError, match=error):
        make()


def test_particles_checks_its_count():
    model, guide = normal_model(X), ppl.BoundModel(normal_guide, (X,))
    with pytest.raises(OptionError, match=r"ppl.vi.particles: num_particles=0 must be"):
        vi.init_params(k_as_option(), jax.random.key(0), model, guide)
