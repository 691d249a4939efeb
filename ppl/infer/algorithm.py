"""The one contract every inference family fits."""

from collections.abc import Callable
from typing import NamedTuple


class Algorithm(NamedTuple):
    """A pair of pure functions: `init(key, position) -> state` and
    `step(key, state) -> (state, info)`, with NamedTuple state and info.

    Kernels, SMC sweeps, SVI steps and SG-MCMC steps all take this form, so one
    driver runs them all and combinators compose them.
    """

    init: Callable
    step: Callable
