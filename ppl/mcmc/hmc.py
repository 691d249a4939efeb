"""Hamiltonian Monte Carlo with a fixed or jittered number of leapfrog steps.

The trajectory length is set either as a number of leapfrog steps L (`num_steps`)
or as a path length T (`path_length`, then L = ⌈T / step size⌉, which follows the
step size as warmup adapts it). With `jitter=True` each iteration draws its own
number of steps uniformly from {1, ..., 2L − 1}: the mean stays L (same expected
cost) while the spread breaks the periodic orbits that make fixed-length HMC mix
badly on near-Gaussian targets (Neal 2011, "MCMC using Hamiltonian dynamics", 5.4).

Loops: a fixed L runs as a `fori_loop` with a static trip count. A random or
step-size-dependent L runs as a `while_loop` on a per-chain counter: under `vmap`
it runs until the longest chain is done, finished chains masked, so the cost is
the maximum over chains of their step counts, never a static worst case, and the
path-length mode needs no static bound at all (`max_steps` only caps it).
"""

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
from numpyro.infer.hmc_util import IntegratorState, euclidean_kinetic_energy, velocity_verlet

from ppl.core import draws
from ppl.errors import OptionError
from ppl.infer.method import check_option
from ppl.infer.registry import register
from ppl.mcmc.gradient import GradientMethod
from ppl.mcmc.kernel import times

__all__ = ["HMC", "HMCInfo", "hmc_proposal"]

DEFAULT_NUM_STEPS = 16


class HMCInfo(NamedTuple):
    accept_prob: jax.Array
    accepted: jax.Array
    diverging: jax.Array
    num_grad_evals: jax.Array
    num_steps: jax.Array
    step_size: jax.Array
    energy: jax.Array


def hmc_proposal(
    potential,
    num_steps=DEFAULT_NUM_STEPS,
    path_length=None,
    jitter=False,
    max_steps=1024,
    max_delta_energy=1000.0,
):
    """One HMC transition as a proposal for `adaptive()`: L leapfrog steps, then an
    MH accept on the energy error (a divergence when that error exceeds
    `max_delta_energy`)."""
    _, vv_update = velocity_verlet(potential, euclidean_kinetic_energy)
    static = path_length is None and not jitter

    def leapfrog(n, step_size, inverse_mass_matrix, start):
        def one(state):
            return vv_update(step_size, inverse_mass_matrix, state)

        if static:
            return jax.lax.fori_loop(0, num_steps, lambda _, s: one(s), start)
        _, end = jax.lax.while_loop(
            lambda c: c[0] < n, lambda c: (c[0] + 1, one(c[1])), (jnp.array(0), start)
        )
        return end

    def steps(key, step_size):
        if path_length is None:
            nominal = jnp.array(num_steps)
        else:
            nominal = jnp.ceil(path_length / step_size)
            nominal = jnp.clip(jnp.nan_to_num(nominal, nan=1.0), 1, max_steps).astype(jnp.int32)
        if not jitter:
            return nominal
        return jax.random.randint(key, (), 1, 2 * nominal)  # uniform on {1, ..., 2L - 1}

    def propose(key, point, step_size, inverse_mass_matrix, mass_matrix_sqrt):
        key_steps = None
        if not static:
            key, key_steps = draws.split(key)
        noise, uniform = draws.normal_and_uniform(key, point.z.shape[0], point.z.dtype)
        r = times(mass_matrix_sqrt, noise)
        start = IntegratorState(point.z, r, point.potential_energy, point.z_grad)
        n = steps(key_steps, step_size)
        end = leapfrog(n, step_size, inverse_mass_matrix, start)
        energy0 = point.potential_energy + euclidean_kinetic_energy(inverse_mass_matrix, r)
        energy1 = end.potential_energy + euclidean_kinetic_energy(inverse_mass_matrix, end.r)
        delta = jnp.where(jnp.isnan(energy1), jnp.inf, energy1 - energy0)
        accept_prob = jnp.clip(jnp.exp(-delta), max=1.0)
        accepted = uniform < accept_prob
        new = IntegratorState(
            jnp.where(accepted, end.z, point.z),
            None,
            jnp.where(accepted, end.potential_energy, point.potential_energy),
            jnp.where(accepted, end.z_grad, point.z_grad),
        )
        info = HMCInfo(
            accept_prob=accept_prob,
            accepted=accepted,
            diverging=delta > max_delta_energy,
            num_grad_evals=n,
            num_steps=n,
            step_size=step_size,
            energy=jnp.where(accepted, energy1, energy0),
        )
        return new, info

    return propose


@register("hmc")
@dataclass(frozen=True)
class HMC(GradientMethod):
    """Hamiltonian Monte Carlo with a set (jittered) trajectory length and Stan-style warmup.

    >>> # m: a bound model, e.g. ppl.examples.eight_schools(sigma, y)
    >>> ppl.infer(m, method=ppl.mcmc.HMC(num_steps=32))  # jittered: 1 to 63 steps, mean 32
    >>> ppl.infer(m, method=ppl.mcmc.HMC(path_length=3.0))

    num_steps: leapfrog steps per iteration (default 16 unless path_length is given).
    path_length: trajectory length instead; the steps per iteration are then
        ⌈path_length / step_size⌉ (at most `max_steps`), following the adapted step size.
    jitter: draw each iteration's number of steps uniformly from {1, ..., 2L − 1}
        (mean L), which avoids the periodic trajectories of a fixed length (on a
        near-Gaussian posterior a fixed L can return a chain to where it started
        again and again: ESS of a few draws). On by default; False for a fixed L.
    target_accept: dual-averaging target of the acceptance probability.
    dense_mass: adapt a dense mass matrix instead of a diagonal one.
    step_size: initial step size (tuned during warmup unless adapt_step_size=False).
    init: starting points, "uniform" | "prior" | "median", or {site: value} (the rest "uniform").
    """

    num_steps: int | None = None
    path_length: float | None = None
    jitter: bool = True
    max_steps: int = 1024

    def __post_init__(self):
        super().__post_init__()
        if self.num_steps is not None and self.path_length is not None:
            raise OptionError(
                f"HMC: give num_steps or path_length, not both (got num_steps={self.num_steps}, "
                f"path_length={self.path_length})"
            )
        if self.num_steps is not None:
            check_option(self, "num_steps", lambda v: v >= 1, "an integer >= 1", integer=True)
        if self.path_length is not None:
            check_option(self, "path_length", lambda v: 0 < v < float("inf"), "a positive number")
        if not isinstance(self.jitter, bool):
            raise OptionError(f"HMC: jitter={self.jitter!r} must be True or False")
        check_option(self, "max_steps", lambda v: v >= 1, "an integer >= 1", integer=True)

    def proposal(self, potential):
        num_steps = self.num_steps
        if num_steps is None and self.path_length is None:
            num_steps = DEFAULT_NUM_STEPS
        return hmc_proposal(potential, num_steps, self.path_length, self.jitter, self.max_steps)

    def kernel_diagnostics(self, stats):
        return {"num_steps": stats["num_steps"].mean(axis=1)}
