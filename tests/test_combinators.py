"""Combinators preserve the target: moment checks on a Gaussian with a known answer.

The target is a joint Gaussian over two sites, a (scalar) and b (2-vector),
b | a ~ N(A a + c, S), so mean and covariance are known in closed form. Each
composed sampler must reproduce them within Monte Carlo error; the tolerance
is 4 posterior sd / sqrt(ESS) for means (ESS from the run itself) and, for
covariances, 4 sd(product) / sqrt(ESS(product)) of the centred products.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist, mcmc
from ppl.errors import ModelError, OptionError
from ppl.infer.summary import ess_mean

A = np.array([1.5, -0.5])
C = np.array([0.5, 1.0])
S = np.array([[0.5, 0.2], [0.2, 0.3]])
MEAN = np.array([0.0, *C])
COV = np.block([[np.ones((1, 1)), A[None, :]], [A[:, None], np.outer(A, A) + S]])


@ppl.model
def gaussian():
    a = ppl.sample("a", dist.Normal(0.0, 1.0))
    ppl.sample("b", dist.MultivariateNormal(A * a + C, covariance_matrix=S))


COMBINED = {
    "cycle": mcmc.cycle(mcmc.RWMH(), mcmc.NUTS()),
    "mixture": mcmc.mixture([(0.7, mcmc.NUTS()), (0.3, mcmc.RWMH())]),
    "repeat": mcmc.repeat(mcmc.RWMH(), 4),
    "blocks": mcmc.blocks({"a": mcmc.RWMH(), "b": mcmc.NUTS()}),
    "nested": mcmc.cycle(mcmc.blocks({"a": mcmc.NUTS(), "b": mcmc.RWMH()}), mcmc.NUTS()),
}


@pytest.fixture(scope="module", params=sorted(COMBINED))
def run(request):
    post = ppl.infer(
        gaussian(), method=COMBINED[request.param], num_warmup=500, num_samples=1000,
        num_chains=4, seed=1, progress=False,
    )  # fmt: skip
    draws = np.concatenate([post.samples["a"][..., None], post.samples["b"]], axis=-1)
    return request.param, post, draws


def test_composed_kernels_keep_the_gaussian_target(run):
    name, _, draws = run
    for i in range(3):
        x = draws[..., i]
        tol = 4 * np.sqrt(COV[i, i]) / np.sqrt(ess_mean(x))
        assert abs(x.mean() - MEAN[i]) < tol, (name, i, x.mean(), MEAN[i], tol)
    centred = draws - MEAN
    for i in range(3):
        for j in range(i, 3):
            prod = centred[..., i] * centred[..., j]
            tol = 4 * prod.std() / np.sqrt(ess_mean(prod))
            assert abs(prod.mean() - COV[i, j]) < tol, (name, i, j, prod.mean(), COV[i, j], tol)


def test_composed_kernels_report_their_parts(run):
    name, post, _ = run
    stats = post.sample_stats
    assert stats["accept_prob"].shape == (4, 1000)
    assert np.all((stats["accept_prob"] >= 0) & (stats["accept_prob"] <= 1))
    assert any(k.startswith("0.") for k in stats), sorted(stats)
    assert post.diagnostics["grad_evals"].shape == (4,)
    if name != "repeat":  # repeat holds RWMH only: no gradients
        assert np.all(post.diagnostics["grad_evals"] > 0)


Y_HYBRID = np.array([1.8, 2.5, 0.9])


@ppl.model
def hybrid(y):
    theta = ppl.sample("theta", dist.Normal(0.0, 1.0))
    z = ppl.sample("z", dist.Bernoulli(logits=theta))
    with ppl.plate("data", len(y)):
        ppl.sample("y", dist.Normal(theta + 2.0 * z, 1.0), obs=y)


def test_repeat_inside_blocks_starts_from_the_other_blocks_move():
    """repeat(RWMH) for theta given z: each step starts from the z DiscreteGibbs just drew,
    so the log density it carries is the model's at every draw (a repeated part once kept
    its own stale position and potential, and the posterior was off by ~3 SEs)."""
    model = hybrid(Y_HYBRID)
    method = mcmc.blocks({"z": mcmc.DiscreteGibbs(), "theta": mcmc.repeat(mcmc.RWMH(), 3)})
    post = ppl.infer(
        model,
        method=method,
        num_warmup=200,
        num_samples=200,
        num_chains=2,
        seed=2,
        convergence_checks=False,
    )
    ld = model.log_density()
    draws = {k: post.samples[k].reshape(-1) for k in ("theta", "z")}
    exact = jax.vmap(lambda t, z: ld(ld.unconstrain({"theta": t, "z": z})))(*draws.values())
    np.testing.assert_allclose(post.sample_stats["lp"].reshape(-1), exact, rtol=1e-5, atol=1e-5)


def test_repeat_inside_cycle_keeps_the_other_kernels_move():
    """cycle(NUTS, repeat(RWMH)) on a 20-D Gaussian mixes like NUTS (it once threw the
    NUTS moves away, leaving the ESS of RWMH alone: ~30 of 4,000)."""
    method = mcmc.cycle(mcmc.NUTS(), mcmc.repeat(mcmc.RWMH(), 1))
    post = ppl.infer(normal_20d(), method=method, num_samples=1000, num_chains=4, seed=0)
    assert post.diagnostics["ess_bulk_min"] > 1000


@ppl.model
def normal_20d():
    ppl.sample("x", dist.Normal(0.0, 1.0).expand([20]))


def test_same_seed_same_draws_for_composed_kernels():
    kw = dict(method=COMBINED["cycle"], num_warmup=50, num_samples=50, num_chains=2, progress=False)
    a = ppl.infer(gaussian(), seed=3, **kw).samples["b"]
    b = ppl.infer(gaussian(), seed=3, **kw).samples["b"]
    np.testing.assert_array_equal(a, b)


def test_combinators_refuse_bad_input():
    with pytest.raises(OptionError, match="at least one method"):
        mcmc.cycle()
    with pytest.raises(OptionError, match="expected an MCMC method object"):
        mcmc.cycle("nuts")
    with pytest.raises(OptionError, match="weights must be non-negative"):
        mcmc.mixture([(-1.0, mcmc.NUTS())])
    with pytest.raises(OptionError, match=r"list of \(weight, method\) pairs, e.g. mixture"):
        mcmc.mixture([mcmc.NUTS(), mcmc.RWMH()])  # weights left out
    with pytest.raises(OptionError, match=r"give one list of \(weight, method\) pairs"):
        mcmc.mixture((0.5, mcmc.NUTS()), (0.5, mcmc.RWMH()))
    with pytest.raises(OptionError, match=r"weight 'a' must be a number"):
        mcmc.mixture([("a", mcmc.NUTS())])
    with pytest.raises(OptionError, match=r"blocks: expected a dict .* got list"):
        mcmc.blocks([("a", mcmc.NUTS())])
    with pytest.raises(OptionError, match=r"times=0 must be an integer >= 1"):
        mcmc.repeat(mcmc.NUTS(), 0)
    with pytest.raises(OptionError, match=r"site\(s\) \['a'\] appear in more than one block"):
        mcmc.blocks({"a": mcmc.NUTS(), ("a", "b"): mcmc.RWMH()})
    with pytest.raises(ModelError, match=r"latent site\(s\) \['b'\] are in no block"):
        ppl.infer(gaussian(), method=mcmc.blocks({"a": mcmc.NUTS()}), progress=False)
    with pytest.raises(ModelError, match=r"no latent site\(s\) \['c'\]"):
        ppl.infer(gaussian(), method=mcmc.blocks({("a", "b"): mcmc.NUTS(), "c": mcmc.RWMH()}))
    with pytest.raises(OptionError, match=r"blocks: NUTS\(init='prior'\) would not be used.*"
                       r"blocks\(\.\.\., init='prior'\)"):  # fmt: skip
        mcmc.blocks({"a": mcmc.RWMH(), "b": mcmc.NUTS(init="prior")})
    with pytest.raises(OptionError, match=r"cycle: RWMH\(init=\{'a': 1.0\}\) would not be"):
        mcmc.cycle(mcmc.RWMH(init={"a": 1.0}))


@ppl.model
def discrete_mixture(y):
    mu = ppl.sample("mu", dist.Normal(0.0, 5.0).expand([2]).to_event(1))
    sigma = ppl.sample("sigma", dist.HalfNormal(2.0))
    with ppl.plate("data", y.shape[0]):
        z = ppl.sample("z", dist.Categorical(probs=jnp.array([0.5, 0.5])))
        ppl.sample("y", dist.Normal(mu[z], sigma), obs=y)


def test_blocks_name_a_misspelt_site_and_suggest_gibbs_for_a_discrete_one():
    y = jnp.array([-2.0, -2.1, 2.0, 2.1])
    typo = mcmc.blocks({"zz": mcmc.DiscreteGibbs(), ("mu", "sigma"): mcmc.NUTS()})
    with pytest.raises(ModelError, match=r"no latent site\(s\) \['zz'\] \(did you mean 'z'\?\)"):
        ppl.infer(discrete_mixture(y), method=typo, progress=False)
    with pytest.raises(ModelError, match=r"\('z',\): ppl.mcmc.DiscreteGibbs\(\), \('sigma',\): "):
        ppl.infer(discrete_mixture(y), method=mcmc.blocks({"mu": mcmc.NUTS()}), progress=False)
