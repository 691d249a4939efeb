"""Underdamped samplers with momentum: SGHMC and the SG Nosé–Hoover thermostat.

Both discretise dz = p dt, dp = (∇log p(z) − γ p) dt + √(2A) dW, whose stationary
law is p(z) N(p; 0, I) when γ = A; minibatch gradient noise adds heat, which
friction (SGHMC) or an adaptive thermostat γ (SGNHT) removes. One step, with the
gradient at the current z and then a position move with the new momentum
(semi-implicit Euler, stable for h·√curvature < 2):

    p ← (1 − h γ) p + h ∇̂log p(z) + √(2 A h) ξ,    z ← z + h p.
"""

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ppl.errors import OptionError
from ppl.infer.method import check_option
from ppl.infer.registry import register
from ppl.sgmcmc.method import Sampler

__all__ = ["SGHMC", "SGHMCState", "SGNHT", "SGNHTState"]


class SGHMCState(NamedTuple):
    z: jax.Array
    p: jax.Array  # momentum


@register("sghmc")
@dataclass(frozen=True)
class SGHMC(Sampler):
    """Stochastic-gradient Hamiltonian Monte Carlo (Chen, Fox & Guestrin 2014) with
    friction γ = `friction` (and diffusion A = γ). Its momentum carries the chain
    further per gradient than SGLD's random walk. Needs friction · step_size < 1.

    >>> # m: a bound model whose data plate subsamples (see ppl.sgmcmc.SGLD)
    >>> post = ppl.infer(m, ppl.sgmcmc.SGHMC(step_size=1e-3, friction=10.0), num_samples=1000)
    """

    step_size: float = 1e-3
    friction: float = 10.0

    def __post_init__(self):
        super().__post_init__()
        _check_friction(self, "friction")

    def init_state(self, z):
        return SGHMCState(z, jnp.zeros_like(z))

    def update(self, key, state, grad, step_size):
        p = _kick(key, state.p, grad, step_size, self.friction, self.friction)
        return SGHMCState(state.z + step_size * p, p)


class SGNHTState(NamedTuple):
    z: jax.Array
    p: jax.Array  # momentum
    xi: jax.Array  # thermostat: adaptive friction


@register("sgnht")
@dataclass(frozen=True)
class SGNHT(Sampler):
    """Stochastic-gradient Nosé–Hoover thermostat (Ding et al. 2014): the friction ξ is
    itself a variable, ξ ← ξ + h (p·p/d − 1), so it grows until the kinetic energy per
    coordinate is 1 and the unknown minibatch noise is absorbed. `diffusion` is A (and
    ξ's starting value).

    ξ has no friction of its own, so it settles slowly: from a start far from the
    posterior it can need many times SGLD's burn-in (too narrow draws until then). Start
    near the mode (`init="median"` or given values, or `control_variate=True`) or burn
    in longer; `diagnostics["thermostat"]` holds each chain's final ξ, and the spread
    check (see `ppl.sgmcmc.method`) warns about draws far too narrow or wide.

    >>> # m: a bound model whose data plate subsamples (see ppl.sgmcmc.SGLD)
    >>> post = ppl.infer(m, ppl.sgmcmc.SGNHT(step_size=1e-3, diffusion=1.0), num_samples=1000)
    """

    step_size: float = 1e-3
    diffusion: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        _check_friction(self, "diffusion")

    def init_state(self, z):
        return SGNHTState(z, jnp.zeros_like(z), jnp.asarray(self.diffusion, z.dtype))

    def state_diagnostics(self, state):
        return {"thermostat": np.asarray(state.xi)}

    def update(self, key, state, grad, step_size):
        p = _kick(key, state.p, grad, step_size, state.xi, self.diffusion)
        xi = state.xi + step_size * (jnp.mean(p**2) - 1.0)
        return SGNHTState(state.z + step_size * p, p, xi)


def _kick(key, p, grad, step_size, friction, diffusion):
    noise = jax.random.normal(key, p.shape, p.dtype)
    return (
        (1 - step_size * friction) * p
        + step_size * grad
        + jnp.sqrt(2 * diffusion * step_size) * noise
    )


def _check_friction(method, field):
    """`field` (the friction, or SGNHT's starting friction A) is positive, and damps:
    step_size * friction < 1."""
    check_option(method, field, lambda v: v > 0, "a positive number")
    friction = getattr(method, field)
    if method.step_size * friction >= 1:
        cls = type(method).__name__
        raise OptionError(
            f"{cls}: step_size * friction = {method.step_size * friction:.3g} must be < 1 "
            "(the momentum would grow instead of decaying); lower step_size or friction"
        )
