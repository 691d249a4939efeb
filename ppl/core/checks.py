"""Up-front checks of observed data, so bad input fails with a message, not a tracer."""

import numpy as np
from numpyro.distributions import Unit

from ppl.errors import DataError


def _broadcast(a, b):
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        return None


def check_observed_sites(trace, model_name):
    """Each observed value must fit its distribution's shape and be finite."""
    for name, site in trace.items():
        if site["type"] != "sample" or not site["is_observed"] or isinstance(site["fn"], Unit):
            continue
        value = np.asarray(site["value"])
        dist_shape = tuple(site["fn"].shape())
        shape = _broadcast(value.shape, dist_shape)
        if shape is None or shape not in (value.shape, dist_shape):
            raise DataError(
                f"{model_name}: observed site '{name}' has data of shape {value.shape}, which "
                f"does not fit its distribution's shape {dist_shape}"
                + ("" if shape is None else f" (they would broadcast to {shape})")
                + "; reshape the data or the distribution's parameters so they agree"
            )
        if np.issubdtype(value.dtype, np.inexact):
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            if bad:
                raise DataError(
                    f"{model_name}: observed site '{name}' has {bad} non-finite value(s) "
                    f"(NaN or inf) out of {value.size}; drop or impute them, or pass "
                    "obs_mask= to ppl.sample to treat them as missing"
                )
