"""Sequential Monte Carlo: resampling, tempered SMC ("smc"), particle filters ("pf") and
particle MCMC ("pmmh", "pimh", "particle_gibbs")."""

from ppl.smc.particle_filter import ParticleFilter
from ppl.smc.pmcmc import PIMH, PMMH, ParticleGibbs
from ppl.smc.resampling import (
    SCHEMES,
    conditional_resample,
    effective_sample_size,
    normalize,
    resample,
    resample_if_degenerate,
)
from ppl.smc.tempered import Tempered, TemperedDensity

__all__ = [
    "SCHEMES", "conditional_resample", "effective_sample_size", "normalize", "resample",
    "resample_if_degenerate",
    "Tempered", "TemperedDensity", "ParticleFilter", "PMMH", "PIMH", "ParticleGibbs",
]  # fmt: skip
