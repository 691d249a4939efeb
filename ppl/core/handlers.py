"""Effect handlers: NumPyro's, re-exported so they apply to ppl models unchanged.

Each one is a context manager and a function wrapper, e.g.
`trace(seed(model, rng_seed=0)).get_trace()` or `with mask(mask=m): ...`.
"""

from numpyro.handlers import block, condition, mask, replay, scale, seed, substitute, trace

__all__ = ["block", "condition", "mask", "replay", "scale", "seed", "substitute", "trace"]
