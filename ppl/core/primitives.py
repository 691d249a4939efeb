"""The DSL's primitives: NumPyro's effectful operations, with ppl's checks.

Every primitive goes through NumPyro's handler stack, so a model written with
`ppl.sample` and one written with `numpyro.sample` are interchangeable.
"""

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.contrib import control_flow
from numpyro.primitives import _PYRO_STACK

from ppl.errors import ModelError, OptionError, PPLError

__all__ = ["sample", "param", "plate", "deterministic", "factor", "scan", "ESTIMATORS"]

#: Gradient estimators a latent site may ask for (used by variational methods).
ESTIMATORS = ("reparam", "reinforce", "enum", "mvd")


def param(name, init_value=None, **kwargs):
    """A parameter `name` with initial value `init_value` (an array, or a function of a
    PRNG key), optimized by `ppl.vi.SVI`; samplers hold it at its initial value and
    warn. Keywords as NumPyro's `param` (e.g. `constraint=dist.constraints.positive`).

    >>> import jax.numpy as jnp
    >>> import ppl
    >>> from ppl import dist
    >>> @ppl.model
    ... def noisy(y):
    ...     mu = ppl.sample("mu", dist.Normal(0, 5))
    ...     scale = ppl.param("scale", 1.0, constraint=dist.constraints.positive)
    ...     ppl.sample("y", dist.Normal(mu, scale), obs=y)
    >>> post = ppl.infer(noisy(jnp.array([0.3, -0.2, 0.5])), method="vi")  # fits scale
    """
    return numpyro.param(name, init_value, **kwargs)


def deterministic(name, value):
    """Record `value` (computed from other sites) as site `name`, so posteriors keep its
    draws; returns `value`.

    >>> import ppl
    >>> from ppl import dist
    >>> @ppl.model
    ... def scaled(y):
    ...     z = ppl.sample("z", dist.Normal(0, 1))
    ...     mu = ppl.deterministic("mu", 10 * z)
    ...     ppl.sample("y", dist.Normal(mu, 1), obs=y)
    >>> scaled(y=9.0).prior(num_samples=100)["mu"].shape
    (100,)
    """
    return numpyro.deterministic(name, value)


def factor(name, log_factor):
    """Add `log_factor` (a log density term, e.g. a marginal likelihood or a penalty) to
    the model's log density, as site `name`.

    >>> import jax.numpy as jnp
    >>> import ppl
    >>> from ppl import dist
    >>> @ppl.model
    ... def penalized():
    ...     x = ppl.sample("x", dist.Normal(0, 1))
    ...     ppl.factor("near_one", -((x - 1.0) ** 2))
    >>> post = ppl.infer(penalized(), method="nuts", num_samples=500)  # mean of x near 2/3
    """
    return numpyro.factor(name, log_factor)


def scan(f, init, xs, length=None, reverse=False, history=1):
    """NumPyro's `scan` (a time loop whose steps may sample), with `f`'s output checked:
    `f(carry, x)` must return (new carry, output), the carry keeping its structure and
    shapes (else a ModelError naming `f`, not JAX's error about scan types). Like
    `ppl.sample`, it runs inside a model:

    >>> import jax.numpy as jnp
    >>> import ppl
    >>> from ppl import dist
    >>> @ppl.model
    ... def ar1(ys):
    ...     def step(x, y):
    ...         x = ppl.sample("x", dist.Normal(0.9 * x, 1.0))
    ...         ppl.sample("y", dist.Normal(x, 0.5), obs=y)
    ...         return x, None
    ...     ppl.scan(step, 0.0, ys)
    >>> post = ppl.infer(ar1(jnp.zeros(20)), method="pf", num_chains=2)
    """

    if not _PYRO_STACK:
        raise ModelError(
            "ppl.scan ran outside inference: its steps' sites draw values under ppl.infer "
            "or a handler; call it inside a @ppl.model function (see help(ppl.scan)), or "
            "use jax.lax.scan for a loop without sites"
        )

    @functools.wraps(f)
    def checked(carry, x):
        out = f(carry, x)
        check_scan_step(None, f, carry, out)
        return out

    return control_flow.scan(checked, init, xs, length=length, reverse=reverse, history=history)


def check_scan_step(where, step, carry, out):
    """ModelError unless `out`, what `step(carry, x)` returned, is (new carry, output) with
    a carry of `carry`'s structure and shapes; `where` (e.g. the model's name) starts the
    message."""
    name = getattr(step, "__name__", type(step).__name__)
    where = f"{where}: the" if where else "The"
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise ModelError(
            f"{where} ppl.scan step function '{name}' must return a pair (new carry, "
            f"output), but it returned {_describe(out)}; e.g. `return x, None` instead of "
            "`return x`"
        )
    before, after = _shapes(carry), _shapes(out[0])
    if before != after:
        raise ModelError(
            f"{where} ppl.scan step function '{name}' returns a carry shaped {after}, "
            f"but the carry it was given (init) is shaped {before}; the carry must keep its "
            "structure and shapes from step to step: give init the carry's shape (e.g. "
            "jnp.zeros(shape)) or return a carry of init's shape"
        )


def _shapes(tree):
    """A pytree's structure with each leaf replaced by its shape, for messages."""
    return jax.tree.map(lambda v: tuple(np.shape(v)), tree)


def _describe(value):
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    if hasattr(value, "shape"):
        return f"one array of shape {tuple(value.shape)}"
    return f"{value!r}"


def _enclosing_plates():
    plates = [h for h in _PYRO_STACK if isinstance(h, numpyro.plate)]
    return ", ".join(f"'{p.name}' (size {p.subsample_size}, dim {p.dim})" for p in plates)


def sample(name, fn, obs=None, *, obs_mask=None, sample_shape=(), infer=None, estimator=None):
    """Draw (or observe, with `obs=`) the random choice `name` from distribution `fn`.

    `estimator` picks the gradient estimator variational methods use for this
    site: one of "reparam", "reinforce", "enum", "mvd".

    >>> import ppl
    >>> from ppl import dist
    >>> @ppl.model
    ... def coin(flips=None):
    ...     p = ppl.sample("p", dist.Beta(1, 1))
    ...     ppl.sample("flips", dist.Bernoulli(p), obs=flips)
    """
    if not isinstance(name, str):
        raise ModelError(f"site names must be strings, got {name!r} ({type(name).__name__})")
    if estimator is not None:
        if estimator not in ESTIMATORS:
            raise OptionError(
                f"site '{name}': unknown estimator {estimator!r}; "
                f"choose one of {', '.join(ESTIMATORS)}"
            )
        infer = {**(infer or {}), "estimator": estimator}
    if isinstance(obs, (list, tuple)):  # data as a Python list: an array, as NumPy would
        obs = jnp.asarray(obs)
    if obs is None and not _PYRO_STACK:
        raise ModelError(
            f"ppl.sample('{name}') ran outside inference: a model's sites draw values under "
            "ppl.infer or a handler (e.g. ppl.handlers.seed(model, rng_seed=0)()); for draws "
            "from a bound model's prior use model.prior(num_samples)"
        )
    if obs is not None and obs_mask is not None:
        return _partly_observed(name, fn, obs, obs_mask, sample_shape, infer)
    try:
        return numpyro.sample(
            name, fn, obs=obs, obs_mask=obs_mask, sample_shape=sample_shape, infer=infer
        )
    except PPLError:
        raise
    except ValueError as e:  # e.g. a batch shape that does not fit the enclosing plates
        plates = _enclosing_plates()
        raise ModelError(
            f"site '{name}' ({type(fn).__name__}, batch shape "
            f"{tuple(getattr(fn, 'batch_shape', ()))}, "
            f"event shape {tuple(getattr(fn, 'event_shape', ()))})"
            + (f" inside plate(s) {plates}" if plates else "")
            + f": {e}. A distribution's batch shape must broadcast with the plates around "
            "it (its rightmost dimensions line up with the plates' dims)"
        ) from e


def _partly_observed(name, fn, obs, obs_mask, sample_shape, infer):
    """`obs` where `obs_mask` is true, a latent `{name}_unobserved` elsewhere, merged in the
    deterministic site `name`.

    Unlike NumPyro, every entry of `{name}_unobserved` keeps its density, also where the
    data is observed (those entries are never used): with none, as in NumPyro, they are
    flat directions that a sampler follows to ~1e12, hitting NUTS's max tree depth at
    every draw and failing the R-hat checks. With it they are independent draws from the
    model that integrate out exactly (the mask is over batch entries), so the posterior
    of every other site is unchanged."""
    with numpyro.handlers.mask(mask=obs_mask):
        observed = sample(f"{name}_observed", fn, obs, sample_shape=sample_shape, infer=infer)
    unobserved = sample(f"{name}_unobserved", fn, sample_shape=sample_shape, infer=infer)
    batch_mask = jnp.reshape(obs_mask, jnp.shape(obs_mask) + (1,) * fn.event_dim)
    return numpyro.deterministic(name, jnp.where(batch_mask, observed, unobserved))


def _is_int(x):
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def plate(name, size, subsample_size=None, dim=None):
    """A batch of conditionally independent sites of length `size`.

    With `subsample_size=B` each run sees a random minibatch of B indices (the
    plate's value: `with ppl.plate("data", N, subsample_size=B) as idx`) and the
    log density of sites inside is scaled by `size / B` (unbiased).
    """
    if _is_int(size) and size < 1:
        raise ModelError(f"plate '{name}': size={size} must be a positive integer")
    for outer in (h for h in _PYRO_STACK if isinstance(h, numpyro.plate)):
        if dim is not None and outer.dim == dim and outer.name != name:
            raise ModelError(
                f"plate '{name}': dim={dim} is taken by the enclosing plate '{outer.name}'; "
                "nested plates need different dims (e.g. dim=-2 for the outer one), or "
                "leave dim out"
            )
    if subsample_size is not None:
        if not _is_int(subsample_size) or subsample_size < 1:
            raise ModelError(
                f"plate '{name}': subsample_size={subsample_size!r} must be a positive integer"
            )
        if _is_int(size) and subsample_size > size:
            raise ModelError(
                f"plate '{name}': subsample_size={subsample_size} exceeds its size {size}; "
                f"use subsample_size <= {size} or leave it out"
            )
    if dim is not None and (not _is_int(dim) or dim >= 0):
        raise ModelError(f"plate '{name}': dim={dim!r} must be a negative integer (e.g. -1, -2)")
    return numpyro.plate(name, size, subsample_size=subsample_size, dim=dim)
