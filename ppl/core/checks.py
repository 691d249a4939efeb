"""Up-front checks of observed data and of concrete parameters, so bad input fails with a
message, not a tracer; data found valid here is not checked again at every evaluation."""

import copy
import difflib
import numbers
from contextlib import contextmanager

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import (
    CategoricalLogits,
    CategoricalProbs,
    Distribution,
    ExpandedDistribution,
    Independent,
    MaskedDistribution,
    Unit,
    constraints,
)
from numpyro.distributions.constraints import Constraint, independent
from numpyro.primitives import Messenger
from numpyro.util import not_jax_tracer

from ppl.errors import DataError, ModelError, OptionError

__all__ = [
    "check_observed_sites", "check_parameters", "observed_in_support", "SkipCheckedSupport",
    "traced_parameters_unchecked",
]  # fmt: skip


def _broadcast(a, b):
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        return None


_CATEGORICAL = (CategoricalProbs, CategoricalLogits)  # their values index their support


def unwrapped(fn):
    """`fn` without the wrappers of `expand`, `to_event` and `mask`, which keep its values
    (a transformed distribution, e.g. LogNormal, stays as it is)."""
    while isinstance(fn, (MaskedDistribution, ExpandedDistribution, Independent)):
        fn = fn.base_dist
    return fn


def distribution_name(fn):
    """The name of `fn` unwrapped (`Poisson`, not `ExpandedDistribution`)."""
    return type(unwrapped(fn)).__name__


def did_you_mean(name, valid):
    """' (did you mean 'x'?)' for a close match of `name` among `valid`, else ''."""
    close = difflib.get_close_matches(str(name).lower(), list(valid), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def plain_scalars(obj):
    """Replace the 0-d NumPy/JAX number fields of a frozen dataclass (`jnp.array(1e-4)`,
    `np.float32(0.5)`, `np.int64(100)`) by Python numbers, so option checks see numbers
    and the object stays hashable (a JAX array is not)."""
    for name, value in vars(obj).items():
        if isinstance(value, (np.ndarray, np.generic, jax.Array)) and np.shape(value) == ():
            if not_jax_tracer(value) and np.issubdtype(np.asarray(value).dtype, np.number):
                object.__setattr__(obj, name, np.asarray(value).item())


def check_count(owner, name, value, minimum):
    """OptionError unless `value` is an integer (not a bool) >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise OptionError(f"{owner}: {name}={value!r} must be an integer >= {minimum}")


def _observed_mask(fn, shape):
    """Where the observed value counts (masked-out entries may hold NaN on purpose); None
    when a mask is computed inside the model (unknown while its structure is read)."""
    mask = np.ones(shape, bool)
    while isinstance(fn, MaskedDistribution):
        m = fn._mask
        if m is False:
            return np.zeros(shape, bool)
        if isinstance(m, jax.core.Tracer):
            return None
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
        if isinstance(unwrapped(site["fn"]), _CATEGORICAL) and not jax.numpy.issubdtype(
            jax.numpy.result_type(value), jax.numpy.integer
        ):
            raise DataError(
                f"{model_name}: observed site '{name}' ({distribution_name(site['fn'])}) has "
                f"data of dtype {jax.numpy.result_type(value)}; categories are indices: pass "
                "integers (e.g. y.astype(int))"
            )
        if isinstance(value, jax.core.Tracer):
            continue  # built under jit: shapes are known, values are not
        value = np.asarray(value)
        if np.issubdtype(value.dtype, np.inexact):
            counted = _observed_mask(site["fn"], value.shape)
            if counted is None:
                continue  # which entries count is computed in the model
            bad = int(np.count_nonzero(counted & ~np.isfinite(value)))
            if bad:
                raise DataError(
                    f"{model_name}: observed site '{name}' has {bad} non-finite value(s) "
                    f"(NaN or inf) out of {value.size}; drop or impute them, or pass "
                    "obs_mask= to ppl.sample to treat them as missing"
                )


def _checkable_parameters(fn):
    """(name, value, constraint) of each parameter of distribution `fn` that a check can
    decide: a concrete value, under a constraint that does not depend on the others."""
    for param, value in fn.get_args().items():
        constraint = fn.arg_constraints[param]
        if not (isinstance(value, jax.core.Tracer) or constraints.is_dependent(constraint)):
            yield param, value, constraint


def check_parameters(trace, model_name):
    """Each concrete parameter of each site's distribution (and of the distributions it
    wraps) inside its constraint, checked with NumPy: NumPyro's own check when it builds
    a distribution runs jax.numpy eagerly, one compiled program per operation (0.7 s for
    one 100 x 100 `scale_tril`, more than a small model's whole MCMC run)."""
    for name, site in trace.items():
        fn = site["fn"] if site["type"] == "sample" else None
        while isinstance(fn, Distribution):
            for param, value, constraint in _checkable_parameters(fn):
                if not np.all(constraint(np.asarray(value))):
                    raise ModelError(
                        f"{model_name}: site '{name}': {type(fn).__name__} got an invalid "
                        f"{param} (outside {constraint}); check the value the model gives it"
                    )
            fn = getattr(fn, "base_dist", None)


_numpyro_validate_args = Distribution.validate_args


def _validate_concrete_args(self, strict=True):
    """NumPyro's check of a new distribution's parameters, skipping those that are tracers.
    A traced parameter's check gives a traced answer, which NumPyro ignores (`strict=False`,
    as its constructors ask), yet it runs under `jax.ensure_compile_time_eval`, which
    compiles each constant part of it eagerly: ~0.5 s of the first compiled program of a
    model with a 100 x 100 `scale_tril`."""
    if strict:
        return _numpyro_validate_args(self, strict)
    with jax.ensure_compile_time_eval():
        for param, value, constraint in _checkable_parameters(self):
            valid = constraint(value)
            if not_jax_tracer(valid) and not np.all(valid):
                raise ValueError(
                    f"{type(self).__name__} distribution got invalid {param} parameter."
                )


@contextmanager
def traced_parameters_unchecked():
    """Run a model with `_validate_concrete_args` as NumPyro's parameter check: the same
    errors (concrete parameters are checked as before, traced ones never could be), fewer
    compilations. Distributions still check the values they score (support masks)."""
    if Distribution.validate_args is _validate_concrete_args:  # nested: already in place
        yield
        return
    Distribution.validate_args = _validate_concrete_args
    try:
        yield
    finally:
        Distribution.validate_args = _numpyro_validate_args


def traced(constraint):
    """Whether a constraint (or one it wraps, e.g. `independent(interval(...))`) holds
    traced values: a support that depends on latent values."""
    for v in vars(constraint).values():
        if isinstance(v, jax.core.Tracer) or (isinstance(v, Constraint) and traced(v)):
            return True
    return False


def outside(constraint, value):
    """Where a concrete `value` lies outside `constraint` (a boolean array); None when
    that cannot be known before running (a traced value, or a support that depends on
    latent values)."""
    if traced(constraint) or any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(value)):
        return None
    with jax.ensure_compile_time_eval():  # (callers may run under jit)
        inside = constraint(jnp.asarray(value))
    return None if isinstance(inside, jax.core.Tracer) else ~np.asarray(inside)


def observed_in_support(trace, model_name):
    """Names of the observed sites of a structural trace whose data is bound (concrete,
    not computed in the model) and lies in a support that does not depend on latent
    values; a DataError names a site with counted values outside its support.

    These sites can skip NumPyro's support check when scored (`SkipCheckedSupport`): it
    puts a select over all of the data into every evaluation and gradient."""
    names = []
    for name, site in trace.items():
        if site["type"] != "sample" or not site["is_observed"] or isinstance(site["fn"], Unit):
            continue
        value, fn, handler_mask = site["value"], site["fn"], site.get("mask")
        if isinstance(value, jax.core.Tracer) or isinstance(handler_mask, jax.core.Tracer):
            continue  # computed data, or a mask the data cannot be read without
        support = fn.support
        if traced(support):
            continue  # e.g. obs ~ Uniform(0, theta): the check is part of the density
        value = np.asarray(value)
        counted = _observed_mask(fn, value.shape)
        if counted is None:
            continue
        if handler_mask is not None:
            counted = counted & np.broadcast_to(np.asarray(handler_mask, bool), value.shape)
        while isinstance(support, independent):
            support = support.base_constraint
        inside = np.asarray(support(value))  # event constraints (simplex) drop event dims
        counted = counted.reshape(inside.shape + (-1,)).any(-1)
        bad = counted & ~inside
        if bad.any():
            first = tuple(np.argwhere(bad)[0])  # (an index of `bad`: the value's batch dims)
            example = value[first] if value.ndim else value
            raise DataError(
                f"{model_name}: observed site '{name}' has {int(bad.sum())} value(s) outside "
                f"the support of its {distribution_name(fn)} ({fn.support}), e.g. {example}; "
                "such data has probability zero: correct it, or drop those entries"
            )
        names.append(name)
    return frozenset(names)


def _unvalidated(fn):
    """A shallow copy of `fn` (and of the distributions it wraps) that scores values
    without its support check."""
    fn = copy.copy(fn)
    fn._validate_args = False
    if isinstance(getattr(fn, "base_dist", None), Distribution):
        fn.base_dist = _unvalidated(fn.base_dist)
    return fn


class SkipCheckedSupport(Messenger):
    """Score the observed sites `names` (their data checked by `observed_in_support`
    when the model was bound) without NumPyro's support check."""

    def __init__(self, fn, names):
        self.names = names
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "sample" and msg["is_observed"] and msg["name"] in self.names:
            msg["fn"] = _unvalidated(msg["fn"])


#: What JAX raises when Python needs the value of a traced array (bool/int conversions
#: are ConcretizationTypeErrors).
TRACER_ERRORS = (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError)


@contextmanager
def explain_tracer_errors(model_name):
    """Turn JAX's tracer errors raised inside a model into an error that says what to change."""
    try:
        yield
    except TRACER_ERRORS as e:
        raise ModelError(
            f"{model_name}: the model uses a sampled value where JAX needs a concrete one "
            f"({type(e).__name__}). Inside a model, compute with jax.numpy rather than numpy "
            "(e.g. index a jnp.array, not an np.array, with a sampled index), and use "
            "jnp.where instead of Python `if` on sampled values."
        ) from e
