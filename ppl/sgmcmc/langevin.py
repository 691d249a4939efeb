"""Overdamped Langevin samplers: SGLD and preconditioned SGLD.

Both discretise dz = ∇log p(z) dt + √2 dW with the Euler–Maruyama step
z ← z + h ∇̂log p(z) + √(2h) ξ (h = step size; Welling & Teh's ε is 2h), the
convention BlackJAX uses, so the same step size means the same chain.
"""

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ppl.infer.method import check_option
from ppl.infer.registry import register
from ppl.sgmcmc.method import Sampler

__all__ = ["SGLD", "SGLDState", "PSGLD", "PSGLDState"]


class SGLDState(NamedTuple):
    z: jax.Array


@register("sgld")
@dataclass(frozen=True)
class SGLD(Sampler):
    """Stochastic-gradient Langevin dynamics (Welling & Teh 2011).

    Write the data plate as `ppl.plate("data", N, subsample_size=B)` (index the data
    by the plate's indices) and each step uses a fresh minibatch of B points.

    >>> @ppl.model
    ... def model(x, y=None):
    ...     w = ppl.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
    ...     with ppl.plate("data", x.shape[0], subsample_size=100) as idx:
    ...         ppl.sample("y", dist.Bernoulli(logits=x[idx] @ w), obs=y[idx])
    >>> # x: (N, D) features, y: (N,) 0/1 labels, N >= 100
    >>> post = ppl.infer(model(x, y), ppl.sgmcmc.SGLD(step_size=1e-3), num_samples=1000)
    """

    step_size: float = 1e-4

    def init_state(self, z):
        return SGLDState(z)

    def update(self, key, state, grad, step_size):
        noise = jax.random.normal(key, state.z.shape, state.z.dtype)
        return SGLDState(state.z + step_size * grad + jnp.sqrt(2 * step_size) * noise)


class PSGLDState(NamedTuple):
    z: jax.Array
    square_avg: jax.Array  # running average of squared gradients


@register("psgld")
@dataclass(frozen=True)
class PSGLD(Sampler):
    """Preconditioned SGLD (Li, Chen, Carlson & Carin 2016): an RMSprop-style diagonal
    preconditioner G = 1 / (eps + √v), v the running average (decay `alpha`) of squared
    gradients; z ← z + h G ∇̂ + √(2h G) ξ. Parameters on very different scales then need
    no hand-tuned step size each (the small correction term Γ is left out, as usual).

    >>> # m: a bound model whose data plate subsamples (see ppl.sgmcmc.SGLD)
    >>> post = ppl.infer(m, ppl.sgmcmc.PSGLD(step_size=1e-3), num_samples=1000)
    """

    step_size: float = 1e-3
    alpha: float = 0.99
    eps: float = 1e-5

    def __post_init__(self):
        super().__post_init__()
        check_option(self, "alpha", lambda v: 0 <= v < 1, "a number in [0, 1)")
        check_option(self, "eps", lambda v: v > 0, "a positive number")

    def init_state(self, z):
        return PSGLDState(z, jnp.zeros_like(z))

    def update(self, key, state, grad, step_size):
        v = self.alpha * state.square_avg + (1 - self.alpha) * grad**2
        g = 1.0 / (self.eps + jnp.sqrt(v))
        noise = jax.random.normal(key, state.z.shape, state.z.dtype)
        z = state.z + step_size * g * grad + jnp.sqrt(2 * step_size * g) * noise
        return PSGLDState(z, v)
