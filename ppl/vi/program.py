"""Objectives as programs, turned into unbiased gradient estimators.

An objective is an ordinary Python function of a model and a guide, written with a
few operations:

- `particles(fn, K)`: K independent evaluations of `fn()` (vmapped): a (K,) array, or
  a pytree of them when `fn` returns a pytree of scalars (e.g. `(log_p, log_q)`);
- `draw(program, *args)`: a `Draw` from a DSL program (the guide) at the current
  parameters: its latent values and their log density `log_q`;
- `score(program, draw_or_values, *args)`: the program's log density at those values
  (log p(x, z) for the model);
- `mean` and `logmeanexp` of particle values.

`@objective` makes it a factory of `Objective`s, whose `surrogate(...)` is a scalar with
the objective's value and, as its gradient, an unbiased estimate of the objective's
gradient. Each guide site contributes by its own estimator (`ppl.sample(...,
estimator=...)`, or a mapping given to the SVI method; a site NumPyro's
`config_enumerate` marked, `infer={"enumerate": ...}`, gets "enum"):

- "reparam": the draw is a differentiable function of the parameters (pathwise);
- "reinforce": score function; the top-level particle values F get a baseline b_k per
  particle: "none", "moving_average" (of F across steps) or "leave_one_out" (F with
  particle k's value replaced by the mean of the others': for IWAE this is VIMCO);
- "enum": the exact expectation over the site's finite support (jointly over the
  particles, up to `MAX_ENUMERATION` assignments);
- "mvd": measure-valued derivatives (Bernoulli, Categorical, Normal, also under
  `to_event` / `expand` / `mask`, not transformed ones such as LogNormal): for each
  element of the site, the objective is evaluated again at the positive and negative
  parts of the weak derivative of its distribution.

The estimators mapping must name sites the objective draws (checked by `surrogate`).
The guide must sample exactly the model's latent sites, none observed (checked by
`init_params`); an objective may leave an auxiliary guide site out of the values it
scores the model at, as HVI does with `aux`.

Every estimator is exact in expectation for any objective of the particle values,
because baselines, enumeration and measure-valued terms all re-evaluate the objective
itself as a function of the particle values (`F_of`).
"""

import functools
import inspect
import zlib
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import (
    BernoulliLogits,
    BernoulliProbs,
    CategoricalLogits,
    CategoricalProbs,
    Delta,
    Normal,
    Unit,
    constraints,
)
from numpyro.distributions.transforms import biject_to
from numpyro.primitives import Messenger

from ppl.core import draws, handlers
from ppl.core.checks import check_count, did_you_mean, outside, unwrapped
from ppl.core.primitives import ESTIMATORS
from ppl.errors import ModelError, OptionError

__all__ = [
    "objective", "Objective", "Draw", "particles", "draw", "score", "mean", "logmeanexp",
    "BASELINES", "MAX_ENUMERATION", "init_params",
]  # fmt: skip

BASELINES = ("auto", "none", "moving_average", "leave_one_out")
#: Largest number of joint assignments "enum" sums over (per top-level particle set).
MAX_ENUMERATION = 4096
#: Largest number of site elements "mvd" differentiates per particle.
MAX_MVD_ELEMENTS = 256
#: Moving-average baseline: b <- DECAY · b + (1 - DECAY) · F.
DECAY = 0.9

_STACK = []  # the evaluation in progress (one `_Run`), innermost particle last


def _code(name):
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


class Draw(NamedTuple):
    """Values of a program's latent (and deterministic) sites and the log density of
    the draw under the program (all its sample sites, factors included)."""

    values: dict
    log_q: jax.Array


# ----- the state of one evaluation --------------------------------------------------


class _Particle:
    """Bookkeeping of one particle while its function runs."""

    def __init__(self, key, overrides=None, discover=False, top=True, salt=""):
        self.key = key
        self.salt = salt  # static, part of each draw's hash: tells particle sets apart
        self.overrides = overrides or {}
        self.discover = discover
        self.top = top
        self.count = 0  # draws so far: each gets its own keys
        self.score = jnp.zeros(())  # log q of reinforce sites (score-function terms)
        self.has_score = False
        self.enum_log_q = jnp.zeros(())
        self.enum_sites = {}  # name -> (support values, shape)
        self.mvd_sites = {}  # name -> (distribution, value)

    def next_key(self):
        self.count += 1
        return jax.random.fold_in(self.key, self.count)


class _Run:
    def __init__(self, key, params, estimators, mode, injected=None, model=None, guide=None):
        self.key = key
        self.params = params
        self.estimators = estimators or {}
        self.mode = mode  # "init" | "discover" | "run" | "replay"
        self.injected = injected
        self.model, self.guide = model, guide  # the objective's programs (for checks)
        self.sampled = set()  # latent sites sampled by any draw (guide, reverse model...)
        self.guide_sites = {}  # name -> "sample" | "deterministic", of the guide's draws
        self.guide_supports = {}  # name -> support, of the guide's sampled sites
        self.params_found = {}
        self.sets = []  # per top-level particles() call: its records
        self.particles = []
        self.set_index = 0


def _run():
    if not _STACK:
        raise ModelError(
            "ppl.vi.draw / score / particles are objective operations: call them inside a "
            "function decorated with @ppl.vi.objective, evaluated by the SVI method"
        )
    return _STACK[-1]


# ----- handlers ---------------------------------------------------------------------


class _Params(Messenger):
    """Parameters from the run's (unconstrained) values; their initial values recorded
    when initialising."""

    def __init__(self, fn, run):
        self.run = run
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] != "param":
            return
        name = msg["name"]
        constraint = msg["kwargs"].get("constraint")
        transform = biject_to(constraint) if constraint is not None else None
        if name in self.run.params:
            u = self.run.params[name]
            msg["value"] = u if transform is None else jax.tree.map(transform, u)

    def postprocess_message(self, msg):
        if msg["type"] == "param" and self.run.mode == "init":
            name = msg["name"]
            constraint = msg["kwargs"].get("constraint")
            if constraint is not None:
                _check_initial_value(name, msg["value"], constraint)
            value = jax.tree.map(jnp.asarray, msg["value"])  # an array, or a pytree of them
            inverse = biject_to(constraint).inv if constraint is not None else (lambda v: v)
            self.run.params_found.setdefault(name, jax.tree.map(inverse, value))


def _unbounded(support):
    """Whether `support` is the real line (or real vectors...); False for None."""
    while hasattr(support, "base_constraint"):  # independent(real, n)
        support = support.base_constraint
    return support is constraints.real


def _check_initial_value(name, value, constraint):
    """ModelError for a param whose initial value lies outside its constraint (its
    unconstrained value would be infinite or NaN, and fitting would fail obscurely)."""
    bad = outside(constraint, value)  # (None when computed from traced inputs)
    if bad is not None and bad.any():
        shown = np.asarray(value) if np.size(value) <= 6 else f"{bad.sum()} entries"
        raise ModelError(
            f"ppl.param('{name}'): initial value {shown} lies outside its constraint "
            f"{constraint!r}; give an initial value inside it (its unconstrained value "
            "would not be finite)"
        )


class _Minibatch(Messenger):
    """Every subsampled plate draws its indices from the run's key, so the model and the
    guide (and all particles) see the same minibatch in one evaluation."""

    def __init__(self, fn, key):
        self.key = key
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "plate" and msg["kwargs"].get("rng_key") is None:
            msg["kwargs"]["rng_key"] = jax.random.fold_in(self.key, _code(msg["name"]))


def _working_estimators(fn):
    """The estimators that apply to distribution `fn`, in order of preference."""
    out = ["reparam"] if fn.has_rsample else []
    if fn.support.is_discrete and fn.has_enumerate_support:
        out.append("enum")
    out.append("reinforce")
    if isinstance(unwrapped(fn), _MVD_TYPES):
        out.append("mvd")
    return out


def _estimator(run, msg):
    fn = msg["fn"]
    infer = msg.get("infer") or {}
    # NumPyro's `config_enumerate` marks (infer={"enumerate": ...}) mean an exact sum: "enum"
    chosen = run.estimators.get(msg["name"]) or infer.get("estimator")
    chosen = chosen or ("enum" if infer.get("enumerate") else None)
    if chosen is None:
        return "reparam" if fn.has_rsample else "reinforce"
    if chosen not in ESTIMATORS:
        raise OptionError(
            f"site '{msg['name']}': unknown estimator {chosen!r}; choose one of "
            f"{', '.join(ESTIMATORS)} (for {type(fn).__name__}: "
            f"{', '.join(_working_estimators(fn))})"
        )
    if chosen == "reparam" and not fn.has_rsample:
        raise OptionError(
            f"site '{msg['name']}': {type(fn).__name__} has no reparameterization, so "
            "estimator='reparam' cannot be used; estimators that work for it: "
            + ", ".join(repr(e) for e in _working_estimators(fn))
        )
    if chosen == "enum" and not (fn.support.is_discrete and fn.has_enumerate_support):
        raise OptionError(
            f"site '{msg['name']}': estimator='enum' needs a discrete distribution with a "
            f"finite support; {type(fn).__name__} has none. Estimators that work for it: "
            + ", ".join(repr(e) for e in _working_estimators(fn))
        )
    if chosen == "mvd" and not isinstance(unwrapped(fn), _MVD_TYPES):
        raise OptionError(
            f"site '{msg['name']}': estimator='mvd' supports Bernoulli, Categorical and "
            f"Normal sites (not transformed ones); got {type(unwrapped(fn)).__name__}. "
            "Estimators that work for it: " + ", ".join(repr(e) for e in _working_estimators(fn))
        )
    return chosen


def _check_estimators(run):
    """OptionError for an estimators entry naming no site the objective drew."""
    unknown = sorted(set(run.estimators) - run.sampled)
    if not unknown:
        return
    computed = sorted(n for n, kind in run.guide_sites.items() if kind == "deterministic")
    name = unknown[0]
    drawn = sorted(run.sampled)
    if name in computed:
        message = f"estimators: the guide does not sample {name!r}, it computes it from {drawn}"
    else:
        hint = did_you_mean(name, [*drawn, *computed])
        message = f"estimators: {name!r} is not a site the objective draws{hint}; it draws {drawn}"
    if computed:
        message += (
            f" (and computes {computed} from them): an automatic guide (ppl.vi.guides.Normal(), "
            "...) reparameterises all sites; per-site estimators apply to the sites a DSL "
            "guide samples"
        )
    raise OptionError(message)


def _check_guide_draw(trace):
    """ModelError for an observed site in the guide (factors aside): log q would count
    its likelihood."""
    observed = [
        n for n, s in trace.items()
        if s["type"] == "sample" and s["is_observed"] and not isinstance(s["fn"], Unit)
    ]  # fmt: skip
    if observed:
        raise ModelError(
            f"the guide observes site(s) {observed} (obs=...): a guide samples the model's "
            "latent sites only; drop obs= (and the site) from the guide"
        )


def _check_guide_sites(run, trace, values):
    """ModelError when the model is scored at values of sites that the guide sampled but
    the model has no latent site of (their log q would still count). Exempt: a guide
    that maps its own draw onto the model's sites as deterministic sites (the automatic
    guides' '_auto_u'), and auxiliary sites an objective leaves out of `values` (HVI)."""
    latent = [n for n, s in trace.items() if s["type"] == "sample" and not s["is_observed"]]
    if any(run.guide_sites.get(n) == "deterministic" for n in latent):
        return
    extra = sorted(n for n in values if run.guide_sites.get(n) == "sample" and n not in latent)
    if "_auto_latent" in extra:
        raise ModelError(
            "the guide is one of NumPyro's AutoContinuous guides (AutoDiagonalNormal, "
            "AutoMultivariateNormal, AutoLowRankMultivariateNormal, AutoLaplaceApproximation, "
            "...), which sample one flat '_auto_latent' site ppl cannot score; use ppl's own: "
            "ppl.vi.guides.Normal(), MultivariateNormal(), LowRank(r) or Laplace() (NumPyro's "
            "AutoNormal and AutoDelta also work)"
        )
    if extra:
        raise ModelError(
            f"the guide samples {extra}, which are not latent sites of the model (its latent "
            f"sites are {sorted(latent)}); a guide samples exactly the model's latent sites: "
            "rename or drop them (an auxiliary guide variable needs an objective that "
            "uses it, e.g. ppl.vi.HVI(reverse=..., aux=...))"
        )
    for name in latent:
        site = trace[name]
        if _unbounded(run.guide_supports.get(name)) and not _unbounded(site["fn"].support):
            raise ModelError(
                f"the guide draws site '{name}' on the whole real line, but the model's "
                f"support there is {site['fn'].support!r}: draws outside it have log p = -inf "
                "(NaN losses, skipped steps, NaN evidence). Give the guide a distribution "
                "with the model's support (e.g. LogNormal or a TransformedDistribution for a "
                "positive site), or use an automatic guide (ppl.vi.guides.Normal()), which "
                "maps onto each support"
            )
        want = tuple(site["fn"].shape(site["kwargs"].get("sample_shape", ())))
        got = tuple(jnp.shape(values[name])) if name in values else want
        if got != want:
            raise ModelError(
                f"the guide's site '{name}' has shape {got}, but the model's has shape {want}; "
                "the guide must draw each latent site whole (inside the same plates as the "
                "model, or with .expand/.to_event to the model's shape), else the model "
                "broadcasts one value over the site"
            )


class _Sample(Messenger):
    """Draws a program's latent sites by their estimators (see the module docstring)."""

    def __init__(self, fn, run, particle, draw_index, gradient):
        self.run, self.particle, self.gradient = run, particle, gradient
        self.draw_index = draw_index
        self.kinds = {}
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] != "sample" or msg["is_observed"] or msg["value"] is not None:
            return
        name, fn = msg["name"], msg["fn"]
        kind = _estimator(self.run, msg) if self.gradient else "none"
        self.kinds[name] = kind
        p = self.particle
        # one hash from the particle's key per site, written out (no loop on CPU)
        key = jax.random.fold_in(
            draws.written_out(p.key), _code(f"{p.salt}{self.draw_index}/{name}")
        )
        key = draws.for_sampler(fn, key)
        shape = msg["kwargs"].get("sample_shape", ())
        if name in p.overrides:
            msg["value"] = p.overrides[name]
        elif kind == "reparam":
            msg["value"] = fn.rsample(key, shape)
        else:
            msg["value"] = jax.lax.stop_gradient(fn.sample(key, shape))
        if kind == "enum":
            if not p.top:
                raise OptionError(
                    f"site '{name}': estimator='enum' is for draws in the top-level "
                    "particles of an objective, not in nested ones"
                )
            with jax.ensure_compile_time_eval():  # a constant: the values, not the shape
                support = np.asarray(unwrapped(fn).enumerate_support(expand=False)).reshape(-1)
            p.enum_sites.setdefault(name, (np.unique(support), jnp.shape(msg["value"])))
        if kind == "mvd":
            if not p.top:
                raise OptionError(f"site '{name}': estimator='mvd' in nested particles")
            p.mvd_sites.setdefault(name, (fn, msg["value"]))

    def postprocess_message(self, msg):
        kind = self.kinds.get(msg["name"]) if msg["type"] == "sample" else None
        if kind in ("reinforce", "enum"):
            # the probability of the draw itself: a minibatch plate's scale N/B weights the
            # objective's log densities, not the distribution the values were drawn from
            lp = msg["fn"].log_prob(msg["value"])
            if kind == "reinforce":
                self.particle.score = self.particle.score + jnp.sum(lp)
                self.particle.has_score = True
            else:
                self.particle.enum_log_q = self.particle.enum_log_q + jnp.sum(lp)


def _log_density(trace, path_sites=()):
    """Σ log densities of the trace's sample sites; the sites in `path_sites` are scored
    with their distribution's parameters held fixed (`_path_log_prob`)."""
    total = jnp.zeros(())
    for name, site in trace.items():
        if site["type"] == "sample":
            if name in path_sites:
                lp = _path_log_prob(name, site["fn"], site["value"])
            else:
                lp = site["fn"].log_prob(site["value"])
            if site.get("scale") is not None:
                lp = site["scale"] * lp
            total = total + jnp.sum(lp)
    return total


def _path_log_prob(name, fn, value):
    """log fn(value) with fn's parameters under stop_gradient: the gradient flows only
    through `value` (the path-gradient / sticking-the-landing form of log q). A
    distribution may give its own `path_log_prob(value)` (flow guides do: theirs needs
    no inverse)."""
    if hasattr(fn, "path_log_prob"):
        return fn.path_log_prob(value)
    try:
        held = jax.tree.map(jax.lax.stop_gradient, fn)
    except Exception as err:  # a distribution that is not a pytree
        raise OptionError(
            f"site '{name}': path_gradient=True needs the parameters of {type(fn).__name__} "
            f"held fixed, but it is not a JAX pytree ({err}); use path_gradient=False"
        ) from err
    return held.log_prob(value)


def _handled(program, run, key):
    fn = _Params(_Minibatch(program, run.key), run)
    return handlers.seed(fn, rng_seed=key)


def _current_particle(run):
    if run.particles:
        return run.particles[-1]
    if run.mode in ("discover", "init"):
        return _Particle(run.key, discover=True)
    raise _TopLevelDraw()


class _TopLevelDraw(Exception):
    """A draw outside `particles`: the objective is evaluated again as one particle."""


# ----- operations -------------------------------------------------------------------


def draw(program, *args, gradient=True, path_gradient=False, **kwargs):
    """Draw a program's latent sites at the current parameters: a `Draw`.

    gradient=False: the values are constants for differentiation (no reparameterization,
    no score-function terms), as wake-sleep objectives need; `log_q` still depends on
    the program's parameters, so a flow guide's sites, whose density is known only along
    their own draws (`scores_own_draws_only`), are refused: its gradient at a held value
    would be taken at a held base draw instead.

    path_gradient=True: `log_q` of the reparameterised sites is evaluated with the
    program's parameters held fixed (stop_gradient), so its gradient flows only through
    the draw (Roeder et al. 2017, "sticking the landing"; Vaitl et al. 2024): the score
    term E_q[∇_θ log q] = 0 is dropped from the estimate. Its value is unchanged."""
    run = _run()
    particle = _current_particle(run)
    key = particle.next_key()
    sampler = _Sample(_handled(program, run, key), run, particle, particle.count, gradient)
    with handlers.trace() as trace:
        sampler(*args, **kwargs)
    values = {
        n: s["value"] for n, s in trace.items()
        if (s["type"] == "sample" and not s["is_observed"]) or s["type"] == "deterministic"
    }  # fmt: skip
    own = [n for n, s in trace.items() if getattr(s.get("fn"), "scores_own_draws_only", False)]
    if own and not gradient:
        raise OptionError(
            f"the objective holds the guide's draws fixed and differentiates log q at them "
            f"(as wake-sleep's RWS and WakeQ do), but site(s) {own} of this flow guide have "
            "a density only along the guide's own draws; use an objective that "
            "differentiates through the draws (ELBO, IWAE, Renyi, VIMCO) or a guide with a "
            "density everywhere (ppl.vi.guides.Normal(), MultivariateNormal(), LowRank(r))"
        )
    run.sampled.update(sampler.kinds)
    if program is run.guide:
        run.guide_sites.update({n: trace[n]["type"] for n in values})
        run.guide_supports.update(  # (a Delta's value is its constrained param: no support)
            {
                n: None if isinstance(unwrapped(trace[n]["fn"]), Delta) else trace[n]["fn"].support
                for n in values
                if trace[n]["type"] == "sample"
            }
        )
        if run.mode == "init":
            _check_guide_draw(trace)
    path_sites = ()
    if path_gradient and gradient:
        path_sites = {n for n, kind in sampler.kinds.items() if kind == "reparam"}
    return Draw(values, _log_density(trace, path_sites))


class _RequireValues(Messenger):
    def __init__(self, fn, values):
        self.values = values
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "sample" and not msg["is_observed"] and msg["value"] is None:
            raise ModelError(
                f"score: latent site '{msg['name']}' of the scored program has no value in "
                f"the draw (it has {sorted(self.values)}); the guide must sample every latent "
                "site of the model"
            )


def score(program, values, *args, **kwargs):
    """log density of `program` (e.g. the model: log p(x, z)) at `values` (a Draw or a
    dict name -> value), all its sample sites (observed ones and factors) included."""
    run = _run()
    particle = _current_particle(run)
    values = values.values if isinstance(values, Draw) else values
    fn = _RequireValues(handlers.substitute(program, data=values), values)
    with handlers.trace() as trace:
        _handled(fn, run, particle.next_key())(*args, **kwargs)
    if program is run.model and run.mode == "init":
        _check_guide_sites(run, trace, values)
    return _log_density(trace)


def mean(values):
    return jnp.mean(values)


def logmeanexp(values):
    return jax.nn.logsumexp(values) - jnp.log(values.shape[0])


# ----- particles --------------------------------------------------------------------


class _Evaluated(NamedTuple):
    value: Any  # a scalar, or a pytree of scalars
    score: jax.Array
    enum_log_q: jax.Array


def _evaluate(run, fn, key, overrides, top, discover=False, salt=""):
    particle = _Particle(key, overrides, discover=discover, top=top, salt=salt)
    run.particles.append(particle)
    try:
        value = jax.tree.map(lambda v: jnp.asarray(v, dtype=float), fn())
    finally:
        run.particles.pop()
    shapes = [jnp.shape(v) for v in jax.tree.leaves(value)]
    if not shapes or any(s != () for s in shapes):
        raise ModelError(
            "ppl.vi.particles: the particle function must return a scalar (or a tuple/dict "
            f"of scalars), got shapes {shapes}"
        )
    return _Evaluated(value, particle.score, particle.enum_log_q), particle


def _split(key, num):
    """`num` keys from `key` (itself when num is 1: a hash less per step)."""
    return key[None] if num == 1 else jax.random.split(key, num)


def _broadcast(value, num_particles):
    return jax.tree.map(lambda v: jnp.broadcast_to(v, (num_particles,)), value)


def particles(fn, num_particles):
    """`num_particles` independent evaluations of `fn()`: a (K,) array, or a pytree of
    (K,) arrays when `fn` returns a pytree of scalars.

    Inside another particle function the particles are nested (e.g. inner importance
    samples per outer draw); their score-function terms belong to the enclosing
    particle, and "enum" / "mvd" sites are not allowed in them."""
    check_count("ppl.vi.particles", "num_particles", num_particles, 1)
    run = _run()
    salt = ""
    if run.particles:
        keys = _split(run.particles[-1].next_key(), num_particles)
    elif num_particles == 1:  # its draws hash the step's key: one hash each, not two
        keys, salt = run.key[None], f"{run.set_index}:"
    else:
        keys = _split(jax.random.fold_in(run.key, 1000 + run.set_index), num_particles)
    if run.mode in ("init", "discover"):  # one evaluation finds the params and sites
        top = not run.particles
        out, particle = _evaluate(run, fn, keys[0], {}, top=top, discover=True, salt=salt)
        if not top:
            run.particles[-1].has_score = run.particles[-1].has_score or particle.has_score
        return _broadcast(out.value, num_particles)
    if run.particles:  # nested: plain score-function terms handed to the enclosing particle
        outer = run.particles[-1]
        flags = []

        def inner(k):
            out, particle = _evaluate(run, fn, k, {}, top=False)
            flags.append(particle.has_score)
            return out

        out = jax.vmap(inner)(keys)
        outer.score = outer.score + jnp.sum(out.score)
        outer.has_score = outer.has_score or any(flags)
        return out.value
    index = run.set_index
    run.set_index += 1
    if run.mode == "replay":
        return run.injected[index]
    # one abstract pass finds the enumerated and mvd sites (Python only, nothing computed)
    found = {}

    def probe(k):
        out, particle = _evaluate(run, fn, k, {}, top=True, discover=True, salt=salt)
        found.update(
            enum=particle.enum_sites, mvd=list(particle.mvd_sites), score=particle.has_score
        )
        return out.value

    jax.eval_shape(probe, keys[0])
    if found["enum"] and found["score"]:
        raise OptionError(
            f"sites {list(found['enum'])} use estimator='enum' and others 'reinforce' in the "
            "same particles: enumerate them all, or use 'reinforce' (or 'mvd') for all"
        )
    record = _ParticleSet(run, fn, keys, found["enum"], found["mvd"], found["score"], salt)
    run.sets.append(record)
    return record.values


class _ParticleSet:
    """One top-level `particles` call: its values and what the surrogate needs."""

    def __init__(self, run, fn, keys, enum_sites, mvd_names, has_score, salt=""):
        self.run, self.fn, self.keys, self.salt = run, fn, keys, salt
        self.enum_sites, self.mvd_names, self.has_score = enum_sites, mvd_names, has_score
        self.k = keys.shape[0]
        if enum_sites:
            self.assignments = _assignments(enum_sites, self.k)
            out = jax.vmap(lambda key: jax.vmap(lambda a: self._eval(key, a))(self.assignments))(
                keys
            )  # (K, V)
            self.enum_values, self.enum_log_q, self.scores = out.value, out.enum_log_q, out.score
            # the values an objective sees: the first assignment (the surrogate sums all)
            self.values = jax.tree.map(lambda v: v[:, 0], self.enum_values)
        else:
            out = jax.vmap(lambda key: self._eval(key, None))(keys)
            self.values, self.scores = out.value, out.score

    def _eval(self, key, assignment):
        overrides = {} if assignment is None else self._overrides(assignment)
        return _evaluate(self.run, self.fn, key, overrides, top=True, salt=self.salt)[0]

    def _overrides(self, assignment):
        out, offset = {}, 0
        for name, (support, shape) in self.enum_sites.items():
            size = int(np.prod(shape, dtype=int))
            idx = assignment[offset : offset + size]
            out[name] = jnp.asarray(support)[idx].reshape(shape)
            offset += size
        return out


def _assignments(enum_sites, num_particles):
    sizes = [
        len(s) for s, shape in enum_sites.values() for _ in range(int(np.prod(shape, dtype=int)))
    ]
    total = int(np.prod(sizes, dtype=float)) ** num_particles
    if total > MAX_ENUMERATION:
        raise OptionError(
            f"estimator='enum' on site(s) {list(enum_sites)}: {total} joint assignments "
            f"(over {num_particles} particle(s)) exceed MAX_ENUMERATION={MAX_ENUMERATION}; "
            "use fewer particles, smaller discrete sites, or estimator='reinforce' / 'mvd'"
        )
    grids = np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij")
    return jnp.asarray(np.stack([g.reshape(-1) for g in grids], axis=-1), jnp.int32)


# ----- measure-valued derivatives ---------------------------------------------------


_MVD_TYPES = (BernoulliProbs, BernoulliLogits, CategoricalProbs, CategoricalLogits, Normal)


def _mvd_parts(fn, value, key):
    """For each differentiable parameter θ of `fn` (broadcast to the value's shape):
    (θ, constant c, list of (sign, replacement values for every element))."""
    base = unwrapped(fn)
    shape = jnp.shape(value)
    b = lambda x: jnp.broadcast_to(x, shape)  # noqa: E731
    if isinstance(base, (BernoulliProbs, BernoulliLogits)):
        return [(b(base.probs), 1.0, [(1.0, jnp.ones(shape)), (-1.0, jnp.zeros(shape))])]
    if isinstance(base, (CategoricalProbs, CategoricalLogits)):
        probs = jnp.broadcast_to(base.probs, shape + base.probs.shape[-1:])
        return [
            (probs[..., j], 1.0, [(1.0, jnp.full(shape, j, value.dtype))])
            for j in range(probs.shape[-1])
        ]
    # Normal (`_estimator` admits only _MVD_TYPES)
    loc, scale = b(base.loc), b(base.scale)
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    rayleigh = lambda k: jnp.sqrt(-2 * jnp.log(jax.random.uniform(k, shape)))  # noqa: E731
    maxwell = jnp.linalg.norm(jax.random.normal(k3, shape + (3,)), axis=-1)
    sign = jnp.where(jax.random.bernoulli(k4, 0.5, shape), 1.0, -1.0)
    return [
        (loc, 1 / (scale * jnp.sqrt(2 * jnp.pi)),
         [(1.0, loc + scale * rayleigh(k1)), (-1.0, loc - scale * rayleigh(k2))]),
        (scale, 1 / scale,
         [(1.0, loc + scale * sign * maxwell), (-1.0, loc + scale * jax.random.normal(k5, shape))]),
    ]  # fmt: skip


def _mvd_surrogate(run, record, f_of, injected, index):
    """Σ over particles, mvd sites, elements and parameters of sg(c · Σ± ±F(±)) · θ."""
    total = jnp.zeros(())
    for k in range(record.k):
        key = record.keys[k]
        _, particle = _evaluate(run, record.fn, key, {}, top=True, salt=record.salt)
        for name in record.mvd_names:
            fn, value = particle.mvd_sites[name]
            size = int(np.prod(jnp.shape(value), dtype=int))
            if size > MAX_MVD_ELEMENTS:
                raise OptionError(
                    f"site '{name}': estimator='mvd' re-evaluates the objective for each of "
                    f"its {size} elements (limit {MAX_MVD_ELEMENTS}); use 'reinforce'"
                )
            parts = _mvd_parts(fn, value, jax.random.fold_in(key, _code(name) + 1))
            for theta, c, branches in parts:
                weight = sum(
                    sign * _objective_at(run, record, f_of, injected, index, k, name, value, r)
                    for sign, r in branches
                )
                total = total + jnp.sum(jax.lax.stop_gradient(c * weight) * theta)
    return total - jax.lax.stop_gradient(total)


def _objective_at(run, record, f_of, injected, index, k, name, value, replacement):
    """F with particle k re-evaluated after element e of site `name` is replaced, for
    every element e (vmapped): an array shaped like the site's value."""
    key = record.keys[k]

    def at(e):
        z = value.reshape(-1).at[e].set(replacement.reshape(-1)[e].astype(value.dtype))
        z = z.reshape(value.shape)
        v = _evaluate(run, record.fn, key, {name: z}, top=True, salt=record.salt)[0].value
        return f_of(_replace(injected, index, k, v))

    return jax.vmap(at)(jnp.arange(value.size)).reshape(value.shape)


def _replace(injected, index, k, value):
    """The injected particle values with particle k of set `index` set to `value`."""
    return [
        jax.tree.map(lambda x, y: x.at[k].set(y), v, value) if j == index else v
        for j, v in enumerate(injected)
    ]


# ----- objectives -------------------------------------------------------------------


def init_params(objective, key, model, guide):
    """Initial (unconstrained) values of every `ppl.param` the objective's programs use
    (one compiled run of the objective, each particle function evaluated once: compiling
    the few ops once is much faster than dispatching them one by one)."""

    def found(key):
        run = _Run(key, {}, {}, "init", model=model, guide=guide)
        _STACK.append(run)
        try:
            objective.program(model, guide, **dict(objective.options))
        finally:
            _STACK.pop()
        return dict(run.params_found)

    return jax.jit(found)(key)


class SurrogateOut(NamedTuple):
    value: jax.Array
    surrogate: jax.Array
    baseline: jax.Array


@dataclass(frozen=True)
class Objective:
    """A configured objective (made by an `@objective` factory); hashable."""

    program: Any
    options: tuple = ()
    baseline: str = "auto"
    is_bound: bool = False
    auxiliary: tuple = ()  # guide sites the objective does not score the model at

    @property
    def name(self):
        return getattr(self.program, "__name__", "objective")

    def surrogate(self, key, params, model, guide, baseline_state, estimators=None):
        """(value of the objective, surrogate whose gradient estimates its gradient, new
        moving-average baseline)."""
        run = _Run(key, params, dict(estimators or {}), "run", model=model, guide=guide)
        _STACK.append(run)
        try:
            out = self._surrogate(run, model, guide, baseline_state)
        finally:
            _STACK.pop()
        _check_estimators(run)
        return out

    def _surrogate(self, run, model, guide, baseline_state):
        options = dict(self.options)
        key, params, estimators = run.key, run.params, run.estimators
        program = self.program
        try:
            value = jnp.asarray(program(model, guide, **options), dtype=float)
        except _TopLevelDraw:  # draws outside particles(): the whole objective is a particle

            def program(model, guide, **o):
                return particles(lambda: self.program(model, guide, **o), 1)[0]

            run.sets, run.set_index, run.particles = [], 0, []
            value = jnp.asarray(program(model, guide, **options), dtype=float)
        sets = run.sets
        injected = [s.values for s in sets]

        def f_of(values):
            replay = _Run(key, params, estimators, "replay", injected=values)
            _STACK.append(replay)
            try:
                return jnp.asarray(program(model, guide, **options), dtype=float)
            finally:
                _STACK.pop()

        surrogate = value
        new_baseline = baseline_state
        for index, record in enumerate(sets):
            if record.enum_sites:
                surrogate, value = self._enumerated(record, index, injected, f_of)
            if record.mvd_names:
                surrogate = surrogate + _mvd_surrogate(run, record, f_of, injected, index)
            if not record.has_score:
                continue
            baseline = self._baseline(record, index, injected, f_of, baseline_state, value)
            s = record.scores
            surrogate = surrogate + jnp.sum(
                jax.lax.stop_gradient(value - baseline) * (s - jax.lax.stop_gradient(s))
            )
            new_baseline = DECAY * baseline_state + (1 - DECAY) * jax.lax.stop_gradient(value)
        return SurrogateOut(jax.lax.stop_gradient(value), surrogate, new_baseline)

    def _enumerated(self, record, index, injected, f_of):
        """Σ over joint assignments of all particles: Π q(v_k) · F(values at v)."""
        v = record.enum_log_q.shape[1]
        combos = np.stack(np.meshgrid(*[np.arange(v)] * record.k, indexing="ij"), -1).reshape(
            -1, record.k
        )
        combos = jnp.asarray(combos)
        rows = jnp.arange(record.k)

        def one(c):
            values = jax.tree.map(lambda x: x[rows, c], record.enum_values)
            f = f_of([values if j == index else x for j, x in enumerate(injected)])
            return f, jnp.sum(record.enum_log_q[rows, c])

        fs, log_q = jax.vmap(one)(combos)
        expected = jnp.sum(jnp.exp(log_q) * fs)
        return expected, jax.lax.stop_gradient(expected)

    def _baseline(self, record, index, injected, f_of, state, value):
        kind = self.baseline
        if kind == "auto":
            kind = "leave_one_out" if record.k > 1 else "moving_average"
        if kind == "none":
            return jnp.zeros(record.k)
        if kind == "moving_average":
            return jnp.broadcast_to(state, (record.k,))
        if record.k < 2:
            raise OptionError(
                f"{self.name}: baseline='leave_one_out' needs num_particles >= 2 (it replaces "
                "each particle's value by the mean of the others')"
            )

        def loo(k):
            others = jax.tree.map(lambda v: (jnp.sum(v) - v[k]) / (record.k - 1), record.values)
            return f_of(_replace(injected, index, k, others))

        return jax.lax.stop_gradient(jax.vmap(loo)(jnp.arange(record.k)))


def objective(fn=None, *, bound=False, baseline="auto", check=None, auxiliary=None):
    """Mark `fn(model, guide, **options) -> scalar` as an objective to maximise.

    Returns a factory: `fn_factory(baseline=<default>, **options) -> Objective`, where the
    default baseline is `baseline` ("auto": leave-one-out with K > 1 particles, else a
    moving average). `bound=True` says the value is a lower bound on log p(x) (so the
    SVI method reports it as the log evidence); `bound` may also be a function of the
    options (a dict, `fn`'s defaults filled in), e.g. `lambda o: o["alpha"] >= 0`.

    The factory refuses an option `fn` does not take (unless it takes **options), one
    without a default that is not given, and a `num_particles` that is not an integer
    >= 1; `check(options)` (same dict as `bound`'s) may raise an OptionError for others.
    `auxiliary(options)` names the guide's auxiliary sites, which the objective leaves out
    of the values it scores the model at (HVI's `aux`): the guide's density of the
    model's sites alone has no closed form.

    >>> @ppl.vi.objective(bound=True)
    ... def elbo(model, guide, num_particles=1):
    ...     def one():
    ...         d = ppl.vi.draw(guide)
    ...         return ppl.vi.score(model, d) - d.log_q
    ...     return ppl.vi.mean(ppl.vi.particles(one, num_particles))
    """
    if fn is None:
        return functools.partial(
            objective, bound=bound, baseline=baseline, check=check, auxiliary=auxiliary
        )
    _check_baseline(fn.__name__, baseline)
    default = baseline

    @functools.wraps(fn)
    def factory(*, baseline=default, **options):
        _check_baseline(fn.__name__, baseline)
        full = _with_defaults(fn, options)
        if check is not None:
            check(full)
        is_bound = bool(bound(full)) if callable(bound) else bool(bound)
        aux = tuple(auxiliary(full)) if auxiliary is not None else ()
        return Objective(fn, tuple(sorted(options.items())), baseline, is_bound, aux)

    factory.program = fn
    fn.__qualname__ = f"{factory.__qualname__}.program"  # pickle finds fn through the factory
    return factory


def _with_defaults(fn, options):
    """The options of objective `fn(model, guide, ...)` with its defaults filled in;
    OptionError for an unknown or missing option or a bad `num_particles`."""
    name = fn.__name__
    params = list(inspect.signature(fn).parameters.values())[2:]
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not any(p.kind == p.VAR_KEYWORD for p in params):
        for option in options:
            if option not in names:
                raise OptionError(
                    f"{name}: unknown option '{option}'{did_you_mean(option, names)}; "
                    f"options are {', '.join([*names, 'baseline'])}"
                )
    full = {p.name: p.default for p in params if p.name in names and p.default is not p.empty}
    full.update(options)
    for option in names:
        if option not in full:
            raise OptionError(f"{name}: option '{option}' has no default: give {option}=...")
    if "num_particles" in full:
        check_count(name, "num_particles", full["num_particles"], 1)
    return full


def _check_baseline(name, baseline):
    if baseline not in BASELINES:
        raise OptionError(
            f"{name}: unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}"
        )
