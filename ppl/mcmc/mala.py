"""Metropolis-adjusted Langevin (MALA) with an adapted step size and preconditioner.

With preconditioner A (the adapted inverse mass matrix, ≈ the posterior covariance)
the proposal is one Euler step of the Langevin diffusion,

    z' = z − (h²/2) A ∇U(z) + h A r,   r ~ N(0, M),  M = A⁻¹,

i.e. q(z' | z) = N(z − (h²/2) A ∇U(z), h² A). The Metropolis–Hastings ratio needs
q in both directions. Writing each as the momentum that produces the move,
r = M (z' − z + (h²/2) A ∇U(z)) / h, gives log q(z' | z) = −½ rᵀ A r + const,
the kinetic energy, so the same formula (with A in both) scores both directions.
"""

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
from numpyro.infer.hmc_util import IntegratorState, euclidean_kinetic_energy

from ppl.core import draws
from ppl.infer.registry import register
from ppl.mcmc.gradient import GradientMethod
from ppl.mcmc.kernel import times

__all__ = ["MALA", "MALAInfo", "mala_proposal"]


class MALAInfo(NamedTuple):
    accept_prob: jax.Array
    accepted: jax.Array
    num_grad_evals: jax.Array
    step_size: jax.Array


def mala_proposal(potential):
    """One MALA transition as a proposal for `adaptive()`."""
    value_and_grad = jax.value_and_grad(potential)

    def momentum_of(z_from, grad_from, z_to, step_size, inverse_mass_matrix, mass_matrix_sqrt):
        """The momentum r with z_to = z_from − (h²/2) A ∇U(z_from) + h A r."""
        drift = z_to - z_from + 0.5 * step_size**2 * times(inverse_mass_matrix, grad_from)
        if mass_matrix_sqrt.ndim == 2:  # M = S Sᵀ
            return mass_matrix_sqrt @ (mass_matrix_sqrt.T @ drift) / step_size
        return mass_matrix_sqrt**2 * drift / step_size

    def propose(key, point, step_size, inverse_mass_matrix, mass_matrix_sqrt):
        z, grad = point.z, point.z_grad
        noise, uniform = draws.normal_and_uniform(key, z.shape[0], z.dtype)
        r = times(mass_matrix_sqrt, noise)
        half = 0.5 * step_size**2 * times(inverse_mass_matrix, grad)
        z_new = z - half + step_size * times(inverse_mass_matrix, r)
        pe_new, grad_new = value_and_grad(z_new)
        r_back = momentum_of(z_new, grad_new, z, step_size, inverse_mass_matrix, mass_matrix_sqrt)
        log_q_forward = -euclidean_kinetic_energy(inverse_mass_matrix, r)
        log_q_backward = -euclidean_kinetic_energy(inverse_mass_matrix, r_back)
        log_ratio = point.potential_energy - pe_new + log_q_backward - log_q_forward
        accept_prob = jnp.clip(jnp.exp(log_ratio), max=1.0)
        accept_prob = jnp.where(jnp.isnan(accept_prob), 0.0, accept_prob)
        accepted = uniform < accept_prob
        new = IntegratorState(
            jnp.where(accepted, z_new, z),
            None,
            jnp.where(accepted, pe_new, point.potential_energy),
            jnp.where(accepted, grad_new, grad),
        )
        return new, MALAInfo(accept_prob, accepted, jnp.array(1), step_size)

    return propose


@register("mala")
@dataclass(frozen=True)
class MALA(GradientMethod):
    """Metropolis-adjusted Langevin: one gradient per step, Stan-style warmup.

    During warmup the step size is tuned toward `target_accept` (0.574 is optimal
    in high dimension, Roberts & Rosenthal 1998) and the preconditioner (inverse
    mass matrix, diagonal or dense) toward the posterior covariance.

    >>> # m: a bound model, e.g. ppl.examples.eight_schools(sigma, y)
    >>> post = ppl.infer(m, method=ppl.mcmc.MALA(dense_mass=True), num_warmup=1000)

    target_accept: dual-averaging target of the mean acceptance probability.
    dense_mass: adapt a dense preconditioner instead of a diagonal one.
    step_size: initial step size (tuned during warmup unless adapt_step_size=False).
    init: starting points, "uniform" | "prior" | "median", or {site: value} (the rest "uniform").
    """

    target_accept: float = 0.574

    def proposal(self, potential):
        return mala_proposal(potential)
