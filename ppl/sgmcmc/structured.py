"""Structured SG-MCMC (Alexos, Boyd & Mandt, ICML 2022).

The parameters are split into groups (by site name). Each chain keeps a pool
of its last `pool_size` positions. A group's update uses the gradient of the
log density with the *other* groups' values drawn from their pools, not their
current values: the chain then samples the "self-averaged" target

    q_i(z_i) ∝ exp(E_{z_-i ~ q_-i}[log p(z_i, z_-i | data)]),   i = 1..M,

the fixed point of coordinate-ascent VI over the group factorisation, found
non-parametrically. Breaking the dependencies between groups lets the chain mix
faster, at the price of the correlations between groups (within a group they
are kept). For a Gaussian posterior N(μ, Λ⁻¹) and one group per coordinate, q is
N(μ, diag(1/Λ_ii)): the right means, the conditional variances. That is the fixed
point; reaching it needs the pools to forget the start, a burn-in that grows with
`pool_size`, and strongly correlated groups approach it slowly (the spread check and
R-hat in the diagnostics say when a run has not).

Two variants:

- `rho=None` (fully factorised, K passes): every step evaluates M gradients,
  one per group, each at the point where only that group holds its current
  value, and moves every group with its own gradient.
- `rho` in (0, 1] (dropout): one gradient per step. Each group is kept (its
  current value) with probability rho, otherwise replaced by a pool draw; the
  gradient at that point moves the kept groups, the others stay put this step.
  rho = 1 is the base sampler exactly; smaller rho breaks more dependencies.

The base sampler (SGLD, PSGLD, SGHMC, SGNHT) moves the groups; its state
(momentum, preconditioner) is kept per coordinate as usual.
"""

from dataclasses import dataclass
from functools import partial
from itertools import chain as chained

import jax
import jax.numpy as jnp
import numpy as np

from ppl.core import draws
from ppl.errors import OptionError
from ppl.infer.method import check_option
from ppl.sgmcmc.method import Sampler, SGMCMCMethod
from ppl.sgmcmc.minibatch import estimate

__all__ = ["Structured"]


@dataclass(frozen=True)
class Structured(SGMCMCMethod):
    """Structured SG-MCMC around a base sampler.

    base: the sampler that moves each group (its step size, schedule, thinning,
        control variates, data_parallel and init are the run's).
    groups: "sites" (one group per latent site) or a list of groups, each a list of
        site names; sites named in no group form one more group.
    rho: None for the fully factorised K-pass variant, or the keep probability of the
        dropout variant (one gradient per step; rho=1 is the base sampler).
    pool_size: past positions kept per chain to draw the other groups from.

    >>> method = ppl.sgmcmc.Structured(
    ...     base=ppl.sgmcmc.SGLD(step_size=1e-3), groups=[["w1"], ["w2", "b"]], rho=0.5)
    >>> # bnn: a model with weight sites w1, w2, b and a subsampled data plate
    >>> post = ppl.infer(bnn(x, y), method, num_samples=1000, num_warmup=1000)
    """

    base: Sampler = None
    groups: object = "sites"
    rho: float | None = None
    pool_size: int = 100

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.base, Sampler):
            raise OptionError(
                f"Structured: base={self.base!r} must be a plain SG-MCMC sampler such as "
                "ppl.sgmcmc.SGLD(step_size=1e-3) (SGLD, PSGLD, SGHMC or SGNHT)"
            )
        object.__setattr__(self, "groups", _normalise_groups(self.groups))
        if self.rho is not None:
            check_option(self, "rho", lambda v: 0 < v <= 1, "None or a number in (0, 1]")
        check_option(self, "pool_size", lambda v: v >= 1, "an integer >= 1", integer=True)

    @property
    def options(self):
        return self.base

    def grads_per_step(self, density):
        passes = 1 if self.rho is not None else len(self.group_of_coordinate(density)[1])
        return passes * self.base.grads_per_step(density)

    def check(self, density):
        self.base.check(density)
        if self.groups == "sites":
            return
        sites = list(density.sites)
        seen = {}
        for g, group in enumerate(self.groups):
            for name in group:
                if name not in density.sites:
                    raise OptionError(
                        f"Structured: group {g} names site '{name}', which "
                        f"{density.model.name} does not have; its latent sites are {sites}"
                    )
                if name in seen:
                    raise OptionError(
                        f"Structured: site '{name}' is in groups {seen[name]} and {g}; put "
                        "each site in one group"
                    )
                seen[name] = g

    def group_of_coordinate(self, density):
        """(group index of each coordinate of z, groups as tuples of site names)."""
        sites = density.sites
        if self.groups == "sites":
            groups = [(n,) for n in sites]
        else:
            groups = list(self.groups)
            named = set(chained(*groups))
            rest = tuple(n for n in sites if n not in named)
            groups += [rest] if rest else []
        ids = np.zeros(density.size, np.int32)
        for g, group in enumerate(groups):
            for name in group:
                ids[sites[name].offset : sites[name].offset + sites[name].size] = g
        return ids, groups

    def init_state(self, z):
        return self.base.init_state(z)

    def update(self, key, state, grad, step_size):
        return self.base.update(key, state, grad, step_size)

    def init_pool(self, z):
        return jnp.tile(z, (self.pool_size, 1))

    def move(self, target, key, chain):
        key_grad, key_move = draws.split(key)  # as the base sampler splits its key
        key_slot, key_keep = draws.split(jax.random.fold_in(draws.written_out(key), 1))
        ids, groups = self.group_of_coordinate(target.density)
        z, pool, m = chain.state.z, chain.pool, len(groups)
        cols = jnp.arange(z.shape[0])
        if self.rho is None:  # pass i: group i current, every other group from its pool
            slots = jax.random.randint(key_slot, (m, m), 0, self.pool_size)
            own = ids[None, :] == np.arange(m)[:, None]
            points = jnp.where(own, z, pool[slots[:, ids], cols])
            draw = partial(
                estimate, replace=self.base.replace, data_parallel=self.base.data_parallel
            )
            values, grads = jax.vmap(draw, (None, 0, None))(target, points, key_grad)
            value, grad, kept = values.mean(), grads[ids, cols], None
        else:  # one pass: each group current with probability rho, else from its pool
            slots = jax.random.randint(key_slot, (m,), 0, self.pool_size)
            kept = jax.random.bernoulli(key_keep, self.rho, (m,))[ids]
            point = jnp.where(kept, z, pool[slots[ids], cols])
            value, grad = estimate(
                target, point, key_grad, self.base.replace, self.base.data_parallel
            )
        h = self.base.schedule(self.base.step_size, chain.t)
        state = self.base.update(key_move, chain.state, grad, h)
        if kept is not None:  # groups that were not kept do not move
            state = jax.tree.map(
                lambda new, old: jnp.where(kept, new, old) if new.shape == z.shape else new,
                state, chain.state,
            )  # fmt: skip
        pool = pool.at[chain.t % self.pool_size].set(state.z)
        return state, pool, value, grad, h


def _normalise_groups(groups):
    if isinstance(groups, str):
        if groups != "sites":
            raise OptionError(
                f"Structured: groups={groups!r}; use 'sites' (one group per site) or a list "
                "of groups of site names, e.g. [['w1'], ['w2', 'b']]"
            )
        return groups
    try:
        out = tuple((g,) if isinstance(g, str) else tuple(g) for g in groups)
    except TypeError:
        out = None
    if not out or not all(out) or not all(isinstance(n, str) for g in out for n in g):
        raise OptionError(
            f"Structured: groups={groups!r} must be 'sites' or a non-empty list of non-empty "
            "lists of site names, e.g. [['w1'], ['w2', 'b']]"
        )
    return out
