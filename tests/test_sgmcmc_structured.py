"""Structured SG-MCMC (Alexos, Boyd & Mandt 2022) on a Gaussian where its target is known.

Target p = N(μ, Λ⁻¹) over (x1, x2) with correlation ρ, groups {x1}, {x2}. In the
fully factorised variant each group moves by Langevin dynamics on
E_{x_j ~ q_j}[log p(x_i, x_j)] = −Λ_ii/2 (x_i − μ_i)² − Λ_ij (x_i − μ_i)(m_j − μ_j) + c,
with m_j the mean of the other group's pool. Its stationary law is
q_i = N(μ_i − (Λ_ij/Λ_ii)(m_j − μ_j), 1/Λ_ii); the means' fixed point is m = μ,
so q = N(μ1, 1/Λ11) × N(μ2, 1/Λ22): the right means, the *conditional* variances
(1 − ρ² here, not 1), no correlation — the mean-field (CAVI) solution.

The discrete chain (step h) adds two known effects. Euler's step: x_i' = (1 − hΛ_ii) x_i
+ h·(noise of the pool draw, variance Λ_ij² v_j) + √(2h) ξ, whose stationary variance
solves v_i = (2 + h Λ_ij² v_j) / (Λ_ii (2 − hΛ_ii)) (computed below). The pool is the last
P positions, so its mean m_j wanders with variance ≈ 2τ v_j / P (τ ≈ 1/(hΛ_jj) steps of
autocorrelation), moving x_i's centre by Λ_ij/Λ_ii times that: extra variance
≈ ρ² · 2τ v / P / (1 − ρ⁴) ≈ 0.007 at P = 2000, added to the tolerance.
"""

import numpy as np
import pytest

import ppl
from ppl import dist
from ppl.errors import OptionError
from ppl.infer.summary import ess_mean
from ppl.sgmcmc import SGHMC, SGLD, Structured

pytestmark = pytest.mark.filterwarnings("ignore::ppl.SamplingWarning")

NUM_SIGMAS = 4.0
RHO, MU = 0.7, np.array([1.0, -1.0])
PRECISION = np.linalg.inv(np.array([[1.0, RHO], [RHO, 1.0]]))
H, POOL = 0.05, 2000


@ppl.model
def correlated():
    x1 = ppl.sample("x1", dist.Normal(MU[0], 1.0))
    ppl.sample("x2", dist.Normal(MU[1] + RHO * (x1 - MU[0]), np.sqrt(1 - RHO**2)))


def predicted_variances(h=H, lam=PRECISION):
    """Fixed point of v_i = (2 + h Λ_ij² v_j) / (Λ_ii (2 − hΛ_ii)) (see the module doc)."""
    v = np.ones(2)
    for _ in range(200):
        v = (2 + h * lam[0, 1] ** 2 * v[::-1]) / (np.diag(lam) * (2 - h * np.diag(lam)))
    return v


def draws(post):
    return np.stack([post.samples["x1"], post.samples["x2"]], -1).astype(np.float64)


@pytest.fixture(scope="module")
def factorised():
    method = Structured(base=SGLD(step_size=H), groups="sites", pool_size=POOL)
    return ppl.infer(correlated(), method, num_samples=20_000, num_warmup=4000, num_chains=4,
                     seed=0, progress=False)  # fmt: skip


def test_factorised_chain_samples_the_mean_field_target(factorised):
    v = predicted_variances()
    assert np.allclose(1 / np.diag(PRECISION), 0.51) and np.all(np.abs(v - 0.55) < 0.005)
    pool_bias = RHO**2 * 2 / (H * PRECISION[0, 0]) * v[0] / POOL / (1 - RHO**4)
    assert pool_bias < 0.01
    x = draws(factorised)
    for i in range(2):
        ess = ess_mean(x[..., i])
        assert ess > 1000
        assert abs(x[..., i].mean() - MU[i]) < NUM_SIGMAS * x[..., i].std() / np.sqrt(ess)
        tolerance = NUM_SIGMAS * v[i] * np.sqrt(2 / ess) + pool_bias
        assert abs(x[..., i].var() - v[i]) < tolerance, (i, x[..., i].var(), v[i])
    # the dependence between groups is broken: the joint's correlation is 0.7
    corr = np.corrcoef(x[..., 0].ravel(), x[..., 1].ravel())[0, 1]
    assert abs(corr) < 0.1, corr


def test_factorised_chain_evaluates_one_gradient_per_group(factorised):
    np.testing.assert_array_equal(factorised.diagnostics["grad_evals"], 2 * 24_000)


def test_rho_one_is_the_base_sampler_draw_for_draw():
    kw = dict(num_samples=300, num_warmup=100, num_chains=2, seed=5, progress=False)
    base = SGHMC(step_size=0.05, friction=2.0)
    plain = ppl.infer(correlated(), base, **kw)
    dropout = ppl.infer(correlated(), Structured(base=base, rho=1.0, pool_size=50), **kw)
    for site in ("x1", "x2"):
        np.testing.assert_array_equal(dropout.samples[site], plain.samples[site])


def test_dropout_interpolates_between_joint_and_factorised():
    """rho = 0.5: each step moves each group with probability 1/2, with the other group
    current half the time; the correlation lands strictly between 0 and 0.7, the means
    stay right."""
    method = Structured(base=SGLD(step_size=H), rho=0.5, pool_size=500)
    post = ppl.infer(correlated(), method, num_samples=5000, num_warmup=2000, num_chains=4,
                     seed=2, progress=False)  # fmt: skip
    x = draws(post)
    corr = np.corrcoef(x[..., 0].ravel(), x[..., 1].ravel())[0, 1]
    assert 0.2 < corr < 0.65, corr
    for i in range(2):
        ess = ess_mean(x[..., i])
        assert abs(x[..., i].mean() - MU[i]) < NUM_SIGMAS * x[..., i].std() / np.sqrt(ess)
    np.testing.assert_array_equal(post.diagnostics["grad_evals"], 7000)  # one per step


# ----- bad input --------------------------------------------------------------------


def test_group_naming_a_missing_site_lists_the_sites():
    method = Structured(base=SGLD(), groups=[["x1"], ["x3"]])
    with pytest.raises(OptionError, match=r"site 'x3'.*latent sites are \['x1', 'x2'\]"):
        ppl.infer(correlated(), method, num_samples=10, progress=False)


def test_site_in_two_groups():
    method = Structured(base=SGLD(), groups=[["x1"], ["x1", "x2"]])
    with pytest.raises(OptionError, match=r"site 'x1' is in groups 0 and 1"):
        ppl.infer(correlated(), method, num_samples=10, progress=False)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(base="sgld"), "must be a plain SG-MCMC sampler"),
        (dict(base=SGLD(), rho=0.0), r"rho=0.0 must be None or a number in \(0, 1\]"),
        (dict(base=SGLD(), pool_size=0), "pool_size=0 must be an integer >= 1"),
        (dict(base=SGLD(), groups="layers"), "use 'sites'"),
        (dict(base=SGLD(), groups=[[]]), "non-empty lists of site names"),
    ],
)
def test_bad_structured_options(kwargs, message):
    with pytest.raises(OptionError, match=message):
        Structured(**kwargs)
