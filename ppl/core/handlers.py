"""Effect handlers: NumPyro's, re-exported so they apply to ppl models unchanged.

Each one is a context manager and a function wrapper, e.g.
`trace(seed(model, rng_seed=0)).get_trace()` or `with mask(mask=m): ...`.
"""

import jax.numpy as jnp
from numpyro.handlers import block, condition, mask, replay, scale, seed, substitute, trace
from numpyro.primitives import Messenger

__all__ = [
    "block", "condition", "mask", "replay", "scale", "seed", "substitute", "trace", "full_data",
]  # fmt: skip


class full_data(Messenger):
    """Handler: every subsampled plate sees all of its indices (so its scale is 1).

    `with full_data(): density(z)` is the full-data log density; draws from a guide
    under it cover every data point's local latent values.
    """

    def process_message(self, msg):
        if msg["type"] == "plate" and msg["value"] is None:
            size = msg["args"][0]
            msg["args"] = (size, None)
            msg["value"] = jnp.arange(size)
