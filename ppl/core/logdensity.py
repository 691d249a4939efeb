"""`LogDensity`: a bound model as a function of one flat unconstrained vector.

Inference code sees only this object. It traces the model once up front to
learn its latent sites (shape, support, discreteness) and to check the observed
data; from then on every method is a pure, jittable function of `z`. Each
evaluation maps a site's slice of `z` onto the support the site has *in that
run* (NumPyro's unconstraining reparameterisation), so supports that depend on
other latent values stay correct, and the Jacobian enters as a factor site.

A LogDensity is a pytree: its leaves are the model's data, its static part the
site layout, so compiled inference is reused across calls and datasets of the
same shapes.
"""

from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Independent, Unit, distribution
from numpyro.distributions.transforms import IdentityTransform, IndependentTransform, biject_to
from numpyro.infer.util import _unconstrain_reparam, compute_log_probs

from ppl.core import draws, handlers
from ppl.core.checks import (
    TRACER_ERRORS,
    check_observed_sites,
    check_parameters,
    did_you_mean,
    distribution_name,
    explain_tracer_errors,
    observed_in_support,
    outside,
    traced,
)
from ppl.core.model import FIXED_BY_HANDLER, abstract_call, improper_values
from ppl.errors import InferenceError, ModelError, OptionError, warn

__all__ = ["LogDensity", "Site", "INIT_STRATEGIES", "InitValues", "as_init"]

INIT_STRATEGIES = ("uniform", "prior", "median")


@dataclass(frozen=True)
class InitValues:
    """Starting values of chosen latent sites (constrained), as `init={site: value}` gives
    them; hashable, so method objects holding one stay hashable."""

    items: tuple  # ((site, value as nested tuples), ...), sorted by site

    def __repr__(self):
        return repr(dict(self.items))

    def arrays(self):
        return {name: np.asarray(value) for name, value in self.items}


def _tuples(x):
    return tuple(map(_tuples, x)) if isinstance(x, list) else x


def as_init(init, owner):
    """`init` checked: a strategy name, or an `InitValues` of a dict {site: value};
    `owner` (e.g. "NUTS") starts the messages."""
    if isinstance(init, InitValues):
        return init
    if isinstance(init, str):
        if init not in INIT_STRATEGIES:
            raise OptionError(
                f"{owner}: unknown init strategy {init!r}; choose one of "
                f"{', '.join(INIT_STRATEGIES)}, or give a dict of starting values {{site: value}}"
            )
        return init
    if not isinstance(init, dict):
        strategy_fn = callable(init)  # e.g. init_to_median, or init_to_value(values=...): a partial
        name = getattr(getattr(init, "func", init), "__name__", None) if strategy_fn else None
        raise OptionError(
            f"{owner}: init={name or repr(init)} is not an init ppl takes"
            + (" (NumPyro's init_to_* strategy functions are not used)" if strategy_fn else "")
            + ": give init='median', 'prior' or 'uniform', or a dict of starting values "
            "{site: value}, e.g. init={'mu': 0.0} (what init_to_value(values=...) takes)"
        )
    items = []
    for name, value in init.items():
        if not isinstance(name, str):
            raise OptionError(f"{owner}: init keys must be site names (strings), got {name!r}")
        try:
            a = np.asarray(value)
        except (TypeError, ValueError):
            a = np.asarray(None)
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool) or not np.isfinite(a).all():
            raise OptionError(
                f"{owner}: init value of site '{name}' must be finite numbers, got {value!r}"
            )
        items.append((name, _tuples(a.astype(float).tolist())))  # (1 and 1.0 alike)
    return InitValues(tuple(sorted(items, key=lambda item: item[0])))


@dataclass(frozen=True)
class Site:
    """What inference needs to know about one latent site."""

    name: str
    shape: tuple
    unconstrained_shape: tuple
    offset: int
    is_discrete: bool
    distribution: str
    dtype: str
    support: object = field(compare=False, hash=False, repr=False)
    #: The finite support of a discrete site (same for every element), else None.
    support_values: tuple | None = field(default=None, compare=False, hash=False, repr=False)
    #: The site's `infer={"enumerate": ...}` request (NumPyro's), which ppl does not honour.
    enumerate: str | None = field(default=None, compare=False, hash=False, repr=False)
    #: Whether a handler inside the model set its value (which samplers override).
    fixed_by_handler: bool = field(default=False, compare=False, hash=False, repr=False)

    @property
    def size(self):
        return int(np.prod(self.unconstrained_shape, dtype=int))


def _support_values(fn):
    while isinstance(fn, Independent):
        fn = fn.base_dist
    if not (fn.support.is_discrete and fn.has_enumerate_support):
        return None
    try:
        with jax.ensure_compile_time_eval():  # constants, also while tracing
            values = np.unique(np.asarray(fn.enumerate_support(expand=False)))
    except (NotImplementedError, ValueError, jax.errors.TracerArrayConversionError):
        return None
    return tuple(values.tolist())


def _needs_values(trace):
    """Whether the abstract trace hides something the layout keeps or checks: observed
    data computed inside the model (its values are checked for NaN), or a latent site
    whose support depends on other latent values (the layout keeps one concrete support)."""
    for s in trace.values():
        if s["type"] != "sample" or isinstance(s["fn"], Unit):
            continue
        if s["is_observed"] and isinstance(s["value"], jax.core.Tracer):
            return True
        if not s["is_observed"] and traced(s["fn"].support):
            return True
    return False


def _structure(bound_model, seed):
    """The model's abstract trace (shapes, no compiles), the concrete parameters of its
    distributions checked with NumPy (`check_parameters`) rather than by NumPyro's eager
    jax.numpy checks."""
    validating = distribution._VALIDATION_ENABLED  # unless the user turned it off
    with distribution.validation_enabled(False):
        trace = abstract_call(lambda: bound_model.trace(seed=seed))
    if validating:
        check_parameters(trace, bound_model.name)
    return trace


def _subsampling(trace, latent):
    """((plate, (size, subsample_size)), ...) of the trace's plates that draw a minibatch,
    and ((site, plate), ...) of the `latent` sites inside one of them."""
    plates = {}
    for name, s in trace.items():
        if s["type"] == "plate":
            size, batch = s["args"][:2]
            if batch is not None and batch < size:
                plates[name] = (int(size), int(batch))
    local = {}
    for name in latent:
        inside = [f.name for f in trace[name]["cond_indep_stack"] if f.name in plates]
        if inside:
            local[name] = inside[0]
    return tuple(plates.items()), tuple(local.items())


#: What a model raises when it computes a Python value from a traced array.
_NEEDS_CONCRETE = TRACER_ERRORS + (jax.errors.NonConcreteBooleanIndexError,)


def _structure_of(bound_model, seed):
    """The model's structure (`_structure`), after making sure the model runs on traced
    data, as compiled programs take it; a model that computes Python values from its
    data (`int(group.max())`, `np.unique(group)`, `if y.mean() > 0`) gets its data as
    NumPy constants instead (`BoundModel.use_static_data`). A model that fails either
    way (a sampled value used so) raises from the second try."""
    if not bound_model.static_data and jax.tree.leaves(bound_model):
        try:
            trace = _structure(bound_model, seed)
            with distribution.validation_enabled(False):  # the data traced, this time
                jax.eval_shape(lambda m: (m.trace(seed=seed), 0)[1], bound_model)
            return trace
        except _NEEDS_CONCRETE:
            bound_model.use_static_data()
    with explain_tracer_errors(bound_model.name):
        return _structure(bound_model, seed)


def _is_identity(transform):
    while isinstance(transform, IndependentTransform):
        transform = transform.base_transform
    return isinstance(transform, IdentityTransform)


def _log_det_site(name):
    return f"_{name}_log_det"


@jax.tree_util.register_pytree_node_class
class LogDensity:
    """The log joint density of a bound model over its latent sites.

    `z` is a flat vector of unconstrained values (length `size`); `constrain(z)`
    maps it back to named values on each site's support. The density includes
    the log-Jacobians of those transforms and splits into `log_prior` (latent
    sites and Jacobians) and `log_likelihood` (observed sites and factors), the
    split that tempering needs.

    >>> # m: a bound model, e.g. ppl.examples.eight_schools(sigma, y)
    >>> ld = m.log_density()
    >>> z, found = ld.init(jax.random.key(0))
    >>> value, grad = ld.value_and_grad(z)
    """

    def __init__(self, bound_model, seed=0):
        abstract = trace = _structure_of(bound_model, seed)
        if _needs_values(trace):  # computed data, or supports that depend on latent values
            trace = bound_model.trace(seed=seed)
        check_observed_sites(trace, bound_model.name)
        checked = observed_in_support(abstract, bound_model.name)
        sites, offset = [], 0
        for name, s in trace.items():
            if s["type"] != "sample" or s["is_observed"]:
                continue
            value = jnp.asarray(s["value"])
            support = s["fn"].support
            discrete = bool(support.is_discrete)
            ushape = value.shape if discrete else biject_to(support).inverse_shape(value.shape)
            site = Site(
                name, value.shape, tuple(ushape), offset, discrete,
                distribution_name(s["fn"]), str(value.dtype), support, _support_values(s["fn"]),
                (s.get("infer") or {}).get("enumerate"),
                bool((s.get("infer") or {}).get(FIXED_BY_HANDLER)),
            )  # fmt: skip
            sites.append(site)
            offset += site.size
        if not sites:
            raise ModelError(
                f"{bound_model.name} has no latent sites: every ppl.sample is observed, so there "
                "is nothing to infer; leave a site's obs= unset (or bind its data to None)"
            )
        observed = tuple(  # data sites; factors are observed Unit sites, left out
            n
            for n, s in trace.items()
            if s["type"] == "sample" and s["is_observed"] and not isinstance(s["fn"], Unit)
        )
        deterministic = tuple(n for n, s in trace.items() if s["type"] == "deterministic")
        plates, local = _subsampling(trace, [s.name for s in sites])
        params = tuple(n for n, s in trace.items() if s["type"] == "param")
        bound_model.checked_data = checked  # scored without the support check from now on
        self.model = bound_model
        self._layout = (tuple(sites), observed, deterministic, seed, plates, local, params)

    # ----- pytree -----------------------------------------------------------------

    def tree_flatten(self):
        return (self.model,), self._layout

    @classmethod
    def tree_unflatten(cls, layout, children):
        obj = object.__new__(cls)
        obj.model, obj._layout = children[0], layout
        return obj

    # ----- layout -----------------------------------------------------------------

    @property
    def sites(self):
        """Latent sites in model order: name -> `Site`."""
        return {s.name: s for s in self._layout[0]}

    @property
    def observed(self):
        return self._layout[1]

    @property
    def deterministic(self):
        return self._layout[2]

    @property
    def size(self):
        return sum(s.size for s in self._layout[0])

    @property
    def discrete_sites(self):
        return tuple(s.name for s in self._layout[0] if s.is_discrete)

    @property
    def subsampled_plates(self):
        """name -> (size, subsample_size) of the plates that draw a minibatch per run."""
        return dict(self._layout[4])

    @property
    def params(self):
        """Names of the model's `ppl.param`s (fixed at their initial values by samplers)."""
        return self._layout[6]

    @property
    def local_sites(self):
        """Latent site -> the subsampled plate it lies in: its values belong to whichever
        points the minibatch holds (per-data-point latents)."""
        return dict(self._layout[5])

    def unflatten(self, z):
        """Flat unconstrained vectors (..., size) -> dict of unconstrained arrays (...,
        site shape); a NumPy `z` gives NumPy arrays (no program to compile)."""
        xp = np if isinstance(z, np.ndarray) else jnp
        lead = z.shape[:-1]
        return {
            s.name: xp.reshape(z[..., s.offset : s.offset + s.size], lead + s.unconstrained_shape)
            for s in self._layout[0]
        }

    def _seeded(self, key):
        return handlers.seed(
            self.model, rng_seed=jax.random.key(self._layout[3]) if key is None else key
        )

    def _substituted(self, z, key):
        discrete = {s.name: s.dtype for s in self._layout[0] if s.is_discrete}
        fn = partial(_constrain_site, self.unflatten(z), discrete)
        return handlers.substitute(self._seeded(key), substitute_fn=fn)

    def _run(self, z, key=None):
        """(log prior incl. Jacobians, log likelihood, trace) at `z`."""
        site_lp, trace = compute_log_probs(self._substituted(z, key), (), {}, {})
        prior_names = {n for s in self._layout[0] for n in (s.name, _log_det_site(s.name))}
        log_prior = sum((v for n, v in site_lp.items() if n in prior_names), start=0.0)
        log_lik = sum((v for n, v in site_lp.items() if n not in prior_names), start=0.0)
        return log_prior, log_lik, trace

    # ----- densities --------------------------------------------------------------

    def terms(self, z, key=None):
        """(log prior incl. Jacobians, log likelihood) at `z`.

        `key` only matters for models with subsampled plates: it draws the minibatch.
        """
        return self._run(z, key)[:2]

    def __call__(self, z, key=None):
        """Log joint density (with Jacobians) at the unconstrained point `z`."""
        log_prior, log_lik, _ = self._run(z, key)
        return log_prior + log_lik

    def log_prior(self, z, key=None):
        return self._run(z, key)[0]

    def log_prior_of(self, names, z):
        """The prior factors (with Jacobians) of the sites `names` alone at `z`."""
        site_lp, _ = compute_log_probs(self._substituted(z, None), (), {}, {})
        keep = {n for s in names for n in (s, _log_det_site(s))}
        return sum((v for n, v in site_lp.items() if n in keep), start=jnp.zeros(()))

    def log_likelihood(self, z, key=None):
        return self._run(z, key)[1]

    def potential(self, z):
        """Negative log joint: the potential energy of Hamiltonian methods."""
        return -self(z)

    def value_and_grad(self, z):
        return jax.value_and_grad(self)(z)

    def constrain(self, z, key=None):
        """Flat unconstrained vector -> dict of values on each site's support."""
        trace = self._run(z, key)[2]
        return {n: trace[n]["value"] for n in self.sites}

    def constrain_with_log_det(self, z):
        """(constrained latent values, log |det J| of the map from `z` to them): what a
        guide over the unconstrained space needs to score its draws on the model's."""
        site_lp, trace = compute_log_probs(self._substituted(z, None), (), {}, {})
        log_det = sum(
            (site_lp[_log_det_site(n)] for n in self.sites if _log_det_site(n) in site_lp),
            start=jnp.zeros(()),
        )
        return {n: trace[n]["value"] for n in self.sites}, log_det

    def trace(self, z, key=None):
        """The model's trace at `z`: site values, distributions and Jacobian factor sites."""
        return self._run(z, key)[2]

    def values(self, z, key=None):
        """Constrained latent values and deterministic sites at `z`."""
        trace = self._run(z, key)[2]
        return {n: trace[n]["value"] for n in (*self.sites, *self.deterministic)}

    @property
    def values_are_slices(self):
        """Whether `values(z)` is `unflatten(z)`: no deterministic sites and every latent
        site continuous on the whole real line (no transform)."""
        return not self.deterministic and all(
            not s.is_discrete and _is_identity(biject_to(s.support)) for s in self._layout[0]
        )

    def unconstrain(self, values, key=None):
        """Dict of constrained values (one per latent site) -> flat unconstrained vector."""
        model = handlers.substitute(self._seeded(key), data=values)
        return self._unconstrain_trace(handlers.trace(model).get_trace())

    def _unconstrain_trace(self, trace):
        parts = []
        for s in self._layout[0]:
            v = jnp.asarray(trace[s.name]["value"])
            u = v if s.is_discrete else biject_to(trace[s.name]["fn"].support).inv(v)
            parts.append(jnp.reshape(u, (-1,)).astype(jnp.result_type(float)))
        return jnp.concatenate(parts)

    # ----- initialisation ---------------------------------------------------------

    def prior_point(self, key):
        """Unconstrained flat vector of one draw of the latent sites from the prior."""
        model = handlers.substitute(self._seeded(key), substitute_fn=improper_values(2.0))
        return self._unconstrain_trace(handlers.trace(model).get_trace())

    def _propose(self, key, strategy, radius):
        if isinstance(strategy, InitValues):
            return self._given_point(key, strategy.arrays(), radius)
        if strategy == "prior":
            return self.prior_point(key)
        if strategy == "median":
            return jnp.median(jax.vmap(self.prior_point)(jax.random.split(key, 15)), axis=0)
        if not self.discrete_sites:
            return draws.uniform(key, self.size, minval=-radius, maxval=radius)
        key_prior, key_unif = jax.random.split(key)
        z = draws.uniform(key_unif, self.size, minval=-radius, maxval=radius)
        return jnp.where(self._discrete_mask(), self.prior_point(key_prior), z)

    def _given_point(self, key, given, radius):
        """A "uniform" point with the sites of `given` (constrained values) set to them."""
        discrete = {s.name: s.dtype for s in self._layout[0] if s.is_discrete}
        unconstrained = self.unflatten(self._propose(key, "uniform", radius))

        def value(site):
            if site["type"] != "sample" or site["name"] not in given:
                return _constrain_site(unconstrained, discrete, site)
            v = given[site["name"]]
            support = site["fn"].support
            bad = outside(support, v)  # (None for a support that depends on latent values)
            if bad is not None and bad.any():
                raise OptionError(
                    f"{self.model.name}: init value of site '{site['name']}' lies outside "
                    f"its support {support}; give a value inside it"
                )
            return jnp.asarray(v, dtype=self.sites[site["name"]].dtype)

        model = handlers.substitute(self._seeded(key), substitute_fn=value)
        return self._unconstrain_trace(handlers.trace(model).get_trace())

    def _check_init(self, strategy):
        """`strategy` as `as_init` checks it, with the sites and shapes of given values
        checked against this model's."""
        strategy = as_init(strategy, self.model.name)
        if isinstance(strategy, InitValues):
            sites = self.sites
            for name, value in strategy.arrays().items():
                if name not in sites:
                    raise OptionError(
                        f"{self.model.name}: init names {name!r}, which is no latent site"
                        f"{did_you_mean(name, sites)}; latent sites are {list(sites)}"
                    )
                if value.shape != sites[name].shape:
                    raise OptionError(
                        f"{self.model.name}: init value of site '{name}' has shape "
                        f"{value.shape}, but the site has shape {sites[name].shape}"
                    )
        return strategy

    def _discrete_mask(self):
        mask = np.zeros(self.size, bool)
        for s in self._layout[0]:
            mask[s.offset : s.offset + s.size] = s.is_discrete
        return mask

    def candidate(self, key, strategy="uniform", radius=2.0):
        """One starting point as (z, finite): no retry loop, so it compiles fast; the
        caller retries with new keys where `finite` is False (see `init` for strategies)."""
        z = self._propose(key, self._check_init(strategy), radius)
        value, grad = self.value_and_grad(z)
        return z, jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))

    def init(self, key, strategy="uniform", radius=2.0, max_tries=100):
        """A starting point with finite density and gradient, as (z, found).

        `strategy`: "uniform" (uniform in (-radius, radius) on the unconstrained
        scale, as Stan does), "prior" (a prior draw), "median" (coordinate
        median of 15 prior draws), or a dict {site: value} of starting values (on
        the site's support) for some sites, the others "uniform". Retries new
        draws up to `max_tries` times.
        """
        strategy = self._check_init(strategy)

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

    def restrict(self, names, z):
        """This density as a function of the sites `names` alone, the others held at `z`."""
        from ppl.core.conditional import ConditionalDensity

        return ConditionalDensity(self, tuple(names), z)

    # ----- checks -----------------------------------------------------------------

    def require_continuous(self, method, alternatives=None):
        """Raise a clear error if `method` (continuous densities only) meets a discrete site.

        `alternatives`: names of methods that do handle discrete sites (default: the
        registered methods with `handles_discrete = True`).
        """
        require_continuous(self, method, alternatives)

    def require_full_data(self, method):
        """Raise a clear error if `method` (which scores all the data at every step) meets
        a subsampled plate: each step would see one fixed minibatch, scaled up."""
        if not self.subsampled_plates:
            return
        name, (size, batch) = next(iter(self.subsampled_plates.items()))
        raise ModelError(
            f"{self.model.name}: {method} scores all the data at every step, but plate "
            f"'{name}' draws a minibatch of {batch} of its {size} indices "
            f"(subsample_size={batch}), so every step would see the same minibatch, scaled "
            f"up to {size}. Bind the model without subsampling (subsample_size=None) for "
            f"{method}, or use a method made for minibatches: SG-MCMC ('sgld', 'sghmc', ...) "
            "or VI ('vi')"
        )

    def warn_fixed_params(self, method):
        """Warn that `method` (a sampler) holds the model's `ppl.param`s fixed."""
        if self.params:
            warn(
                f"{method}: {self.model.name} has ppl.param {list(self.params)}, which "
                f"{method} holds at their initial values (only VI fits params); to infer "
                "them, give them a prior with ppl.sample"
            )
        fixed = [s.name for s in self._layout[0] if s.fixed_by_handler]
        if fixed:
            warn(
                f"{method}: latent site(s) {fixed} of {self.model.name} have a value set by a "
                f"handler (e.g. handlers.substitute), which {method} ignores: it samples "
                "every latent site. To fix a site's value, use handlers.condition (or "
                "BoundModel.condition)"
            )

    def require_global_sites(self, owner, advice):
        """Raise a clear error if `owner` (one value per latent site, shared by every
        minibatch) meets a latent site inside a subsampled plate; `advice` says what to do."""
        if not self.local_sites:
            return
        site, plate = next(iter(self.local_sites.items()))
        size, batch = self.subsampled_plates[plate]
        raise ModelError(
            f"{self.model.name}: {owner} keeps one value per latent site, but site '{site}' "
            f"lies in plate '{plate}', which draws a minibatch of {batch} of its {size} "
            f"indices at every step: its {batch} values would belong to whichever points "
            f"are drawn. {advice}"
        )

    def check_finite_start(self, found, z=None):
        """InferenceError unless every chain `found` a starting point; given the chains'
        last tries `z`, it names the sites whose log density is not finite at one."""
        bad = np.flatnonzero(~np.asarray(found))
        if not bad.size:
            return
        where = ""
        if z is not None:
            sites = self.nonfinite_sites(np.asarray(z)[bad[0]])
            where = (
                f"; at chain {bad[0]}'s last try the log density of site(s) {sites} is not finite"
                if sites
                else f"; at chain {bad[0]}'s last try every site's log density is finite, "
                "so its gradient is not"
            )
        raise InferenceError(
            f"no starting point with a finite log density and gradient for chain(s) "
            f"{bad.tolist()}{where}: check the model for impossible values (e.g. data outside "
            "a distribution's support, a scale that can be negative), or try init='prior'"
        )

    def nonfinite_sites(self, z):
        """Names of the sites (latent, observed, factors) whose log density is not finite
        at the unconstrained point `z` (evaluated eagerly: for error messages)."""
        with distribution.validation_enabled(False):  # a NaN, not an error, for bad scales
            site_lp, _ = compute_log_probs(self._substituted(jnp.asarray(z), None), (), {}, {})
        names = [n for n, v in site_lp.items() if not np.isfinite(np.sum(np.asarray(v)))]
        owners = {_log_det_site(s): s for s in self.sites}
        return list(dict.fromkeys(owners.get(n, n) for n in names))


def _constrain_site(unconstrained, discrete, site):
    """Substitute fn: a latent site's value from its unconstrained slice (+ Jacobian factor)."""
    if site["type"] == "sample" and site["name"] in discrete:
        return unconstrained[site["name"]].astype(discrete[site["name"]])
    return _unconstrain_reparam(unconstrained, site)


def require_continuous(density, method, alternatives=None):
    """Raise a clear error if `method` (continuous densities only) meets a discrete site of
    `density` (a LogDensity or a ConditionalDensity)."""
    if not density.discrete_sites:
        return
    if alternatives is None:
        from ppl.infer.registry import discrete_method_names

        alternatives = discrete_method_names()
    name, *others = density.discrete_sites
    s = density.sites[name]
    continuous = [n for n in density.sites if n not in density.discrete_sites]
    key = lambda names: repr(names[0]) if len(names) == 1 else repr(tuple(names))  # noqa: E731
    block = (
        f"ppl.mcmc.blocks({{{key(density.discrete_sites)}: ppl.mcmc.DiscreteGibbs(), "
        f"{key(continuous) if continuous else ''}: ppl.mcmc.NUTS()}})"
    )
    suggest = (
        (
            f"or sample it with Gibbs inside blocks: {block}"
            if continuous
            else f"or sample it with a method that handles discrete sites ({', '.join(alternatives)})"
        )
        if alternatives
        else "or replace it by a continuous relaxation (no installed method samples "
        "discrete sites yet)"
    )
    enumerated = [n for n in density.discrete_sites if density.sites[n].enumerate]
    unsupported = (
        f" (infer={{'enumerate': ...}} on {enumerated} asks for NumPyro's enumeration, "
        "which ppl's MCMC does not do)"
        if enumerated
        else ""
    )
    raise ModelError(
        f"{density.model.name}: site '{name}' ({s.distribution}, support {s.support}) is "
        + (f"discrete (as are {others}), " if others else "discrete, ")
        + f"and method '{method}' samples continuous densities only{unsupported}. Marginalise it "
        "out in the model (e.g. dist.MixtureSameFamily for mixture assignments, or sum "
        f"over its values inside a ppl.factor), {suggest}."
    )
