"""Particle MCMC (Andrieu, Doucet & Holenstein 2010) as kernels of the MCMC algebra.

For a model whose time loop is `ppl.scan`, the position holds the static sites θ
(before the loop) and the latent trajectory x (inside it). Three kernels:

- `PMMH`: θ moves by a random walk (`ppl.mcmc.RWMH`, adapted in warmup) on the
  pseudo-marginal target p(θ) p̂(y | θ), p̂ a particle filter's unbiased estimate; a
  trajectory traced back from the same filter is accepted with θ. Its state caches
  the estimate at the current θ (never recomputed: that is what makes it exact).
- `PIMH`: the same, θ proposed from its prior (with no static sites: the classic
  particle independent MH), accepted with probability min(1, p̂'/p̂).
- `ParticleGibbs`: conditional SMC: a filter in which one particle keeps the current
  trajectory, then a new trajectory traced back from it; θ stays put. Use it in
  `ppl.mcmc.blocks` with any kernel for θ, e.g.
  `blocks({"x": ParticleGibbs(), ("phi", "q"): NUTS()})`.

When another kernel moves the position (in `cycle` or `mixture`), PMMH and PIMH
re-estimate the likelihood at the new position by conditional SMC conditioned on
its trajectory, an exact Gibbs update of the filter's auxiliary variables.
"""

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ppl.core.conditional import ConditionalDensity, block_indices
from ppl.errors import ModelError, OptionError
from ppl.infer.registry import register
from ppl.mcmc.kernel import Kernel, MCMCState, plain_kernel
from ppl.mcmc.method import MCMCMethod
from ppl.mcmc.rwmh import RWMH
from ppl.smc.particle_filter import (
    check_filter_options,
    filter_settings,
    filter_states,
    trace_back,
)
from ppl.smc.state_space import describe

__all__ = ["PMMH", "PIMH", "ParticleGibbs"]


class PMCMCInfo(NamedTuple):
    accept_prob: jax.Array
    accepted: jax.Array
    num_grad_evals: jax.Array
    log_likelihood: jax.Array


class PseudoMarginal(NamedTuple):
    """PMMH's own state: the θ-kernel's state (its potential is -log p(θ) - log p̂(y|θ),
    the cached estimate) and a key for re-estimation after a handover."""

    inner: Any
    key: jax.Array


def _estimate(ld, settings, key, z, conditional=False):
    """A filter at θ = z's static sites: (log p̂(y | θ), z with a trajectory traced back
    from it). `conditional`: z's own trajectory is kept by one particle (CSMC)."""
    layout = settings.layout
    values = ld.constrain(z)
    theta = {n: values[n] for n in layout.static}
    reference = {n: values[n] for n in layout.latent} if conditional else None
    key_filter, key_back = jax.random.split(key)
    result = filter_states(ld.model, settings, key_filter, fixed=theta, reference=reference)
    _, paths = trace_back(key_back, result, 1)
    trajectory = {n: paths[n][0] for n in layout.latent}
    return result.log_evidence, ld.unconstrain({**theta, **trajectory})


class _Marginal:
    """θ's pseudo-marginal density for the θ-kernel: potential(θ) runs a filter (keyed by
    the step) and leaves the z it traced back, and its estimate, in `found`."""

    def __init__(self, ld, settings, indices, z, key):
        self.ld, self.settings, self.indices, self.z, self.key = ld, settings, indices, z, key
        self.size = len(indices)
        self.found = {}

    def log_prior(self, theta):
        return self.ld.log_prior_of(self.settings.layout.static, self.z.at[self.indices].set(theta))

    def potential(self, theta):
        z = self.z.at[self.indices].set(theta)
        log_lik, z_new = _estimate(self.ld, self.settings, self.key, z)
        self.found.update(z=z_new, log_lik=log_lik)
        return -(self.log_prior(theta) + log_lik)


def _require_whole(density, name):
    if isinstance(density, ConditionalDensity):
        raise OptionError(
            f"{name} moves the static sites and the whole trajectory together, so it runs on "
            "the whole model (alone, or in cycle/mixture/repeat), not on a block; for a "
            "block of trajectory sites use ppl.smc.ParticleGibbs()"
        )


def _pseudo_marginal_kernel(ld, settings, theta_kernel, num_warmup):
    """The kernel of PMMH and PIMH; `theta_kernel(marginal, num_warmup)` moves θ."""
    indices = block_indices(ld, settings.layout.static)

    def init(key, z):
        key_filter, key_inner, key_next = jax.random.split(key, 3)
        marginal = _Marginal(ld, settings, indices, z, key_filter)
        inner = theta_kernel(marginal, num_warmup).init(key_inner, z[indices])
        z = marginal.found["z"]
        zeros = jnp.zeros_like(z)
        return MCMCState(
            jnp.array(0), z, ld.potential(z), zeros, PseudoMarginal(inner, key_next), jnp.array(0)
        )

    def step_at(key, state, i):
        key_filter, key_step, key_next = jax.random.split(key, 3)
        marginal = _Marginal(ld, settings, indices, state.z, key_filter)
        kernel = theta_kernel(marginal, num_warmup)
        before = state.adapt.inner
        if kernel.step_at is None:
            inner, info = kernel.step(key_step, before)
        else:
            inner, info = kernel.step_at(key_step, before, i)
        accepted = info.accepted
        z = jnp.where(accepted, marginal.found["z"], state.z)
        pe = jnp.where(accepted, ld.potential(marginal.found["z"]), state.potential_energy)
        log_lik = -inner.potential_energy - marginal.log_prior(inner.z)
        new = state._replace(
            i=state.i + 1, z=z, potential_energy=pe, adapt=PseudoMarginal(inner, key_next)
        )
        return new, PMCMCInfo(info.accept_prob, accepted, jnp.array(0), log_lik)

    def step(key, state):
        return step_at(key, state, state.i)

    def refresh(state, z):
        """Re-estimate at a position another kernel chose: conditional SMC on its trajectory."""
        key, key_next = jax.random.split(state.adapt.key)
        log_lik, _ = _estimate(ld, settings, key, z, conditional=True)
        log_prior = ld.log_prior_of(settings.layout.static, z)
        inner = state.adapt.inner._replace(z=z[indices], potential_energy=-(log_prior + log_lik))
        return state._replace(
            z=z, potential_energy=ld.potential(z), adapt=PseudoMarginal(inner, key_next)
        )

    return Kernel(init, step, refresh, False, step_at, refresh_on_handover=True)


def _prior_proposal(marginal, num_warmup):
    """Independent MH on θ with the prior as proposal: accept with min(1, p̂'/p̂)."""
    ld = marginal.ld

    def transition(key, state):
        key_draw, key_accept = jax.random.split(key)
        theta = ld.prior_point(key_draw)[marginal.indices]
        pe_new = marginal.potential(theta)
        # the prior proposal cancels the prior: the ratio is of likelihood estimates
        log_ratio = (state.potential_energy + marginal.log_prior(state.z)) - (
            pe_new + marginal.log_prior(theta)
        )
        accept_prob = jnp.clip(jnp.exp(jnp.nan_to_num(log_ratio, nan=-jnp.inf)), max=1.0)
        accepted = jax.random.uniform(key_accept) < accept_prob
        new = state._replace(
            z=jnp.where(accepted, theta, state.z),
            potential_energy=jnp.where(accepted, pe_new, state.potential_energy),
        )
        return new, PMCMCInfo(accept_prob, accepted, jnp.array(0), jnp.zeros(()))

    return plain_kernel(transition, marginal.potential)


@dataclass(frozen=True)
class _ParticleMethod(MCMCMethod):
    """Options shared by the particle MCMC kernels (their particle filter's)."""

    num_particles: int = 100
    proposal: Any = None
    resample_threshold: float = 0.5
    resampling: str = "systematic"
    init: str = "prior"
    tempers = False  # its filter scores the untempered likelihood

    def __post_init__(self):
        super().__post_init__()
        check_filter_options(self)

    def settings(self, model):
        return filter_settings(self, model)

    def run(self, model, **options):
        """As the whole method (not a part of a combinator): the model's time loop is
        checked first, so a misuse of `ppl.scan` is named before the log density is built."""
        describe(model, self.proposal)
        return super().run(model, **options)

    def check(self, density):
        layout = describe(density.model, self.proposal)
        discrete = [n for n in layout.static if n in density.discrete_sites]
        if discrete:
            raise ModelError(
                f"{density.model.name}: {self.label} moves the static sites {list(layout.static)} "
                f"with a random walk, but {discrete} are discrete; update them with "
                "ppl.mcmc.DiscreteGibbs in ppl.mcmc.blocks"
            )
        return layout


@register("pmmh")
@dataclass(frozen=True)
class PMMH(_ParticleMethod):
    """Particle marginal Metropolis–Hastings for a model whose time loop is `ppl.scan`.

    The static sites (before the loop) move by `kernel`'s random walk on their
    pseudo-marginal posterior, a particle filter with `num_particles` particles giving
    the likelihood; each draw also holds a trajectory of the loop's latent sites.

    >>> # m: a bound model with static sites before a ppl.scan loop
    >>> post = ppl.infer(m, method=ppl.smc.PMMH(num_particles=200), num_samples=2000)

    static_kernel: the random walk on θ (`ppl.mcmc.RWMH(...)`: its scale and covariance adapt
        in warmup toward `target_accept`; with noisy estimates 0.1–0.25 is typical).
    num_particles, proposal, resample_threshold, resampling: the filter's options
        (see `ppl.smc.ParticleFilter`); more particles make the estimate less noisy
        and the chain stickier less often (aim for a log-likelihood sd near 1).
    """

    static_kernel: Any = RWMH()

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.static_kernel, RWMH):
            raise OptionError(
                f"PMMH: static_kernel={self.static_kernel!r} must be a ppl.mcmc.RWMH(...): the particle "
                "filter's likelihood estimate has no gradient, and the pseudo-marginal "
                "acceptance needs a kernel that evaluates the density once per step"
            )

    def check(self, density):
        layout = super().check(density)
        if not layout.static:
            raise ModelError(
                f"{density.model.name}: PMMH moves static sites (sites before the ppl.scan "
                "loop) but this model has none; use ppl.smc.PIMH() or method='pf'"
            )

    def kernel(self, density, num_warmup):
        _require_whole(density, "PMMH")
        return _pseudo_marginal_kernel(
            density, self.settings(density.model), self.static_kernel.kernel, num_warmup
        )


@register("pimh")
@dataclass(frozen=True)
class PIMH(_ParticleMethod):
    """Particle independent Metropolis–Hastings: each step runs a fresh particle filter
    (static sites drawn from their prior) and accepts it with min(1, p̂'/p̂).

    >>> # m: a bound model whose time loop is ppl.scan
    >>> post = ppl.infer(m, method=ppl.smc.PIMH(num_particles=500), num_samples=1000)
    """

    def kernel(self, density, num_warmup):
        _require_whole(density, "PIMH")
        return _pseudo_marginal_kernel(
            density, self.settings(density.model), _prior_proposal, num_warmup
        )


@register("particle_gibbs")
@dataclass(frozen=True)
class ParticleGibbs(_ParticleMethod):
    """Particle Gibbs (conditional SMC): a new trajectory of the loop's latent sites given
    the static sites, from a filter in which one particle keeps the current trajectory.

    >>> # for a model with static sites phi, q and the loop's latent site x
    >>> gibbs = ppl.mcmc.blocks({"x": ppl.smc.ParticleGibbs(), ("phi", "q"): ppl.mcmc.NUTS()})

    It never moves the static sites, so as the whole method it refuses a model that has
    any: pair it in `ppl.mcmc.blocks` with a kernel for them. Discrete trajectory sites
    are fine. Its filter resamples conditionally whatever `resampling` says: the
    reference particle keeps its past and the others are drawn iid from the weights
    (the law that makes particle Gibbs exact for any `num_particles`).
    """

    def run(self, model, **options):
        layout = describe(model, self.proposal)
        if layout.static:  # the whole method: nothing else would move them
            raise ModelError(
                f"{model.name}: ParticleGibbs moves only the ppl.scan loop's latent sites "
                f"{list(layout.latent)}; on its own it would leave the static site(s) "
                f"{list(layout.static)} (before the loop) at their initial values. Pair it "
                "with a kernel for them: method=ppl.mcmc.blocks({"
                f"{_block(layout.latent)}: ppl.smc.ParticleGibbs(num_particles="
                f"{self.num_particles}), {_block(layout.static)}: ppl.mcmc.NUTS()}}), "
                "or use ppl.smc.PMMH() for all of them"
            )
        return super().run(model, **options)

    def check(self, density):
        layout = describe(density.model, self.proposal)
        names = getattr(density, "names", tuple(density.sites))
        others = [n for n in names if n not in layout.latent]
        if isinstance(density, ConditionalDensity) and (others or set(names) != set(layout.latent)):
            raise OptionError(
                f"ParticleGibbs moves exactly the loop's latent sites {list(layout.latent)}; "
                f"its block is {list(names)}"
            )

    def kernel(self, density, num_warmup):
        settings = self.settings(density.model)
        whole = getattr(density, "full", density)
        embed = getattr(density, "embed", lambda zb: zb)
        indices = getattr(density, "indices", None)

        def transition(key, state):
            z = embed(state.z)
            _, z_new = _estimate(whole, settings, key, z, conditional=True)
            zb = z_new if indices is None else z_new[indices]
            moved = jnp.mean(zb != state.z)
            new = state._replace(z=zb, potential_energy=density.potential(zb))
            return new, PMCMCInfo(moved, moved > 0, jnp.array(0), jnp.zeros(()))

        return plain_kernel(transition, density.potential)


def _block(names):
    """How a block of sites is written in `ppl.mcmc.blocks({...})`."""
    return repr(names[0]) if len(names) == 1 else repr(tuple(names))
