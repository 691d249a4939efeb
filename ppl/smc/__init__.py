"""Sequential Monte Carlo: resampling schemes and tempered SMC (`Tempered`, "smc")."""

from ppl.smc.resampling import (
    SCHEMES,
    effective_sample_size,
    normalize,
    resample,
    resample_if_degenerate,
)
from ppl.smc.tempered import Tempered, TemperedDensity

__all__ = [
    "SCHEMES", "effective_sample_size", "normalize", "resample", "resample_if_degenerate",
    "Tempered", "TemperedDensity",
]  # fmt: skip
