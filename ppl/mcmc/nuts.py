"""The No-U-Turn Sampler, on NumPyro's tree-building utilities."""

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
from numpyro.infer.hmc_util import (
    IntegratorState,
    build_tree,
    euclidean_kinetic_energy,
    velocity_verlet,
)

from ppl.core import draws
from ppl.infer.method import check_option
from ppl.infer.registry import register
from ppl.mcmc.diagnostics import check_tree_depth
from ppl.mcmc.gradient import GradientMethod
from ppl.mcmc.kernel import times

__all__ = ["NUTS", "NUTSInfo", "nuts_proposal"]


class NUTSInfo(NamedTuple):
    accept_prob: jax.Array
    diverging: jax.Array
    num_grad_evals: jax.Array
    tree_depth: jax.Array
    step_size: jax.Array
    energy: jax.Array


def nuts_proposal(potential, max_tree_depth=10, max_delta_energy=1000.0):
    """One NUTS transition as a proposal for `adaptive()`: a multinomial draw from
    a trajectory doubled until it turns back (or reaches `max_tree_depth`)."""
    _, vv_update = velocity_verlet(potential, euclidean_kinetic_energy)

    def propose(key, point, step_size, inverse_mass_matrix, mass_matrix_sqrt):
        key_momentum, key_tree = draws.split(key)
        r = times(mass_matrix_sqrt, draws.normal(key_momentum, point.z.shape[0], point.z.dtype))
        start = IntegratorState(point.z, r, point.potential_energy, point.z_grad)
        tree = build_tree(
            vv_update, euclidean_kinetic_energy, start, inverse_mass_matrix, step_size,
            key_tree, max_delta_energy=max_delta_energy, max_tree_depth=max_tree_depth,
        )  # fmt: skip
        new = IntegratorState(tree.z_proposal, None, tree.z_proposal_pe, tree.z_proposal_grad)
        info = NUTSInfo(
            accept_prob=tree.sum_accept_probs / tree.num_proposals,
            diverging=tree.diverging,
            num_grad_evals=tree.num_proposals,
            tree_depth=jnp.asarray(tree.depth),
            step_size=step_size,
            energy=tree.z_proposal_energy,
        )
        return new, info

    return propose


@register("nuts")
@dataclass(frozen=True)
class NUTS(GradientMethod):
    """No-U-Turn Sampler with Stan-style warmup (step size and mass matrix).

    >>> # m: a bound model, e.g. ppl.examples.eight_schools(sigma, y)
    >>> post = ppl.infer(m, method=ppl.mcmc.NUTS(target_accept=0.9), num_chains=4)

    target_accept: dual-averaging target of the mean acceptance probability;
        raise it (0.9, 0.95) when the run reports divergences.
    max_tree_depth: trajectories stop at 2**max_tree_depth leapfrog steps.
    dense_mass: adapt a dense mass matrix instead of a diagonal one.
    step_size: initial step size (tuned during warmup unless adapt_step_size=False).
    init: starting points, "uniform" | "prior" | "median", or {site: value} (the rest "uniform").
    """

    max_tree_depth: int = 10

    def __post_init__(self):
        super().__post_init__()
        check_option(self, "max_tree_depth", lambda v: v >= 1, "an integer >= 1", integer=True)

    def proposal(self, potential):
        return nuts_proposal(potential, self.max_tree_depth)

    def kernel_diagnostics(self, stats):
        """Mean tree depth and draws that hit `max_tree_depth`, per chain; a warning
        when more than 1% of a chain's draws hit it."""
        depth = stats["tree_depth"]
        hits = (depth >= self.max_tree_depth).sum(axis=1)
        message = check_tree_depth(hits, depth.shape[1], self.max_tree_depth)
        return {
            "tree_depth": depth.mean(axis=1),
            "max_tree_depth_hits": hits,
            "warnings": [message] if message else [],
        }
