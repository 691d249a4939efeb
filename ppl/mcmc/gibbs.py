"""Gibbs updates of discrete sites by enumerating their finite support.

Each element of a discrete site is drawn from its exact conditional given
everything else: the joint density is evaluated at every support value and the
new value drawn from the normalised weights. Sequentially, element by element,
this is correct for any dependence between elements, at the cost of
(elements × support size) density evaluations per site.

`parallel=True` draws all elements of a site at once from conditionals computed
at the same current state. That is exact only when the elements are conditionally
independent given all other sites (e.g. mixture assignments inside a data plate),
which is the user's assertion, not something checked. The per-element conditionals
then come from one model run per support value: the site is set to that value
everywhere and every site's log-probability is summed onto the site's plate
dimensions, so the cost no longer grows with the number of elements.
"""

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ppl.errors import ModelError, OptionError
from ppl.infer.registry import register
from ppl.mcmc.elliptical import trace_at
from ppl.mcmc.kernel import plain_kernel
from ppl.mcmc.method import MCMCMethod

__all__ = ["DiscreteGibbs", "DiscreteGibbsInfo"]


class DiscreteGibbsInfo(NamedTuple):
    accept_prob: jax.Array
    num_grad_evals: jax.Array
    num_evals: jax.Array


def _draw(key, log_weights, axis=0):
    """Index drawn from unnormalised log weights (NaN counts as impossible)."""
    log_weights = jnp.where(jnp.isnan(log_weights), -jnp.inf, log_weights)
    return jax.random.categorical(key, log_weights, axis=axis)


def _sequential(density, site, values):
    """Update the elements of `site` one after the other (a scan over elements)."""

    def update(key, zb, pe):
        def element(carry, xs):
            zb, pe = carry
            j, k = xs
            candidates = jax.vmap(lambda v: zb.at[site.offset + j].set(v))(values)
            pes = jax.vmap(density.potential)(candidates)
            pick = _draw(k, -pes)
            return (candidates[pick], pes[pick]), None

        xs = (jnp.arange(site.size), jax.random.split(key, site.size))
        (zb, pe), _ = jax.lax.scan(element, (zb, pe), xs)
        return zb, pe, site.size * len(values)

    return update


def _site_log_prob(s):
    """A trace site's log-probability, unsummed (its batch shape), scaled as in the density."""
    fn, value = s["fn"], s["value"]
    lp = fn.log_prob(value, s["intermediates"]) if s.get("intermediates") else fn.log_prob(value)
    scale = s.get("scale")
    return lp if scale is None else scale * lp


def _on_plates(trace, name, batch_shape):
    """Every site's log-probability summed onto the plate dimensions of site `name`:
    entry j is the part of the joint that involves element j (plus terms that
    involve no element, the same for every j)."""
    plates = {f.dim: f.name for f in trace[name]["cond_indep_stack"]}
    total = jnp.zeros(batch_shape)
    for s in trace.values():
        if s["type"] != "sample":
            continue
        lp = jnp.asarray(_site_log_prob(s))
        own = {f.dim: f.name for f in s["cond_indep_stack"]}
        keep = [
            d for d in range(-lp.ndim, 0)
            if d in plates and own.get(d) == plates[d] and lp.shape[d] != 1
        ]  # fmt: skip
        lp = lp.sum(axis=tuple(d for d in range(-lp.ndim, 0) if d not in keep), keepdims=True)
        lp = lp.reshape(lp.shape[max(0, lp.ndim - len(batch_shape)) :])
        total = total + lp
    return total


def _parallel(density, site, values):
    """Update all elements of `site` at once from the current state's conditionals."""

    def update(key, zb, pe):
        def log_weights(v):
            trace = trace_at(density, zb.at[site.offset : site.offset + site.size].set(v))
            return _on_plates(trace, site.name, site.shape)

        logw = jax.vmap(log_weights)(values)  # (support size, *site shape)
        pick = _draw(key, logw, axis=0)
        zb = zb.at[site.offset : site.offset + site.size].set(values[pick].reshape(-1))
        return zb, density.potential(zb), len(values) + 1

    return update


def _plate_indexed(trace_site):
    """Whether every dimension of a site's value is a plate dimension."""
    ndim = jnp.ndim(trace_site["value"])
    dims = {f.dim for f in trace_site["cond_indep_stack"]}
    return not trace_site["fn"].event_shape and all(-i in dims for i in range(1, ndim + 1))


@register("gibbs")
@dataclass(frozen=True)
class DiscreteGibbs(MCMCMethod):
    """Gibbs sampling of discrete sites with finite support, from exact conditionals.

    Alone it samples models whose latent sites are all discrete; for models with
    continuous sites too, give it the discrete block:

    >>> ppl.mcmc.blocks({"z": ppl.mcmc.DiscreteGibbs(parallel=True),
    ...                  ("mu", "sigma"): ppl.mcmc.NUTS()})

    parallel: update all elements of a vector site at once instead of one by one.
        Valid only when the elements are conditionally independent given all other
        sites (mixture assignments in a data plate); that is your assertion, it is
        not checked. The site's dimensions must all be plate dimensions.
    """

    parallel: bool = False
    init: str = "uniform"

    handles_discrete = True

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.parallel, bool):
            raise OptionError(f"DiscreteGibbs: parallel={self.parallel!r} must be True or False")

    def check(self, density):
        name = density.model.name
        continuous = [n for n, s in density.sites.items() if not s.is_discrete]
        if continuous:
            discrete = [n for n in density.sites if n not in continuous]
            fix = "use a continuous method such as 'nuts'"
            if discrete:
                block = repr(discrete[0] if len(discrete) == 1 else tuple(discrete))
                rest = repr(continuous[0] if len(continuous) == 1 else tuple(continuous))
                fix = (
                    "sample them with another kernel in blocks, e.g. ppl.mcmc.blocks("
                    f"{{{block}: ppl.mcmc.DiscreteGibbs(), {rest}: ppl.mcmc.NUTS()}})"
                )
            raise ModelError(
                f"{name}: DiscreteGibbs samples discrete sites only, but site(s) {continuous} "
                f"are continuous; {fix}"
            )
        for n, s in density.sites.items():
            if s.support_values is None:
                raise ModelError(
                    f"{name}: DiscreteGibbs enumerates each site's support, but site '{n}' "
                    f"({s.distribution}, support {s.support}) has no finite enumerable support. "
                    "Give it a distribution with finite support (Bernoulli, Categorical, "
                    "Binomial with fixed total_count, ...)"
                )
        if self.parallel:
            trace = density.model.trace(seed=0)
            for n in density.sites:
                if not _plate_indexed(trace[n]):
                    raise ModelError(
                        f"{name}: DiscreteGibbs(parallel=True) needs every dimension of site "
                        f"'{n}' (shape {density.sites[n].shape}) to be a plate dimension, "
                        "so that its elements can be told apart; sample it inside "
                        "ppl.plate(...) or use DiscreteGibbs(parallel=False)"
                    )

    def kernel(self, density, num_warmup):
        make = _parallel if self.parallel else _sequential
        updates = [
            make(density, site, jnp.asarray(np.asarray(site.support_values, dtype=float)))
            for site in density.sites.values()
        ]

        def transition(key, state):
            zb, pe, evals = state.z, state.potential_energy, 0
            for update, k in zip(updates, jax.random.split(key, len(updates))):
                zb, pe, n = update(k, zb, pe)
                evals += n
            info = DiscreteGibbsInfo(jnp.array(1.0), jnp.array(0), jnp.array(evals))
            return state._replace(z=zb, potential_energy=pe), info

        return plain_kernel(transition, density.potential, uses_gradient=False)
