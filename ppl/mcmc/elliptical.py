"""Elliptical slice sampling (Murray, Adams & MacKay 2010) for sites with a Gaussian prior.

For a site x with prior N(m, Σ) and the rest of the joint as "likelihood"
L(x) = log p(everything) − log N(x; m, Σ), one step draws ν ~ N(0, Σ) and a
slice level log y = L(x) + log u, then searches the ellipse
x(θ) = m + (x − m) cos θ + ν sin θ, shrinking the angle bracket toward θ = 0
until L(x(θ)) > log y. Every step moves (no rejections) and needs no gradient
and no tuning.

m and Σ are read from the model itself at the current position (the site's
distribution in a trace there), so a prior whose mean or scale depends on other
sites (hyperparameters moved by another block) is handled. The sites of a block
are updated one at a time, each with the others in the block held fixed: then
L may depend on anything, including other sites whose prior involves x.
"""

import math
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
from numpyro import distributions as dist

from ppl.core.conditional import ConditionalDensity
from ppl.errors import ModelError
from ppl.mcmc.kernel import plain_kernel
from ppl.mcmc.method import MCMCMethod

__all__ = ["EllipticalSlice", "EllipticalSliceInfo", "trace_at", "gaussian_prior"]

#: Bracket shrinks before a step gives up and stays put. The bracket shrinks by a
#: factor e on average per try, so it reaches θ = 0 (x itself, always inside the
#: slice) in float32 long before this; only a non-finite density at x gets here.
MAX_SHRINKS = 100

_GAUSSIAN = (dist.Normal, dist.MultivariateNormal, dist.LowRankMultivariateNormal)


class EllipticalSliceInfo(NamedTuple):
    accept_prob: jax.Array
    num_grad_evals: jax.Array
    num_evals: jax.Array


def trace_at(density, zb):
    """The model's trace (site name -> site, with its distribution "fn") at the full
    position of `zb`, a point of `density` (a LogDensity or a ConditionalDensity)."""
    if isinstance(density, ConditionalDensity):
        full, z = density.full, density.embed(zb)
    else:
        full, z = density, zb
    # LogDensity has no public trace method yet; _run is the evaluation it uses itself.
    return full.trace(z)


def _base(fn):
    while isinstance(fn, (dist.Independent, dist.ExpandedDistribution)):
        fn = fn.base_dist
    return fn


def gaussian_prior(fn):
    """Whether the distribution `fn` is Gaussian (possibly expanded or `to_event`)."""
    return isinstance(_base(fn), _GAUSSIAN)


class _Slicer:
    """Elliptical slice update of one site of a block, the rest held fixed."""

    def __init__(self, density, site):
        self.density, self.site = density, site
        self.where = slice(site.offset, site.offset + site.size)

    def __call__(self, key, zb, pe):
        site, where = self.site, self.where
        fn = trace_at(self.density, zb)[site.name]["fn"]
        sample_shape = site.shape[: len(site.shape) - len(fn.shape())]
        mean = jnp.broadcast_to(fn.mean, site.shape).reshape(-1)

        def log_lik(x, pe):
            return -pe - jnp.sum(fn.log_prob(x.reshape(site.shape)))

        def at(theta):
            x = mean + (zb[where] - mean) * jnp.cos(theta) + nu * jnp.sin(theta)
            z_new = zb.at[where].set(x)
            pe_new = self.density.potential(z_new)
            return z_new, pe_new, log_lik(x, pe_new)

        key_nu, key_u, key_theta, key_loop = jax.random.split(key, 4)
        nu = fn.sample(key_nu, sample_shape).reshape(-1) - mean
        log_y = log_lik(zb[where], pe) + jnp.log(jax.random.uniform(key_u))
        theta = jax.random.uniform(key_theta, maxval=2 * math.pi)

        def outside(c):
            return ~(c[6] > log_y) & (c[7] < MAX_SHRINKS)

        def shrink(c):
            key, theta, lo, hi, *_, n = c
            lo, hi = jnp.where(theta < 0, theta, lo), jnp.where(theta < 0, hi, theta)
            key, sub = jax.random.split(key)
            theta = jax.random.uniform(sub, minval=lo, maxval=hi)
            return (key, theta, lo, hi, *at(theta), n + 1)

        start = (key_loop, theta, theta - 2 * math.pi, theta, *at(theta), jnp.array(1))
        _, _, _, _, z_new, pe_new, ll_new, n = jax.lax.while_loop(outside, shrink, start)
        ok = ll_new > log_y
        return jnp.where(ok, z_new, zb), jnp.where(ok, pe_new, pe), n


@dataclass(frozen=True)
class EllipticalSlice(MCMCMethod):
    """Elliptical slice sampling for latent Gaussian sites (Murray, Adams & MacKay 2010).

    Every site it is given must have a Gaussian prior (Normal or MultivariateNormal,
    possibly expanded, in plates or `to_event`); the prior's mean and covariance may
    depend on other sites, which another block moves:

    >>> ppl.mcmc.blocks({"f": ppl.mcmc.EllipticalSlice(), "log_scale": ppl.mcmc.NUTS()})

    No gradients and nothing to tune. `num_evals` in the sample stats counts the
    density evaluations of each step.
    """

    init: str = "uniform"

    def check(self, density):
        trace = density.model.trace(seed=0)
        bad = {}  # site name -> what its prior is instead
        for name, site in density.sites.items():
            fn, scaled = trace[name]["fn"], trace[name].get("scale") is not None
            if site.is_discrete or not gaussian_prior(fn) or scaled:
                what = type(_base(fn)).__name__ + (" under a scale handler" if scaled else "")
                bad[name] = f"{what}, support {site.support}"
        if not bad:
            return
        good = [n for n in density.sites if n not in bad]
        discrete = [n for n in bad if density.sites[n].is_discrete]
        continuous = [n for n in bad if n not in discrete]

        def entry(names, method):
            return f"{repr(names[0] if len(names) == 1 else tuple(names))}: ppl.mcmc.{method}()"

        entries = [
            entry(names, method)
            for names, method in ((good, "EllipticalSlice"), (continuous, "NUTS"),
                                  (discrete, "DiscreteGibbs"))
            if names
        ]  # fmt: skip
        listed = "; ".join(f"site '{n}' has {what}" for n, what in bad.items())
        raise ModelError(
            f"{density.model.name}: EllipticalSlice needs a Gaussian prior (Normal or "
            f"MultivariateNormal, real support) at every site it moves, but {listed}. "
            f"Give those sites another kernel: ppl.mcmc.blocks({{{', '.join(entries)}}})"
        )

    def kernel(self, density, num_warmup):
        slicers = [_Slicer(density, site) for site in density.sites.values()]

        def transition(key, state):
            zb, pe, evals = state.z, state.potential_energy, jnp.array(0)
            for slicer, k in zip(slicers, jax.random.split(key, len(slicers))):
                zb, pe, n = slicer(k, zb, pe)
                evals = evals + n
            info = EllipticalSliceInfo(jnp.array(1.0), jnp.array(0), evals)
            return state._replace(z=zb, potential_energy=pe), info

        return plain_kernel(transition, density.potential, uses_gradient=False)
