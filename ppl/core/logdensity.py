"""`LogDensity`: a bound model as a function of one flat unconstrained vector.

Inference code sees only this object. It traces the model once up front to
learn its latent sites (shape, support, discreteness), checks the observed
data, and from then on every method is a pure, jittable function of `z`.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions.transforms import biject_to
from numpyro.distributions.util import is_identically_one
from numpyro.infer.util import compute_log_probs

from ppl.core import handlers
from ppl.core.checks import check_observed_sites
from ppl.errors import InferenceError, ModelError, OptionError

__all__ = ["LogDensity", "Site", "INIT_STRATEGIES"]

INIT_STRATEGIES = ("uniform", "prior", "median")


class Site(NamedTuple):
    """What inference needs to know about one latent site."""

    name: str
    shape: tuple
    unconstrained_shape: tuple
    offset: int
    support: object
    is_discrete: bool
    distribution: str
    dtype: object

    @property
    def size(self):
        return int(np.prod(self.unconstrained_shape, dtype=int))


def _transform(site):
    return None if site.is_discrete else biject_to(site.support)


class LogDensity:
    """The log joint density of a bound model over its latent sites.

    `z` is a flat vector of unconstrained values (length `size`); `constrain(z)`
    maps it back to named values on each site's support. The density includes
    the log-Jacobians of those transforms and splits into `log_prior` (latent
    sites and Jacobians) and `log_likelihood` (observed sites and factors), the
    split that tempering needs.

    >>> ld = m.log_density()
    >>> z = ld.init(jax.random.key(0))
    >>> value, grad = jax.value_and_grad(ld)(z)
    """

    def __init__(self, bound_model, seed=0):
        self.model = bound_model
        trace = bound_model.trace(seed=seed)
        check_observed_sites(trace, bound_model.name)
        sites, offset = {}, 0
        for name, s in trace.items():
            if s["type"] != "sample" or s["is_observed"]:
                continue
            value = jnp.asarray(s["value"])
            support = s["fn"].support
            discrete = bool(support.is_discrete)
            ushape = value.shape if discrete else biject_to(support).inverse_shape(value.shape)
            sites[name] = Site(
                name, value.shape, tuple(ushape), offset, support, discrete,
                type(s["fn"]).__name__, value.dtype,
            )  # fmt: skip
            offset += sites[name].size
        if not sites:
            raise ModelError(
                f"{bound_model.name} has no latent sites: every ppl.sample is observed, so there "
                "is nothing to infer; leave a site's obs= unset (or bind its data to None)"
            )
        self.sites = sites
        self.size = offset
        self.observed = tuple(n for n, s in trace.items() if s["type"] == "sample" and s["is_observed"])
        self.deterministic = tuple(n for n, s in trace.items() if s["type"] == "deterministic")
        self._key = jax.random.key(seed)

    # ----- layout -----------------------------------------------------------------

    @property
    def discrete_sites(self):
        return tuple(n for n, s in self.sites.items() if s.is_discrete)

    def unflatten(self, z):
        """Flat unconstrained vector -> dict of unconstrained arrays, site shapes."""
        return {
            n: jnp.reshape(z[s.offset : s.offset + s.size], s.unconstrained_shape)
            for n, s in self.sites.items()
        }

    def constrain(self, z):
        """Flat unconstrained vector -> dict of values on each site's support."""
        return self._constrain_with_log_det(z)[0]

    def unconstrain(self, values):
        """Dict of constrained values (one per latent site) -> flat unconstrained vector."""
        parts = []
        for n, s in self.sites.items():
            t = _transform(s)
            v = jnp.asarray(values[n])
            u = v.astype(jnp.result_type(float)) if t is None else t.inv(v)
            parts.append(jnp.reshape(u, (-1,)))
        return jnp.concatenate(parts)

    def _constrain_with_log_det(self, z):
        values, log_det = {}, 0.0
        for n, u in self.unflatten(z).items():
            t = _transform(self.sites[n])
            if t is None:
                values[n] = u.astype(self.sites[n].dtype)
            else:
                values[n] = t(u)
                log_det = log_det + jnp.sum(t.log_abs_det_jacobian(u, values[n]))
        return values, log_det

    # ----- densities --------------------------------------------------------------

    def terms(self, z, key=None):
        """(log prior incl. Jacobians, log likelihood) at `z`.

        `key` only matters for models with subsampled plates: it draws the minibatch.
        """
        values, log_det = self._constrain_with_log_det(z)
        model = handlers.seed(self.model, rng_seed=self._key if key is None else key)
        site_lp, trace = compute_log_probs(model, (), {}, values)
        log_prior = log_det * self._latent_scale(trace)
        log_prior = log_prior + sum((site_lp[n] for n in self.sites), start=0.0)
        log_lik = sum((site_lp[n] for n in site_lp if n not in self.sites), start=0.0)
        return log_prior, log_lik

    def _latent_scale(self, trace):
        scales = {trace[n]["scale"] for n in self.sites}
        scales.discard(None)
        if not scales or all(is_identically_one(s) for s in scales):
            return 1.0
        if len(scales) == 1:
            return scales.pop()
        raise ModelError("latent sites under differently scaled plates are not supported yet")

    def __call__(self, z, key=None):
        """Log joint density (with Jacobians) at the unconstrained point `z`."""
        log_prior, log_lik = self.terms(z, key)
        return log_prior + log_lik

    def log_prior(self, z, key=None):
        return self.terms(z, key)[0]

    def log_likelihood(self, z, key=None):
        return self.terms(z, key)[1]

    def potential(self, z):
        """Negative log joint: the potential energy of Hamiltonian methods."""
        return -self(z)

    def value_and_grad(self, z):
        return jax.value_and_grad(self)(z)

    def values(self, z, key=None):
        """Constrained latent values and deterministic sites at `z`."""
        values = self.constrain(z)
        if not self.deterministic:
            return values
        model = handlers.substitute(
            handlers.seed(self.model, rng_seed=self._key if key is None else key), data=values
        )
        trace = handlers.trace(model).get_trace()
        return {**values, **{n: trace[n]["value"] for n in self.deterministic}}

    # ----- initialisation ---------------------------------------------------------

    def prior_point(self, key):
        """Unconstrained flat vector of one draw of the latent sites from the prior."""
        trace = handlers.trace(handlers.seed(self.model, rng_seed=key)).get_trace()
        return self.unconstrain({n: trace[n]["value"] for n in self.sites})

    def _propose(self, key, strategy, radius):
        if strategy == "prior":
            return self.prior_point(key)
        if strategy == "median":
            return jnp.median(jax.vmap(self.prior_point)(jax.random.split(key, 15)), axis=0)
        key_prior, key_unif = jax.random.split(key)
        z = jax.random.uniform(key_unif, (self.size,), minval=-radius, maxval=radius)
        if not self.discrete_sites:
            return z
        return jnp.where(self._discrete_mask(), self.prior_point(key_prior), z)

    def _discrete_mask(self):
        mask = np.zeros(self.size, bool)
        for s in self.sites.values():
            mask[s.offset : s.offset + s.size] = s.is_discrete
        return mask

    def init(self, key, strategy="uniform", radius=2.0, max_tries=100):
        """A starting point with finite density and gradient, as (z, found).

        `strategy`: "uniform" (uniform in (-radius, radius) on the unconstrained
        scale, as Stan does), "prior" (a prior draw) or "median" (coordinate
        median of 15 prior draws). Retries new draws up to `max_tries` times.
        """
        if strategy not in INIT_STRATEGIES:
            raise OptionError(
                f"unknown init strategy {strategy!r}; choose one of {', '.join(INIT_STRATEGIES)}"
            )

        def finite(z):
            value, grad = self.value_and_grad(z)
            return jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))

        def body(carry):
            key, _, tries = carry
            key, sub = jax.random.split(key)
            return key, self._propose(sub, strategy, radius), tries + 1

        def cond(carry):
            _, z, tries = carry
            return (tries < max_tries) & ~finite(z)

        key, sub = jax.random.split(key)
        _, z, _ = jax.lax.while_loop(cond, body, (key, self._propose(sub, strategy, radius), 0))
        return z, finite(z)

    def require_continuous(self, method):
        """Raise a clear error if a gradient-based `method` meets a discrete site."""
        for name in self.discrete_sites:
            s = self.sites[name]
            raise ModelError(
                f"site '{name}' ({s.distribution}, support {s.support}) is discrete, and "
                f"method '{method}' needs gradients of a continuous density. Marginalise it out "
                "in the model (e.g. dist.MixtureSameFamily for mixture assignments), or sample "
                "it with a method that handles discrete sites."
            )

    def check_finite_start(self, found):
        bad = np.flatnonzero(~np.asarray(found))
        if bad.size:
            raise InferenceError(
                f"no starting point with a finite log density and gradient for chain(s) "
                f"{bad.tolist()} after 100 tries: check the model for impossible values "
                "(e.g. data outside a distribution's support), or try init='prior'"
            )

