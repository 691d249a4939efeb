"""Guides: automatic ones over the model's unconstrained space, and DSL guides.

An automatic guide is a spec (`Normal()`, ...) that `bind(model)` turns into a guide
program: it draws a flat vector u over the model's unconstrained space (site
"_auto_u"), maps it onto every latent site (deterministic sites named as the model's),
and adds -log |det J| as a factor, so `log_q` is the density of the draw on the
model's own (constrained) space and `score(model, draw)` needs no Jacobian.

A DSL guide is any function with the model's arguments that samples the model's latent
sites by name, with parameters from `ppl.param`; `bind` binds it to the model's data.

>>> guide = ppl.vi.guides.Normal().bind(m)     # used by ppl.vi.SVI
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from numpyro.distributions import constraints

from ppl import dist
from ppl.core import handlers
from ppl.core.model import BoundModel, Model
from ppl.core.primitives import deterministic, factor, param, sample
from ppl.errors import ModelError, OptionError

__all__ = ["AutoGuide", "Normal", "bind_guide"]


class AutoGuide:
    """Base of automatic guides: subclasses give `latent(d, init)`, which samples the
    site "_auto_u" (shape (d,)) with their own parameters, `init` the starting point."""

    prefix = "auto"

    def bind(self, model):
        ld = model.log_density()
        if ld.discrete_sites:
            raise ModelError(
                f"{model.name}: {type(self).__name__} is a guide over continuous sites, but "
                f"{list(ld.discrete_sites)} are discrete; write a DSL guide for them (a function "
                "that samples them, e.g. with estimator='enum' or 'reinforce')"
            )
        return BoundModel(_AutoProgram(self), (ld,))

    def latent(self, d, init):
        raise NotImplementedError


@dataclass(frozen=True)
class _AutoProgram:
    """The guide program of an automatic guide (hashable, so compiled code is shared)."""

    spec: AutoGuide

    def __call__(self, ld):
        with handlers.block():  # the model runs inside: its sites are not the guide's
            z0, _ = ld.candidate(jax.random.key(0), "median")  # prior medians, unconstrained
        u = self.spec.latent(ld.size, z0)
        with handlers.block():
            values, log_det = ld.constrain_with_log_det(u)
        factor("_auto_log_det", -log_det)
        for name, value in values.items():
            deterministic(name, value)


@dataclass(frozen=True)
class Normal(AutoGuide):
    """Mean-field Normal over the unconstrained space (the default guide of "vi")."""

    init_scale: float = 0.1

    def __post_init__(self):
        if not self.init_scale > 0:
            raise OptionError(f"Normal: init_scale={self.init_scale!r} must be positive")

    def latent(self, d, init):
        loc = param("auto_loc", init)
        scale = param("auto_scale", jnp.full(d, self.init_scale), constraint=constraints.positive)
        return sample("_auto_u", dist.Normal(loc, scale).to_event(1))


def bind_guide(guide, model):
    """The guide program for `model`: an automatic guide bound to it, or a DSL guide (a
    function or `@ppl.model`) bound to the model's arguments."""
    if isinstance(guide, AutoGuide):
        return guide.bind(model)
    if isinstance(guide, BoundModel):
        return guide
    if isinstance(guide, Model):
        guide = guide.fn
    if callable(guide):
        return BoundModel(guide, model.args, model.kwargs)
    raise OptionError(
        f"guide={guide!r} must be an automatic guide (ppl.vi.guides.Normal(), ...) or a "
        "function with the model's arguments that samples its latent sites"
    )
