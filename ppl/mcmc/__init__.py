"""MCMC kernels and method objects: `NUTS` ("nuts"), `RWMH` ("rwmh")."""

from ppl.mcmc.adaptation import MCMCState, adaptive
from ppl.mcmc.method import MCMCMethod
from ppl.mcmc.nuts import NUTS, nuts_proposal
from ppl.mcmc.rwmh import RWMH, rwmh_proposal

__all__ = ["MCMCState", "adaptive", "MCMCMethod", "NUTS", "nuts_proposal", "RWMH", "rwmh_proposal"]
