"""Guides: automatic ones over the model's unconstrained space, and DSL guides.

An automatic guide is a spec (`Normal()`, `MultivariateNormal()`, `LowRank(rank)`,
`Delta()`, `Laplace()`) that `bind(model)` turns into a guide program: it draws a flat
vector u over the model's unconstrained space (site "_auto_u"), maps it onto every
latent site (deterministic sites named as the model's), and adds -log |det J| as a
factor, so `log_q` is the density of the draw on the model's own (constrained) space
and `score(model, draw)` needs no Jacobian.

After fitting, the SVI method calls `finalize(guide, model, params)`: the program and
parameters its draws come from (the fitted guide itself, except for `Laplace`).

A DSL guide is any function with the model's arguments that samples the model's latent
sites by name, with parameters from `ppl.param`; `bind` binds it to the model's data.
`amortized(net, weights)` registers a network's weights as parameters of such a guide.

>>> # m: a bound model, e.g. ppl.examples.eight_schools(sigma, y)
>>> guide = ppl.vi.guides.Normal().bind(m)     # used by ppl.vi.SVI
"""

import inspect
import math
import numbers
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

from ppl import dist
from ppl.core import handlers
from ppl.core.model import BoundModel, Model
from ppl.core.primitives import deterministic, factor, param, sample
from ppl.errors import InferenceError, ModelError, OptionError

__all__ = [
    "AutoGuide", "Normal", "MultivariateNormal", "LowRank", "Delta", "Laplace",
    "Amortized", "amortized", "bind_guide", "finalize",
    "Planar", "Radial", "IAF", "NeuralSpline",
]  # fmt: skip


class AutoGuide:
    """Base of automatic guides: subclasses give `latent(d, init)`, which samples the
    site "_auto_u" (shape (d,)) with their own parameters; `init` is the starting point
    as a lazy initial value for `ppl.param` (a function of a key)."""

    prefix = "auto"
    #: Whether the guide program adds the factor -log |det J| (see `Delta`).
    jacobian = True

    def bind(self, model):
        ld = model.log_density()
        self.check_log_density(model, ld)
        check_continuous(model, ld, type(self).__name__, _DSL_ADVICE)
        ld.require_global_sites(f"{type(self).__name__} (an automatic guide)", LOCAL_ADVICE)
        return BoundModel(_AutoProgram(self), (ld,))

    def check_log_density(self, model, ld):
        """Hook: raise if the guide cannot cover the model's `ld` (before the discrete check)."""

    def latent(self, d, init):
        raise NotImplementedError

    def finalize(self, model, params):
        """(guide program, params) that draws after fitting come from; `params` are the
        fitted unconstrained parameters. Default: the fitted guide, unchanged."""
        return self.bind(model), params


@dataclass(frozen=True)
class _AutoProgram:
    """The guide program of an automatic guide (hashable, so compiled code is shared)."""

    spec: AutoGuide

    def __call__(self, ld):
        u = self.spec.latent(ld.size, prior_median(ld))
        emit_constrained(ld, u, self.spec.jacobian)


_DSL_ADVICE = (
    "; write a DSL guide for them (a function that samples them, e.g. with estimator='enum' "
    "or 'reinforce')"
)


#: What to do about per-data-point latent sites in a subsampled plate (automatic guides
#: keep one set of parameters for the latent vector, whatever the minibatch).
LOCAL_ADVICE = (
    "Write a DSL guide with a full-size parameter indexed by the plate, e.g. "
    "`loc = ppl.param('z_loc', jnp.zeros(N))` and `with ppl.plate('n', N, subsample_size=B) "
    "as idx: ppl.sample('z', dist.Normal(loc[idx], 1.0))`, use an amortized guide "
    "(ppl.vi.guides.amortized), or leave subsample_size out"
)


def check_continuous(model, ld, owner, advice=""):
    """Raise unless the model's `ld` has only continuous latent sites (what `owner`,
    a guide over the unconstrained space, covers)."""
    if ld.discrete_sites:
        raise ModelError(
            f"{model.name}: {owner} is a guide over continuous sites, but "
            f"{list(ld.discrete_sites)} are discrete{advice}"
        )


def prior_median(ld):
    """Prior medians, unconstrained, as a lazy initial value for `ppl.param` (a callable,
    so the model runs only at init)."""

    def z0(key):
        with handlers.block():  # the model runs inside: its sites are not the guide's
            return ld.candidate(jax.random.key(0), "median")[0]

    return z0


def emit_constrained(ld, u, jacobian=True):
    """Map the guide's draw u onto the model's latent sites (deterministic sites named as
    the model's), adding the factor -log |det J| if `jacobian`."""
    with handlers.block():
        values, log_det = ld.constrain_with_log_det(u)
    if jacobian:
        factor("_auto_log_det", -log_det)
    for name, value in values.items():
        deterministic(name, value)


def _check_scale(guide, init_scale):
    s = init_scale
    if isinstance(s, bool) or not isinstance(s, numbers.Real) or not 0 < s < math.inf:
        raise OptionError(f"{guide}: init_scale={s!r} must be a positive finite number")


@dataclass(frozen=True)
class Normal(AutoGuide):
    """Mean-field Normal over the unconstrained space (the default guide of "vi")."""

    init_scale: float = 0.1

    def __post_init__(self):
        _check_scale("Normal", self.init_scale)

    def latent(self, d, init):
        loc = param("auto_loc", init)
        scale = param("auto_scale", jnp.full(d, self.init_scale), constraint=constraints.positive)
        return sample("_auto_u", dist.Normal(loc, scale).to_event(1))


@dataclass(frozen=True)
class MultivariateNormal(AutoGuide):
    """Full-rank Normal over the unconstrained space: params "auto_loc" (d,) and
    "auto_scale_tril" (d, d), lower Cholesky factor of the covariance (unit lower
    triangle times a positive diagonal, as numpyro's AutoMultivariateNormal)."""

    init_scale: float = 0.1

    def __post_init__(self):
        _check_scale("MultivariateNormal", self.init_scale)

    def latent(self, d, init):
        loc = param("auto_loc", init)
        scale_tril = param(
            "auto_scale_tril",
            self.init_scale * jnp.eye(d),
            constraint=constraints.scaled_unit_lower_cholesky,
        )
        return sample("_auto_u", dist.MultivariateNormal(loc, scale_tril=scale_tril))


@dataclass(frozen=True)
class LowRank(AutoGuide):
    """Normal with covariance F Fᵀ + diag(D) over the unconstrained space: params
    "auto_loc" (d,), "auto_cov_factor" F (d, rank) and "auto_cov_diag" D (d,), positive.

    F starts at small fixed pseudo-random values (F = 0 is a stationary point of the
    ELBO, which a fit would leave only by chance)."""

    rank: int
    init_scale: float = 0.1

    def __post_init__(self):
        if isinstance(self.rank, bool) or not isinstance(self.rank, numbers.Integral):
            raise OptionError(f"LowRank: rank={self.rank!r} must be an integer >= 1")
        if self.rank < 1:
            raise OptionError(f"LowRank: rank={self.rank} must be >= 1")
        _check_scale("LowRank", self.init_scale)

    def latent(self, d, init):
        loc = param("auto_loc", init)
        factor0 = 0.1 * self.init_scale * jax.random.normal(jax.random.key(0), (d, self.rank))
        cov_factor = param("auto_cov_factor", factor0)
        cov_diag = param(
            "auto_cov_diag", jnp.full(d, self.init_scale**2), constraint=constraints.positive
        )
        return sample("_auto_u", dist.LowRankMultivariateNormal(loc, cov_factor, cov_diag))


def _point_mass(init):
    return sample("_auto_u", dist.Delta(param("auto_loc", init), event_dim=1))


@dataclass(frozen=True)
class Delta(AutoGuide):
    """A point mass at the param "auto_loc" (d,): maximum a posteriori estimation.

    With `jacobian=True` (default) log_q = -log |det J|, so the ELBO is the model's
    `LogDensity` at u, log p(x, T(u)) + log |det J_T(u)|: the fit is the mode of the
    posterior density of the UNCONSTRAINED vector u (what `Laplace` expands around;
    numpyro's AutoLaplaceApproximation does the same). With `jacobian=False`, log_q = 0
    and the ELBO is log p(x, z) at z = T(u): the mode in the model's CONSTRAINED space
    (numpyro's AutoDelta; Stan's `optimize` default). The two agree for sites with real
    support; e.g. for a Gamma(a, b) posterior of a positive site they are a/b and (a-1)/b.
    """

    jacobian: bool = True

    def latent(self, d, init):
        return _point_mass(init)


@dataclass(frozen=True)
class Laplace(AutoGuide):
    """Laplace approximation: fits as `Delta()` (the mode of the unconstrained posterior
    density), then `finalize` turns it into a `MultivariateNormal` whose covariance is
    the inverse Hessian of the potential -log p(x, z) (Jacobian included) at the mode,
    on the unconstrained space, so draws after fitting come from N(mode, H⁻¹).

    A model with subsampled plates gets the Hessian of one fixed minibatch's potential."""

    def latent(self, d, init):
        return _point_mass(init)

    def finalize(self, model, params):
        if "auto_loc" not in params:
            raise OptionError(
                f"Laplace.finalize: params have no 'auto_loc' (got {sorted(params)}); pass the "
                "params fitted with the Laplace() guide itself"
            )
        ld = model.log_density()
        mode = jnp.asarray(params["auto_loc"])
        cov = _inverse_hessian(ld, mode)
        scale_tril = jnp.linalg.cholesky(cov)
        transform = biject_to(constraints.scaled_unit_lower_cholesky)
        fitted = {"auto_loc": mode, "auto_scale_tril": transform.inv(scale_tril)}
        return MultivariateNormal().bind(model), fitted


@jax.jit
def _hessian(ld, z):
    return jax.hessian(ld.potential)(z)


def _inverse_hessian(ld, mode):
    """H⁻¹ with H the Hessian of ld's potential at `mode`; InferenceError unless H is
    finite and positive definite."""
    h = np.asarray(_hessian(ld, mode), dtype=np.float64)
    h = (h + h.T) / 2
    names = _coordinate_names(ld)
    if not np.all(np.isfinite(h)):
        bad = sorted({names[i] for i in np.flatnonzero(~np.isfinite(h).all(axis=1))})
        raise InferenceError(
            f"Laplace: the Hessian of -log p(x, z) at the fitted mode is not finite (sites "
            f"{bad}); the fit diverged: lower the learning rate or check the model"
        )
    eigval, eigvec = np.linalg.eigh(h)
    if eigval[0] <= 0:
        site = names[int(np.argmax(np.abs(eigvec[:, 0])))]
        raise InferenceError(
            f"Laplace: the Hessian of -log p(x, z) at the fitted mode is not positive "
            f"definite (smallest eigenvalue {eigval[0]:.3g}, mostly along site '{site}'): the "
            "fit has not reached a mode (run more steps or lower the learning rate) or the "
            "posterior is flat or improper in that direction; use MultivariateNormal() instead"
        )
    cov = (eigvec / eigval) @ eigvec.T
    return jnp.asarray((cov + cov.T) / 2, dtype=mode.dtype)


def _coordinate_names(ld):
    names = [None] * ld.size
    for s in ld.sites.values():
        names[s.offset : s.offset + s.size] = [s.name] * s.size
    return names


# ----- amortized guides -------------------------------------------------------------


def _path_name(path):
    parts = []
    for k in path:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "".join(f"/{p}" for p in parts)


class Amortized:
    """A network `net(weights, *inputs)` whose weights are parameters of the guide that
    calls it: each array leaf of `init_weights` is a `ppl.param` named `name` + its path
    in the pytree (e.g. "encoder/0/w"). Build it with `amortized`."""

    def __init__(self, net, init_weights, name="net"):
        if not callable(net):
            raise OptionError(f"amortized: net={net!r} must be a function net(weights, *inputs)")
        leaves, self.treedef = jax.tree_util.tree_flatten_with_path(init_weights)
        if not leaves:
            raise OptionError(f"amortized '{name}': init_weights has no array leaves")
        self.net, self.name = net, name
        self.names = tuple(name + _path_name(path) for path, _ in leaves)
        self.init = tuple(jnp.asarray(v) for _, v in leaves)

    def __call__(self, *inputs, **kwargs):
        """The network's output at `inputs`, its weights the guide's current params."""
        values = [param(n, v) for n, v in zip(self.names, self.init)]
        return self.net(jax.tree.unflatten(self.treedef, values), *inputs, **kwargs)

    def weights(self, params):
        """The weights pytree from a dict of (fitted) params."""
        return jax.tree.unflatten(self.treedef, [params[n] for n in self.names])

    def __repr__(self):
        return f"amortized({getattr(self.net, '__name__', self.net)!r}, name={self.name!r})"


def amortized(net, init_weights, name="net"):
    """An amortized part of a DSL guide: `net(weights, *inputs)` is any plain JAX
    function (`flax_module.apply` with `init_weights = flax_module.init(key, x)`, or for
    equinox `lambda w, x: eqx.combine(w, static)(x)` with `w, static =
    eqx.partition(module, eqx.is_array)`); its weights become the guide's params.

    >>> encoder = ppl.vi.guides.amortized(mlp, mlp_init(key), name="encoder")
    >>> def guide(x):                         # the model's arguments
    ...     loc, log_scale = encoder(x)       # local parameters from the data
    ...     with ppl.plate("n", x.shape[0]):
    ...         ppl.sample("z", dist.Normal(loc, jnp.exp(log_scale)))
    """
    return Amortized(net, init_weights, name)


# ----- binding ----------------------------------------------------------------------


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
        _check_signature(guide, model)
        model.log_density()  # (whether the model's data must be constants: then the guide's too)
        bound = BoundModel(guide, model.args, model.kwargs)
        if model.static_data:
            bound.use_static_data()
        return bound
    raise OptionError(
        f"guide={guide!r} must be an automatic guide (ppl.vi.guides.Normal(), ...) or a "
        "function with the model's arguments that samples its latent sites"
    )


def _check_signature(guide, model):
    """ModelError unless the guide takes the arguments the model was bound to."""
    try:
        signature = inspect.signature(guide)
    except (TypeError, ValueError):  # no signature to read (e.g. some builtins)
        return
    try:
        signature.bind(*model.args, **model.kwargs)
    except TypeError as e:
        name = getattr(guide, "__name__", type(guide).__name__)
        given = [f"{len(model.args)} positional"] + [f"{k}=" for k in model.kwargs]
        raise ModelError(
            f"guide {name}{signature} cannot take the arguments the model "
            f"{model.name} is bound to ({', '.join(given)}): {e}. A guide is called with "
            "the model's arguments: give it the model's signature (e.g. def guide(x, "
            "y=None) for def model(x, y=None)), using only those it needs"
        ) from None


def finalize(guide, model, params):
    """(guide program, params) that draws from the fitted `guide` come from: the spec's
    `finalize(model, params)` for an automatic guide (a Laplace approximation for
    `Laplace()`), else the bound DSL guide and `params` unchanged."""
    if isinstance(guide, AutoGuide):
        return guide.finalize(model, params)
    return bind_guide(guide, model), params


# ----- flow guides (built on ppl.flows.FlowGuideBase) -------------------------------

from ppl.flows.autoregressive import check_hidden as _hidden  # noqa: E402
from ppl.flows.autoregressive import iaf, spline_autoregressive, spline_coupling  # noqa: E402
from ppl.flows.bijector import Chain, Reverse  # noqa: E402
from ppl.flows.bijector import check_positive_int as _check_int  # noqa: E402
from ppl.flows.guide import FlowGuideBase  # noqa: E402
from ppl.flows.planar import Planar as _PlanarLayer  # noqa: E402
from ppl.flows.planar import Radial as _RadialLayer  # noqa: E402
from ppl.flows.transformers import check_spline_options  # noqa: E402


def _reversed_between(layers):
    """Chain of `layers` with the order reversed between consecutive ones."""
    out = []
    for i, layer in enumerate(layers):
        out += [Reverse(), layer] if i else [layer]
    return Chain(out)


@dataclass(frozen=True)
class _RepeatedLayer(FlowGuideBase):
    """K copies of `_layer` after a learned diagonal Gaussian."""

    K: int = 8
    init_scale: float = 0.1

    def __post_init__(self):
        _check_int(type(self).__name__, "K", self.K)
        _check_scale(type(self).__name__, self.init_scale)

    @property
    def flow(self):
        return Chain([self._layer()] * self.K)


@dataclass(frozen=True)
class Planar(_RepeatedLayer):
    """K planar layers (Rezende & Mohamed 2015) after a learned diagonal Gaussian."""

    _layer = _PlanarLayer


@dataclass(frozen=True)
class Radial(_RepeatedLayer):
    """K radial layers (Rezende & Mohamed 2015) after a learned diagonal Gaussian."""

    _layer = _RadialLayer


@dataclass(frozen=True)
class IAF(FlowGuideBase):
    """`num_flows` affine inverse autoregressive layers (MADE conditioners with hidden
    sizes `hidden`, a tuple: (8,) is one layer of 8 units; ELU), the order reversed
    between them, as numpyro's AutoIAFNormal."""

    num_flows: int = 2
    hidden: tuple = (32, 32)
    init_scale: float = 0.1

    def __post_init__(self):
        _check_int("IAF", "num_flows", self.num_flows)
        _check_scale("IAF", self.init_scale)
        object.__setattr__(self, "hidden", _hidden("IAF", self.hidden))

    @property
    def flow(self):
        return _reversed_between([iaf(self.hidden) for _ in range(self.num_flows)])


@dataclass(frozen=True)
class NeuralSpline(FlowGuideBase):
    """`num_flows` rational-quadratic spline layers (Durkan et al. 2019; `bins` bins on
    [-bound, bound], identity outside), autoregressive (IAF direction: one pass to sample)
    or, with coupling=True, coupling layers (event size >= 2); the order reversed
    between layers."""

    num_flows: int = 2
    hidden: tuple = (32, 32)
    bins: int = 8
    bound: float = 3.0
    coupling: bool = False
    init_scale: float = 0.1

    def __post_init__(self):
        _check_int("NeuralSpline", "num_flows", self.num_flows)
        _check_scale("NeuralSpline", self.init_scale)
        object.__setattr__(self, "hidden", _hidden("NeuralSpline", self.hidden))
        bins, bound = check_spline_options("NeuralSpline", self.bins, self.bound)
        object.__setattr__(self, "bins", bins)
        object.__setattr__(self, "bound", bound)
        if not isinstance(self.coupling, (bool, np.bool_)):
            raise OptionError(
                f"NeuralSpline: coupling={self.coupling!r} must be True (coupling layers) or "
                "False (autoregressive layers)"
            )

    @property
    def flow(self):
        make = spline_coupling if self.coupling else spline_autoregressive
        return _reversed_between(
            [make(self.bins, self.bound, self.hidden) for _ in range(self.num_flows)]
        )
