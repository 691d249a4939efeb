"""`ppl.infer()`: one call from a bound model to a Posterior."""

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from ppl.core.model import as_bound_model
from ppl.errors import OptionError
from ppl.infer.registry import did_you_mean, resolve

__all__ = ["infer"]

_COMMON = ("num_samples", "num_warmup", "num_chains", "seed", "progress")


def _positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise OptionError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _key(seed):
    """An int, a jax.random.key, or a legacy uint32 jax.random.PRNGKey -> a typed key."""
    if isinstance(seed, jax.Array) and jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key):
        if seed.shape == ():
            return seed
    elif isinstance(seed, (jax.Array, np.ndarray)):
        if seed.dtype == np.uint32 and seed.shape == (2,):
            return jax.random.wrap_key_data(jnp.asarray(seed))
        if seed.shape == () and jnp.issubdtype(seed.dtype, jnp.integer):
            return jax.random.key(int(seed))
    elif isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return jax.random.key(int(seed))
    raise OptionError(f"seed must be an integer or a jax.random.key (one key), got {seed!r}")


def infer(
    model, method="nuts", *, num_samples=1000, num_warmup=None, num_chains=4, seed=0,
    progress=None, **options,
):  # fmt: skip
    """Run inference on a bound model and return a `Posterior`.

    method: a name ("nuts", "rwmh", ...) for its defaults, or a method object
        (e.g. `ppl.mcmc.NUTS(target_accept=0.9)`) for configuration.
    num_samples: draws kept per chain. num_chains: independent chains (vectorized).
    num_warmup: tuning steps of MCMC-family methods (default: num_samples).
    seed: an int or a JAX key; the same seed gives the same draws on one machine.
    progress: progress bar; None shows it when writing to a terminal.

    >>> post = ppl.infer(eight_schools(sigma, y=y), method="nuts", num_chains=4, seed=0)
    >>> print(post.summary())
    """
    method = resolve(method)
    if options:
        _reject(options, method)
    model = as_bound_model(model)
    if progress is not None and not isinstance(progress, bool):
        raise OptionError(f"progress must be True, False or None (auto), got {progress!r}")
    common = {
        "num_samples": _positive_int("num_samples", num_samples),
        "num_chains": _positive_int("num_chains", num_chains),
        "seed": _key(seed),
        "progress": progress,
    }
    if "num_warmup" in method.common_options:
        warmup = num_samples if num_warmup is None else num_warmup
        common["num_warmup"] = _positive_int("num_warmup", warmup, minimum=0)
    elif num_warmup is not None:
        raise OptionError(f"method '{method.name}' has no warmup phase; drop num_warmup")
    return method.run(model, **common)


def _reject(options, method):
    name = sorted(options)[0]
    own = method.option_names()
    if name in own:
        cls = type(method).__name__
        raise OptionError(
            f"'{name}' is an option of the method, not of infer(): "
            f"pass method=ppl.{type(method).__module__.split('.')[1]}.{cls}({name}=...)"
        )
    valid = [o for o in _COMMON if o in method.common_options]
    raise OptionError(
        f"unknown option '{name}'{did_you_mean(name, valid + list(own))} for "
        f"infer(method='{method.name}'); infer() takes "
        f"{', '.join(valid)}; options of the method object: {', '.join(own) or 'none'}"
    )
