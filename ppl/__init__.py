"""ppl: probabilistic programming inference on JAX.

>>> import jax.numpy as jnp
>>> import ppl
>>> from ppl import dist
>>> @ppl.model
... def coin(flips=None):
...     p = ppl.sample("p", dist.Beta(1, 1))
...     with ppl.plate("flips", 10):
...         ppl.sample("y", dist.Bernoulli(p), obs=flips)
>>> post = ppl.infer(coin(flips=jnp.ones(10)), method="nuts", seed=0)
"""

from numpyro import distributions as dist

from ppl import errors, flows, gp, mcmc, sgmcmc, smc, vi
from ppl.cache import enable_compilation_cache
from ppl.core import (
    BoundModel,
    LogDensity,
    Model,
    deterministic,
    factor,
    handlers,
    model,
    param,
    plate,
    sample,
    scan,
)
from ppl.errors import SamplingWarning
from ppl.infer import Algorithm, Posterior, infer, load, method_names

__version__ = "0.1.0"

enable_compilation_cache()

__all__ = [
    "dist", "errors", "flows", "gp", "mcmc", "sgmcmc", "smc", "vi", "SamplingWarning", "handlers", "BoundModel", "LogDensity", "Model",
    "model", "sample", "param", "plate", "deterministic", "factor", "scan",
    "Algorithm", "Posterior", "infer", "load", "method_names", "enable_compilation_cache",
]  # fmt: skip
