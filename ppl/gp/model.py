"""A GP as a model component, and the GP regression model the GP methods fit.

`f = ppl.gp.sample("f", ppl.gp.GP(kernel), X)` is an ordinary `ppl.sample` site with
f ~ MVN(m(X), K(X, X) + jitter·I), so NUTS and elliptical slice run on GP models with
few inputs. With learned kernel hyperparameters this centred form is a funnel for NUTS
(as in NumPyro): draw f whitened instead, `u ~ Normal(0, 1)` per input and
`f = m(X) + cholesky(K(X, X) + jitter·I) @ u` with `ppl.gp.kernels`, or use elliptical
slice for f. `ppl.gp.regression(X, y, kernel=..., noise=...)` binds the standard model
(latent f, then y ~ Normal(f, noise) or Bernoulli(logits=f)); `ppl.gp.Exact`, `SVGP`
and `CoresetVI` read its inputs, outputs, kernel and noise and fit them at scale.
"""

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import distributions as dist

from ppl.core.model import BoundModel, Model
from ppl.core.primitives import sample as _sample
from ppl.errors import DataError, ModelError, OptionError
from ppl.gp.kernels import Kernel, _as_2d, check_positive
from ppl.gp.linalg import JITTER

__all__ = ["GP", "sample", "regression", "LIKELIHOODS", "GPData", "gp_data"]

LIKELIHOODS = ("gaussian", "bernoulli")


@dataclass(frozen=True, eq=False)
class GP:
    """A Gaussian process prior: kernel k and mean function m (default 0)."""

    kernel: Kernel
    mean_fn: Any = None

    def __post_init__(self):
        if not isinstance(self.kernel, Kernel):
            raise ModelError(
                f"GP: kernel={self.kernel!r} must be a kernel such as ppl.gp.kernels.RBF()"
            )

    def mean(self, X):
        X = _as_2d(X)
        if self.mean_fn is None:
            return jnp.zeros(X.shape[0], X.dtype)
        return jnp.broadcast_to(self.mean_fn(X), X.shape[:1])

    def prior(self, X, jitter=JITTER):
        """The multivariate normal of f(X), with `jitter · mean(diag K)` added to K."""
        X = _as_2d(X)
        K = self.kernel(X, X)
        K = K + jitter * jnp.mean(jnp.diagonal(K)) * jnp.eye(X.shape[0], dtype=K.dtype)
        return dist.MultivariateNormal(self.mean(X), covariance_matrix=K)


def sample(name, gp, X, *, obs=None, jitter=JITTER):
    """Draw f = f(X) ~ GP as the sample site `name` (a vector of length len(X))."""
    if not isinstance(gp, GP):
        raise ModelError(f"ppl.gp.sample('{name}'): expected a ppl.gp.GP, got {type(gp).__name__}")
    X = _as_2d(X, f"ppl.gp.sample('{name}'): X")
    return _sample(name, gp.prior(X, jitter), obs=obs)


def gp_regression(X, y, kernel, noise, mean_fn=None, likelihood="gaussian"):
    """The model function behind `ppl.gp.regression` (undecorated): f ~ GP(mean_fn,
    kernel) at X, then y ~ Normal(f, noise), or Bernoulli(logits=f) for
    likelihood="bernoulli". Bind data with `ppl.gp.regression(X, y, kernel=...,
    noise=...)`, which checks it; the GP methods recognise their model by this function."""
    f = sample("f", GP(kernel, mean_fn), X)
    if likelihood == "gaussian":
        return _sample("y", dist.Normal(f, noise).to_event(1), obs=y)
    return _sample("y", dist.Bernoulli(logits=f).to_event(1), obs=y)


_MODEL = Model(gp_regression)


def finite_2d(X, what):
    """X as a finite numeric (N, D) array ((N,) becomes (N, 1)), or a DataError naming `what`."""
    X = np.asarray(X)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise DataError(f"{what} must be (N,) or (N, D), got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number):
        raise DataError(f"{what} must be numeric, got dtype {X.dtype}")
    bad = ~np.isfinite(X)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise DataError(
            f"{what} has {bad.sum()} non-finite value(s) (NaN or inf), first in row "
            f"{rows[0]} of {X.shape[0]}; drop or impute them"
        )
    return X


def regression(X, y, *, kernel, noise=1.0, mean_fn=None, likelihood="gaussian"):
    """The GP regression model: f ~ GP(mean_fn, kernel) at X, y ~ Normal(f(X), noise)
    (noise = the observation noise's standard deviation) or, with
    likelihood="bernoulli", y ∈ {0, 1} ~ Bernoulli(sigmoid(f(X))). Returns a BoundModel:
    any method runs on it (NUTS for small N), and the GP methods fit it at scale."""
    if likelihood not in LIKELIHOODS:
        raise OptionError(f"likelihood={likelihood!r} must be one of {', '.join(LIKELIHOODS)}")
    if not isinstance(kernel, Kernel):
        raise OptionError(f"kernel={kernel!r} must be a kernel such as ppl.gp.kernels.RBF()")
    if likelihood == "gaussian":
        check_positive("noise", noise, "a positive number (a standard deviation)", scalar=True)
    X = finite_2d(X, "X")
    jax.eval_shape(kernel, X[:1], X[:1])  # a kernel that does not fit X's features fails here
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"y must be a vector (N,), got shape {y.shape}")
    if y.shape[0] != X.shape[0]:
        raise DataError(
            f"X has {X.shape[0]} rows but y has {y.shape[0]} values; they must match "
            "(one output per input)"
        )
    y = finite_2d(y, "y")[:, 0]
    if likelihood == "bernoulli" and not np.all((y == 0) | (y == 1)):
        raise DataError("likelihood='bernoulli' needs y in {0, 1}")
    dtype = jnp.result_type(float)
    return _MODEL(
        jnp.asarray(X, dtype), jnp.asarray(y, dtype), kernel, float(noise), mean_fn, likelihood
    )


@dataclass(frozen=True)
class GPData:
    """What the GP methods read from a `regression` model."""

    X: Any
    y: Any
    kernel: Kernel
    noise: float
    mean_fn: Any
    likelihood: str


def gp_data(model):
    """The GPData of a model made by `ppl.gp.regression`, else a ModelError saying so."""
    if not (isinstance(model, BoundModel) and model.fn is gp_regression):
        name = getattr(model, "name", type(model).__name__)
        raise ModelError(
            f"{name}: the GP methods fit models made by ppl.gp.regression(X, y, kernel=..., "
            "noise=...); other models run with the general methods (e.g. 'nuts', 'vi')"
        )
    return GPData(*model.args, **model.kwargs)
