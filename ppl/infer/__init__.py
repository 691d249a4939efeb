"""`infer()`, the method registry, the driver and `Posterior`."""

from ppl.infer.algorithm import Algorithm
from ppl.infer.api import infer
from ppl.infer.method import Method
from ppl.infer.posterior import Posterior, load
from ppl.infer.registry import method_names, register

__all__ = ["Algorithm", "infer", "Method", "Posterior", "load", "method_names", "register"]
