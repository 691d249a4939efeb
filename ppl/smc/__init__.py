"""Sequential Monte Carlo: resampling schemes (more to come: tempered SMC, particle filters)."""

from ppl.smc.resampling import (
    SCHEMES,
    effective_sample_size,
    normalize,
    resample,
    resample_if_degenerate,
)

__all__ = ["SCHEMES", "effective_sample_size", "normalize", "resample", "resample_if_degenerate"]
