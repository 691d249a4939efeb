"""MCMC kernels, method objects and combinators.

Methods: `NUTS` ("nuts"), `HMC` ("hmc"), `MALA` ("mala"), `RWMH` ("rwmh"),
`DiscreteGibbs` ("gibbs"), `EllipticalSlice`. Combinators: `cycle`, `mixture`,
`repeat`, `blocks` build new methods from these.
"""

from ppl.mcmc.adaptation import adaptive
from ppl.mcmc.combinators import Blocks, Cycle, Mixture, Repeat, blocks, cycle, mixture, repeat
from ppl.mcmc.elliptical import EllipticalSlice
from ppl.mcmc.gibbs import DiscreteGibbs
from ppl.mcmc.hmc import HMC, hmc_proposal
from ppl.mcmc.kernel import Kernel, MCMCState, handover, plain_kernel
from ppl.mcmc.mala import MALA, mala_proposal
from ppl.mcmc.method import MCMCMethod
from ppl.mcmc.nuts import NUTS, nuts_proposal
from ppl.mcmc.rwmh import RWMH, rwmh_proposal

__all__ = [
    "adaptive", "Blocks", "Cycle", "Mixture", "Repeat", "blocks", "cycle", "mixture",
    "repeat", "Kernel", "MCMCState", "handover", "plain_kernel", "MCMCMethod", "NUTS",
    "nuts_proposal", "RWMH", "rwmh_proposal", "HMC", "hmc_proposal", "MALA", "mala_proposal",
    "EllipticalSlice", "DiscreteGibbs",
]  # fmt: skip
