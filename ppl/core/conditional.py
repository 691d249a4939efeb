"""`ConditionalDensity`: a LogDensity seen as a function of some of its sites.

Block (Gibbs) updates move a few sites while the others stay put. This view
offers the same interface kernels use on a whole LogDensity (`potential`,
`size`, `sites` with offsets into the block's own vector, `discrete_sites`), so
any kernel runs unchanged on a block.
"""

import dataclasses

import numpy as np

from ppl.errors import ModelError

__all__ = ["ConditionalDensity", "block_indices"]


def block_indices(logdensity, names):
    """Flat indices of the sites `names` in `logdensity`'s vector, in the given order."""
    sites = logdensity.sites
    unknown = [n for n in names if n not in sites]
    if unknown:
        raise ModelError(
            f"{logdensity.model.name}: no latent site(s) {unknown}; latent sites are {list(sites)}"
        )
    return np.concatenate(
        [np.arange(sites[n].offset, sites[n].offset + sites[n].size) for n in names]
        + [np.zeros(0, dtype=int)]
    )


class ConditionalDensity:
    """The density over the sites `names`, all other coordinates held at `z`."""

    def __init__(self, logdensity, names, z):
        self.full = logdensity
        self.model = logdensity.model
        self.names = tuple(names)
        self.indices = block_indices(logdensity, self.names)
        self.z = z
        sites, offset = {}, 0
        for n in self.names:
            sites[n] = dataclasses.replace(logdensity.sites[n], offset=offset)
            offset += sites[n].size
        self.sites = sites

    @property
    def size(self):
        return len(self.indices)

    @property
    def discrete_sites(self):
        return tuple(n for n, s in self.sites.items() if s.is_discrete)

    def embed(self, zb):
        """The full position with this block set to `zb`."""
        return self.z.at[self.indices].set(zb)

    def potential(self, zb):
        return self.full.potential(self.embed(zb))

    def __call__(self, zb):
        return self.full(self.embed(zb))

    def values(self, zb):
        return self.full.values(self.embed(zb))

    def require_continuous(self, method, alternatives=None):
        from ppl.core.logdensity import require_continuous

        require_continuous(self, method, alternatives)
