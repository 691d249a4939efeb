"""The one contract every inference family fits."""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Algorithm(NamedTuple):
    """A pair of pure functions: `init(key, position) -> state` and
    `step(key, state) -> (state, info)`, with NamedTuple state and info.

    Kernels, SMC sweeps, SVI steps and SG-MCMC steps all take this form, so one
    driver runs them all and combinators compose them.
    """

    init: Callable
    step: Callable


def keep_where(take, new, old):
    """`new` where `take` (a scalar per chain), else `old`, leaf by leaf: how a step that
    failed (a non-finite value, a stopped chain) leaves its state as it was."""
    return jax.tree.map(lambda n, o: jnp.where(take, n, o), new, old)
