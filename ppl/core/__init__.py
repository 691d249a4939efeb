"""The model DSL: primitives, handlers, `@model`, `BoundModel`, `LogDensity`."""

from ppl.core import handlers
from ppl.core.logdensity import LogDensity, Site
from ppl.core.model import BoundModel, Model, model
from ppl.core.primitives import deterministic, factor, param, plate, sample, scan

__all__ = [
    "handlers", "LogDensity", "Site", "BoundModel", "Model", "model",
    "deterministic", "factor", "param", "plate", "sample", "scan",
]  # fmt: skip
