"""Random-walk Metropolis–Hastings with an adapted Gaussian proposal."""

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from numpyro.infer.hmc_util import IntegratorState

from ppl.core import draws
from ppl.infer.method import check_option
from ppl.infer.registry import register
from ppl.mcmc.adaptation import adaptive
from ppl.mcmc.method import MCMCMethod

__all__ = ["RWMH", "RWMHInfo", "rwmh_proposal"]


class RWMHInfo(NamedTuple):
    accept_prob: jax.Array
    accepted: jax.Array
    num_grad_evals: jax.Array
    step_size: jax.Array


def rwmh_proposal(potential):
    """Gaussian random-walk proposal with covariance step_size² · inverse_mass_matrix."""

    def propose(key, point, step_size, inverse_mass_matrix, mass_matrix_sqrt):
        eps, uniform = draws.normal_and_uniform(key, point.z.shape[0], point.z.dtype)
        if inverse_mass_matrix.ndim == 1:
            move = jnp.sqrt(inverse_mass_matrix) * eps
        else:  # M = S Sᵀ (S lower triangular): S⁻ᵀ ε has covariance M⁻¹, in O(d²)
            move = solve_triangular(mass_matrix_sqrt, eps, lower=True, trans="T")
        z_new = point.z + step_size * move
        pe_new = potential(z_new)
        accept_prob = jnp.clip(jnp.exp(point.potential_energy - pe_new), max=1.0)
        accept_prob = jnp.where(jnp.isnan(accept_prob), 0.0, accept_prob)
        accepted = uniform < accept_prob
        z = jnp.where(accepted, z_new, point.z)
        pe = jnp.where(accepted, pe_new, point.potential_energy)
        info = RWMHInfo(accept_prob, accepted, jnp.array(0), step_size)
        return IntegratorState(z, None, pe, point.z_grad), info

    return propose


@register("rwmh")
@dataclass(frozen=True)
class RWMH(MCMCMethod):
    """Random-walk Metropolis–Hastings; no gradients needed.

    During warmup the proposal scale is tuned toward `target_accept` (0.234 is
    optimal in high dimension) and its covariance toward the posterior's.

    >>> # m: a bound model, e.g. ppl.examples.eight_schools(sigma, y)
    >>> post = ppl.infer(m, method="rwmh", num_samples=5000, num_warmup=2000)
    """

    target_accept: float = 0.234
    dense_mass: bool = False
    adapt_covariance: bool = True
    init: str = "uniform"

    def __post_init__(self):
        super().__post_init__()
        check_option(self, "target_accept", lambda v: 0 < v < 1, "a number in (0, 1)")

    def kernel(self, logdensity, num_warmup):
        return adaptive(
            rwmh_proposal(logdensity.potential),
            logdensity.potential,
            num_warmup,
            target_accept=self.target_accept,
            step_size=2.38 / logdensity.size**0.5,
            dense_mass=self.dense_mass,
            adapt_mass_matrix=self.adapt_covariance,
            uses_gradient=False,
            tune_initial_step_size=False,
            restart_step_size=False,
        )
