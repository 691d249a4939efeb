"""Up-front checks of observed data, so bad input fails with a message, not a tracer."""

from contextlib import contextmanager

import jax
import numpy as np
from numpyro.distributions import MaskedDistribution, Unit

from ppl.errors import DataError, ModelError

__all__ = ["check_observed_sites"]


def _broadcast(a, b):
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        return None


def _observed_mask(fn, shape):
    """Where the observed value counts (masked-out entries may hold NaN on purpose)."""
    mask = np.ones(shape, bool)
    while isinstance(fn, MaskedDistribution):
        m = fn._mask
        if m is False:
            return np.zeros(shape, bool)
        if m is not True:
            m = np.asarray(m)
            m = np.reshape(m, m.shape + (1,) * fn.event_dim)
            mask = mask & np.broadcast_to(m, shape)
        fn = fn.base_dist
    return mask


def _subsample_hint(name, site, trace, shape):
    """If the data has a subsampled plate's full size, say to index it by the plate."""
    for frame in site["cond_indep_stack"]:
        plate = trace.get(frame.name)
        if plate is None or plate["type"] != "plate" or len(shape) < -frame.dim:
            continue
        size, subsample_size = plate["args"][:2]
        if subsample_size is not None and subsample_size < size and shape[frame.dim] == size:
            return (
                f"; plate '{frame.name}' draws a minibatch of {subsample_size} of its {size} "
                f"indices, so index the data with them: `with ppl.plate('{frame.name}', {size}, "
                f"subsample_size={subsample_size}) as idx: ... obs=data[idx]`"
            )
    return ""


def check_observed_sites(trace, model_name):
    """Each observed value must have its distribution's shape (or be a scalar, or hold
    extra leading batch dimensions) and be finite where it is not masked out."""
    for name, site in trace.items():
        if site["type"] != "sample" or not site["is_observed"] or isinstance(site["fn"], Unit):
            continue
        value = site["value"]
        value_shape = tuple(np.shape(value))
        dist_shape = tuple(site["fn"].shape())
        shape = _broadcast(value_shape, dist_shape)
        # Data smaller than its distribution would be counted several times over (the
        # silent broadcast of obs (N,) against a (N, 1) mean): refuse it, scalars aside.
        if shape is None or (shape != value_shape and value_shape != ()):
            raise DataError(
                f"{model_name}: observed site '{name}' has data of shape {value_shape}, which "
                f"does not fit its distribution's shape {dist_shape}"
                + ("" if shape is None else f" (they would broadcast to {shape})")
                + "; reshape the data or the distribution's parameters so they agree"
                + _subsample_hint(name, site, trace, value_shape)
            )
        if isinstance(value, jax.core.Tracer):
            continue  # built under jit: shapes are known, values are not
        value = np.asarray(value)
        if np.issubdtype(value.dtype, np.inexact):
            counted = _observed_mask(site["fn"], value.shape)
            bad = int(np.count_nonzero(counted & ~np.isfinite(value)))
            if bad:
                raise DataError(
                    f"{model_name}: observed site '{name}' has {bad} non-finite value(s) "
                    f"(NaN or inf) out of {value.size}; drop or impute them, or pass "
                    "obs_mask= to ppl.sample to treat them as missing"
                )


@contextmanager
def explain_tracer_errors(model_name):
    """Turn JAX's tracer errors raised inside a model into an error that says what to change."""
    try:
        yield
    except (
        jax.errors.TracerArrayConversionError,
        jax.errors.ConcretizationTypeError,
        jax.errors.TracerBoolConversionError,
        jax.errors.TracerIntegerConversionError,
    ) as e:
        raise ModelError(
            f"{model_name}: the model uses a sampled value where JAX needs a concrete one "
            f"({type(e).__name__}). Inside a model, compute with jax.numpy rather than numpy "
            "(e.g. index a jnp.array, not an np.array, with a sampled index), and use "
            "jnp.where instead of Python `if` on sampled values."
        ) from e
