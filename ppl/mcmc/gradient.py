"""What the gradient-based methods (NUTS, HMC, MALA) share: their warmup options and
how their proposal becomes an adaptive kernel."""

from dataclasses import dataclass

from ppl.infer.method import check_option
from ppl.mcmc.adaptation import adaptive
from ppl.mcmc.method import MCMCMethod


@dataclass(frozen=True)
class GradientMethod(MCMCMethod):
    """A proposal (`proposal(potential)`, for `adaptive()`) with Stan-style warmup.

    target_accept: dual-averaging target of the mean acceptance probability.
    dense_mass: adapt a dense mass matrix instead of a diagonal one.
    step_size: initial step size (tuned during warmup unless adapt_step_size=False).
    init: starting points, "uniform" | "prior" | "median", or {site: value} (the rest "uniform").
    """

    target_accept: float = 0.8
    dense_mass: bool = False
    step_size: float = 1.0
    adapt_step_size: bool = True
    adapt_mass_matrix: bool = True
    init: str = "uniform"

    def __post_init__(self):
        super().__post_init__()
        check_option(self, "target_accept", lambda v: 0 < v < 1, "a number in (0, 1)")
        check_option(self, "step_size", lambda v: v > 0, "a positive number")

    def proposal(self, potential):
        raise NotImplementedError

    def kernel(self, logdensity, num_warmup):
        return adaptive(
            self.proposal(logdensity.potential),
            logdensity.potential,
            num_warmup,
            target_accept=self.target_accept,
            step_size=self.step_size,
            dense_mass=self.dense_mass,
            adapt_step_size=self.adapt_step_size,
            adapt_mass_matrix=self.adapt_mass_matrix,
        )
