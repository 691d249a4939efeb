"""Flow guides: a normalizing flow over the model's unconstrained space as an AutoGuide.

u = T(loc + scale ⊙ ε), ε ~ N(0, I): a learned diagonal Gaussian (params "auto_loc",
"auto_scale") pushed through the flow T (each array leaf of its params a `ppl.param`
named "auto_flow/<path>"). The guide program samples ε (site "_auto_eps") and then u
(site "_auto_u") from `Pushforward`, a point mass at T(z0) whose log density is
-log|det dT/dε| - Σ log scale, so one forward pass gives the draw and its log q:
log q(u) = log N(ε) - Σ log scale - log|det ∂T/∂z0|.

For path gradients (`ppl.vi.ELBO(path_gradient=True)`), `Pushforward.path_log_prob`
gives log q at the draw with the parameters held fixed, as a function of the draw:
its gradient is ∇_u log q(u) · ∂u/∂θ. Flows whose layers all give J⁻ᵀ by structure
(affine, permutations, planar, radial, coupling) carry ∇ log q along the forward pass,
layer by layer (Vaitl et al. 2022: `Bijector.forward_and_score`); others (autoregressive
layers) use ∇_u log q = J⁻ᵀ ∇_ε log q(T(ε)) with the full Jacobian J = ∂u/∂ε and a solve.
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.transforms import biject_to

from ppl import dist
from ppl.core.primitives import param, sample
from ppl.errors import ModelError, OptionError
from ppl.flows.bijector import Bijector
from ppl.vi.guides import AutoGuide, _check_scale, _path_name

__all__ = ["FlowGuideBase", "FlowGuide", "Pushforward"]

sg = jax.lax.stop_gradient


class PointGivenEps(Distribution):
    """A guide's draw `u` given its base draw ε: a point mass at `u` scored by
    `log_q_given_eps` (log N(ε) excluded: the ε site carries it). The value is not
    checked against u: score it at its own draws. Subclasses set both attributes."""

    arg_constraints = {}
    support = constraints.real_vector
    reparametrized_params = []
    has_rsample = True
    #: `ppl.vi.draw(gradient=False)` refuses it: its log q at a held draw is not known.
    scores_own_draws_only = True

    def rsample(self, key, sample_shape=()):
        return jnp.broadcast_to(self.u, sample_shape + self.u.shape)

    def sample(self, key, sample_shape=()):
        return sg(self.rsample(key, sample_shape))

    def log_prob(self, value):
        return self.log_q_given_eps


class Pushforward(PointGivenEps):
    """u = T(loc + scale ε) for a given ε: the conditional point mass of a flow guide's
    draw given its base draw, scored by the density of u."""

    pytree_aux_fields = ("flow",)

    def __init__(self, flow, weights, loc, scale, eps):
        self.flow, self.weights, self.loc, self.scale, self.eps = flow, weights, loc, scale, eps
        z0 = loc + scale * eps
        self.u, log_det = flow.forward_and_log_det(weights, z0)
        self.log_q_given_eps = -log_det - jnp.sum(jnp.log(scale))
        super().__init__(batch_shape=(), event_shape=jnp.shape(eps)[-1:])

    def path_log_prob(self, value):
        """log q(value) with the parameters held fixed: equal in value to `log_prob`,
        with gradient ∇_u log q(u) (parameters constant) through `value`."""
        flow, weights, loc, scale = self.flow, sg(self.weights), sg(self.loc), sg(self.scale)
        eps = sg(self.eps)

        if flow.has_fast_score:  # layer by layer from the base's score -ε / scale
            grad_u = flow.forward_and_score(weights, loc + scale * eps, -eps / scale)[1]
        else:
            grad_u = _score_by_jacobian(flow, weights, loc, scale, eps)
        return sg(self.log_q_given_eps) + jnp.dot(sg(grad_u), value - sg(value))


def _score_by_jacobian(flow, weights, loc, scale, eps):
    """∇_u log q(u) at u = T(loc + scale ε) for any flow: J⁻ᵀ ∇_ε log q(T(ε)), with the
    Jacobian J = ∂u/∂ε built in full (d forward passes and a solve)."""

    def push(e):
        return flow.forward(weights, loc + scale * e)

    def log_q(e):  # log q(T(e)) as a function of e
        log_det = flow.forward_and_log_det(weights, loc + scale * e)[1]
        return -0.5 * jnp.sum(e**2) - log_det

    return jnp.linalg.solve(jax.jacfwd(push)(eps).T, jax.grad(log_q)(eps))


class FlowGuideBase(AutoGuide):
    """What every flow guide shares; subclasses give `flow` and `init_scale`."""

    flow: Bijector
    init_scale: float

    def check(self):
        if not isinstance(self.flow, Bijector):
            raise OptionError(
                f"{type(self).__name__}: flow={self.flow!r} must be a ppl.flows bijector "
                "(e.g. ppl.flows.Chain([ppl.flows.Planar()] * 8))"
            )
        _check_scale(type(self).__name__, self.init_scale)
        if self.flow.context_size:
            raise OptionError(
                f"{type(self).__name__}: the flow reads a context of size "
                f"{self.flow.context_size}, but an automatic guide has no context; use a "
                "conditional flow in a DSL guide instead"
            )

    def bind(self, model):
        self.check()
        return super().bind(model)

    def check_log_density(self, model, ld):
        check_event_size(model, ld, f"{type(self).__name__}'s flow", self.flow.event_size)

    def latent(self, d, init):
        loc = param("auto_loc", init)
        scale = param("auto_scale", jnp.full(d, self.init_scale), constraint=constraints.positive)
        weights = register("auto_flow", self.flow.init(jax.random.key(0), d))
        eps = sample("_auto_eps", dist.Normal(0.0, 1.0).expand([d]).to_event(1))
        return sample("_auto_u", Pushforward(self.flow, weights, loc, scale, eps))

    # ----- the fitted guide as a density (plots, checks) ----------------------------

    def unpack(self, params, d):
        """(loc, scale, flow weights) from the guide's (unconstrained) `params`, for a
        latent space of size d."""
        template = self.flow.init(jax.random.key(0), d)
        leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
        weights = [jnp.asarray(params["auto_flow" + _path_name(p)]) for p, _ in leaves]
        scale = constraints_positive(jnp.asarray(params["auto_scale"]))
        return jnp.asarray(params["auto_loc"]), scale, jax.tree.unflatten(treedef, weights)

    def sample_and_log_prob(self, params, key, num_samples):
        """`num_samples` draws u over the unconstrained space and their log q(u): one
        forward pass each."""
        d = jnp.shape(params["auto_loc"])[-1]
        loc, scale, weights = self.unpack(params, d)
        eps = jax.random.normal(key, (num_samples, d))

        def one(e):
            u, log_det = self.flow.forward_and_log_det(weights, loc + scale * e)
            return u, dist.Normal(0.0, 1.0).log_prob(e).sum() - jnp.sum(jnp.log(scale)) - log_det

        return jax.vmap(one)(eps)

    def log_prob(self, params, u):
        """log q(u) at points u (..., d) of the unconstrained space, by the flow's inverse."""
        d = jnp.shape(u)[-1]
        loc, scale, weights = self.unpack(params, d)

        def one(v):
            z0, log_det = self.flow.inverse_and_log_det(weights, v)
            e = (z0 - loc) / scale
            return dist.Normal(0.0, 1.0).log_prob(e).sum() - jnp.sum(jnp.log(scale)) + log_det

        flat = jnp.reshape(u, (-1, d))
        return jax.vmap(one)(flat).reshape(jnp.shape(u)[:-1])


def check_event_size(model, ld, what, size):
    """Raise unless `what` (working on events of `size`; None: any) fits the model's
    unconstrained latent space `ld`."""
    if size is not None and size != ld.size:
        sites = ", ".join(f"{s.name} ({s.size})" for s in ld.sites.values())
        raise ModelError(
            f"{model.name}: {what} works on events of size {size}, but the model's "
            f"unconstrained latent space has size {ld.size} ({sites})"
        )


def constraints_positive(x):
    return biject_to(constraints.positive)(x)


def register(name, tree):
    """Each array leaf of `tree` as a `ppl.param` named `name/<path>`; the tree of values."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    values = [param(name + _path_name(path), leaf) for path, leaf in leaves]
    return jax.tree.unflatten(treedef, values)


@dataclass(frozen=True)
class FlowGuide(FlowGuideBase):
    """`ppl.flows.FlowGuide(flow, init_scale=0.1)`: any bijector as a guide over the
    model's unconstrained space (see the module docstring)."""

    flow: Bijector
    init_scale: float = 0.1

    def __post_init__(self):
        self.check()
