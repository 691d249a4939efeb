"""Step-size schedules: step t's step size from the sampler's `step_size`.

SG-MCMC with a constant step size samples a slightly biased distribution (the
bias shrinks with the step size); a decreasing schedule removes the bias in the
limit (Welling & Teh 2011), and a cyclical one alternates exploration with large
steps and sampling with small ones (Zhang et al. 2020). `t` counts every sampler
step from 0, burn-in included.

>>> ppl.sgmcmc.SGLD(step_size=1e-3, schedule=ppl.sgmcmc.Polynomial(b=100.0, gamma=0.55))
"""

from dataclasses import dataclass

import jax.numpy as jnp

from ppl.core.checks import plain_scalars
from ppl.errors import OptionError

__all__ = ["Schedule", "Constant", "Polynomial", "Cyclical"]


class Schedule:
    """Base class: `schedule(step_size, t)` is the step size of step `t`."""

    def __call__(self, step_size, t):
        raise NotImplementedError


@dataclass(frozen=True)
class Constant(Schedule):
    """The same step size at every step."""

    def __call__(self, step_size, t):
        return jnp.asarray(step_size, jnp.result_type(float))


@dataclass(frozen=True)
class Polynomial(Schedule):
    """step_size · (1 + t/b)^(-gamma), i.e. a(b + t)^(-gamma) with a = step_size · b^gamma
    (Welling & Teh's schedule; gamma in (0.5, 1] satisfies Robbins–Monro)."""

    b: float = 1000.0
    gamma: float = 0.55

    def __post_init__(self):
        plain_scalars(self)
        if not (isinstance(self.b, (int, float)) and self.b > 0):
            raise OptionError(f"Polynomial: b={self.b!r} must be a positive number")
        if not (isinstance(self.gamma, (int, float)) and 0 <= self.gamma <= 1):
            raise OptionError(f"Polynomial: gamma={self.gamma!r} must be a number in [0, 1]")

    def __call__(self, step_size, t):
        return step_size * (1.0 + t / self.b) ** (-self.gamma)


@dataclass(frozen=True)
class Cyclical(Schedule):
    """Cosine cycles of `cycle_length` steps: step_size/2 · (cos(π (t mod L)/L) + 1), from
    step_size at the start of each cycle down to near 0 at its end (Zhang et al. 2020)."""

    cycle_length: int = 1000

    def __post_init__(self):
        plain_scalars(self)
        n = self.cycle_length
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise OptionError(f"Cyclical: cycle_length={n!r} must be a positive integer")

    def __call__(self, step_size, t):
        phase = jnp.mod(t, self.cycle_length) / self.cycle_length
        return step_size / 2 * (jnp.cos(jnp.pi * phase) + 1.0)
