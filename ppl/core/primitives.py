"""The DSL's primitives: NumPyro's effectful operations, with ppl's checks.

Every primitive goes through NumPyro's handler stack, so a model written with
`ppl.sample` and one written with `numpyro.sample` are interchangeable.
"""

import numpyro
from numpyro.contrib.control_flow import scan

from ppl.errors import ModelError, OptionError

__all__ = ["sample", "param", "plate", "deterministic", "factor", "scan", "ESTIMATORS"]

#: Gradient estimators a latent site may ask for (used by variational methods).
ESTIMATORS = ("reparam", "reinforce", "enum", "mvd")

param = numpyro.param
deterministic = numpyro.deterministic
factor = numpyro.factor


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
                f"site '{name}': unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}"
            )
        infer = {**(infer or {}), "estimator": estimator}
    return numpyro.sample(
        name, fn, obs=obs, obs_mask=obs_mask, sample_shape=sample_shape, infer=infer
    )


def plate(name, size, subsample_size=None, dim=None):
    """A batch of conditionally independent sites of length `size`.

    With `subsample_size=B` each run sees a random minibatch of B indices and the
    log density of sites inside is scaled by `size / B` (unbiased).
    """
    if subsample_size is not None and subsample_size > size:
        raise ModelError(
            f"plate '{name}': subsample_size={subsample_size} exceeds its size {size}; "
            f"use subsample_size <= {size} or leave it out"
        )
    return numpyro.plate(name, size, subsample_size=subsample_size, dim=dim)
