"""SVI with each objective recovers a conjugate posterior (Normal mean, known noise)."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from numpyro.distributions import constraints

import ppl
from ppl import dist

X = jnp.asarray(np.random.default_rng(3).normal(1.0, 1.0, 10), jnp.float32)
POST_VAR = 1 / (1 + X.shape[0])
POST_MEAN = POST_VAR * float(X.sum())


@ppl.model
def normal_mean(x):
    mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
    with ppl.plate("data", x.shape[0]):
        ppl.sample("x", dist.Normal(mu, 1.0), obs=x)


def guide(x):
    m = ppl.param("m", 0.0)
    s = ppl.param("s", 1.0, constraint=constraints.positive)
    ppl.sample("mu", dist.Normal(m, s))


def reverse(values):
    """r(psi | z) for the hierarchical objectives: a Normal centred on z."""
    a = ppl.param("r_a", 0.5)
    s = ppl.param("r_s", 1.0, constraint=constraints.positive)
    ppl.sample("psi", dist.Normal(a * values["mu"], s))


def hierarchical_guide(x):
    """q(psi) q(z | psi): psi ~ N(0, 1), z ~ N(m + c·psi, s); its marginal is Normal."""
    m = ppl.param("m", 0.0)
    c = ppl.param("c", 0.1)
    s = ppl.param("s", 1.0, constraint=constraints.positive)
    psi = ppl.sample("psi", dist.Normal(0.0, 1.0))
    ppl.sample("mu", dist.Normal(m + c * psi, s))


OBJECTIVES = {
    "elbo": (ppl.vi.ELBO(num_particles=2), guide),
    "iwae": (ppl.vi.IWAE(num_particles=4), guide),
    "renyi": (ppl.vi.Renyi(alpha=0.5, num_particles=4), guide),
    "vimco": (ppl.vi.VIMCO(num_particles=4), guide),
    "rws": (ppl.vi.RWS(num_particles=8), guide),
    "hvi": (ppl.vi.HVI(reverse=reverse, num_particles=2), hierarchical_guide),
    "iwhvi": (ppl.vi.IWHVI(reverse=reverse, num_particles=2, num_inner=4), hierarchical_guide),
}


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_each_objective_recovers_the_posterior(name):
    # the guide family contains the exact posterior N(POST_MEAN, POST_VAR) (for the
    # hierarchical guide: with c = 0, or any c with c² + s² = POST_VAR); 3000 Adam steps
    # with a decaying rate, then 4000 draws: the draws' mean and sd are within a few
    # Monte Carlo standard errors (sd/√4000 ≈ 0.005) plus the optimiser's remaining
    # wander (measured ≲ 0.03) of the exact values
    objective, g = OBJECTIVES[name]
    svi = ppl.vi.SVI(
        guide=g, objective=objective, num_steps=3000,
        optimizer=optax.adam(optax.cosine_decay_schedule(0.05, 3000, alpha=0.02)),
    )  # fmt: skip
    post = ppl.infer(normal_mean(X), method=svi, num_samples=4000, num_chains=1, seed=0)
    mu = post.samples["mu"]
    assert abs(mu.mean() - POST_MEAN) < 0.05, (mu.mean(), POST_MEAN)
    assert abs(mu.std() / np.sqrt(POST_VAR) - 1) < 0.15, (mu.std(), np.sqrt(POST_VAR))
