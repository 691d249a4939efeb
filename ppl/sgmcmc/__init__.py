"""Stochastic-gradient MCMC for large data.

Samplers (method objects, and names for `ppl.infer(method=...)`): `SGLD` ("sgld"),
`PSGLD` ("psgld"), `SGHMC` ("sghmc"), `SGNHT` ("sgnht"); `Structured(base=...,
groups=..., rho=...)` wraps any of them (Alexos, Boyd & Mandt 2022). Step-size
schedules: `Constant`, `Polynomial`, `Cyclical`. Minibatches come from the model:
write its data plate as `ppl.plate("data", N, subsample_size=B)`.

>>> # model, x, y: as in ppl.sgmcmc.SGLD's docstring
>>> post = ppl.infer(model(x, y), ppl.sgmcmc.SGLD(step_size=1e-3), num_samples=1000)
"""

from ppl.sgmcmc.hamiltonian import SGHMC, SGNHT, SGHMCState, SGNHTState
from ppl.sgmcmc.langevin import PSGLD, SGLD, PSGLDState, SGLDState
from ppl.sgmcmc.method import Chain, Sampler, SGInfo, SGMCMCMethod, SGProgram
from ppl.sgmcmc.minibatch import Target, estimate, find_center, full_data, full_log_density
from ppl.sgmcmc.schedules import Constant, Cyclical, Polynomial, Schedule
from ppl.sgmcmc.structured import Structured

__all__ = [
    "SGLD", "PSGLD", "SGHMC", "SGNHT", "Structured", "SGLDState", "PSGLDState", "SGHMCState",
    "SGNHTState", "Constant", "Polynomial", "Cyclical", "Schedule", "SGMCMCMethod", "Sampler",
    "Chain", "SGInfo", "SGProgram", "Target", "estimate", "find_center", "full_data",
    "full_log_density",
]  # fmt: skip
