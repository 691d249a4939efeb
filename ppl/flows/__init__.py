"""Normalizing flows: bijectors (one method, `forward_and_log_det`, the rest derived)
and flow guides over a model's unconstrained space.

>>> # m: a bound model, e.g. ppl.examples.eight_schools(sigma, y)
>>> flow = ppl.flows.Chain([ppl.flows.Planar() for _ in range(8)])
>>> post = ppl.infer(m, method=ppl.vi.SVI(guide=ppl.flows.FlowGuide(flow)))
"""

# ppl.vi.guides first: its flow guides (Planar, IAF, ...) import ppl.flows submodules
import ppl.vi.guides  # noqa: F401

# isort: split
from ppl.flows.autoregressive import (
    Autoregressive,
    Coupling,
    iaf,
    maf,
    real_nvp,
    spline_autoregressive,
    spline_coupling,
)
from ppl.flows.bijector import Affine, Bijector, Chain, Permutation, Reverse
from ppl.flows.guide import FlowGuide, FlowGuideBase, Pushforward
from ppl.flows.planar import Planar, Radial
from ppl.flows.stochastic import Langevin, RandomWalkMH, SNFGuide, SNFPath, StochasticLayer
from ppl.flows.transformers import AffineTransformer, SplineTransformer

__all__ = [
    "Bijector", "Chain", "Affine", "Permutation", "Reverse", "Planar", "Radial",
    "Autoregressive", "Coupling", "AffineTransformer", "SplineTransformer",
    "iaf", "maf", "real_nvp", "spline_coupling", "spline_autoregressive",
    "FlowGuide", "FlowGuideBase", "Pushforward",
    "SNFGuide", "Langevin", "RandomWalkMH", "StochasticLayer", "SNFPath",
]  # fmt: skip
