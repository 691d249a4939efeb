"""Particle filters for models whose time loop is `ppl.scan` (`ParticleFilter`, "pf").

N particles run the model's step function one time step at a time. Each particle
carries the static sites (drawn from the prior, or fixed by the caller as in particle
MCMC), the scan's carry and a log weight. At step t:

1. when the ESS of the weights falls below `resample_threshold` · N, particles are
   resampled (their ancestors recorded) and the weights made equal;
2. every particle runs step(carry, x_t): latent sites drawn from the model's own
   transition (bootstrap) or from a user proposal, and weighted by the incremental
   weight (observed densities; times p/q for a proposal);
3. log Ẑ grows by the log of the weighted mean incremental weight, so exp(log Ẑ) is
   an unbiased estimate of p(y).

Smoothed trajectories come from ancestor tracing: pick final particles by weight,
then follow their recorded ancestors back to t = 0.

A particle whose incremental weight is NaN (the model's density is NaN there) gets zero
weight; "pf" counts such particles and warns, as it warns when the weights collapse
onto a few particles (`COLLAPSE_FRACTION`).

`filter_states` is the pure core, used by the "pf" method and by particle MCMC
(conditional SMC keeps one particle on a reference trajectory).
"""

import time
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ppl.core import draws
from ppl.core.checks import explain_tracer_errors
from ppl.errors import InferenceError, OptionError, warn
from ppl.infer.driver import progress_bar, progress_enabled
from ppl.infer.evidence import log_mean_exp
from ppl.infer.method import Method, check_option
from ppl.infer.posterior import Posterior
from ppl.infer.registry import register
from ppl.smc.resampling import (
    check_scheme,
    conditional_resample,
    effective_sample_size,
    resample,
)
from ppl.smc.state_space import describe, prefix, run_step, trace_log_prob

__all__ = ["ParticleFilter", "FilterSettings", "FilterResult", "filter_states", "trace_back"]

#: "pf" warns when, after some time step's weighting, the ESS of the weights is below
#: this fraction of the particles (or below COLLAPSE_MIN): nearly all the weight then
#: sits on a few particles, on which that step's evidence increment, filtering mean and
#: every smoothed path rest (a filter that never resamples, 100 particles, 50 steps:
#: ESS 1.0 and log evidence 40 nats off, no error). Healthy filters stay above it: the
#: bootstrap filters (1000 particles) of tests/test_particle_filter.py and tutorial 03
#: keep the ESS after every step above 5% and 3% of the particles, their lowest at an
#: outlying observation; below 1%, 99% of the particles carry no weight.
COLLAPSE_FRACTION = 0.01
#: ... or below an ESS of 2, whatever the number of particles: for fewer than 200, 1% is
#: under two particles (under 100, an ESS no filter can fall below), and an ESS under 2
#: means one particle holds most of the weight.
COLLAPSE_MIN = 2.0
#: ... and at most this ESS: with many particles an outlying observation may leave 1% of
#: them (79 of 10,000 in benchmarks/pf_vs_hand.py) with a log evidence still right to
#: 0.3 nats; a few dozen particles carrying the weight is no collapse.
COLLAPSE_MAX = 20.0


@dataclass(frozen=True)
class FilterSettings:
    """What the compiled filter depends on (hashable)."""

    layout: Any
    num_particles: int
    resample_threshold: float
    resampling: str
    proposal: Any = None


class FilterResult(NamedTuple):
    """One filter run. Per particle: `static` values (after the last resampling) and
    normalised `log_weights` after the last step; per step t: `values` (latent and
    deterministic step sites, (T, N, ...)), `ancestors` (T, N), `filtering_mean` of the
    real-valued step sites, `ess` before resampling, `resampled`, the log evidence
    increment and `nan_weights` (particles whose incremental weight was NaN, given zero
    weight); `log_evidence` the total."""

    log_evidence: jax.Array
    static: dict
    log_weights: jax.Array
    values: dict
    ancestors: jax.Array
    filtering_mean: dict
    ess: jax.Array
    resampled: jax.Array
    increments: jax.Array
    nan_weights: jax.Array


def _static_values(trace, layout):
    return {n: trace[n]["value"] for n in layout.static + layout.static_deterministic}


def _particle_start(model, layout, key, fixed):
    """One particle at t = 0: its static values, the scan's initial carry and the log
    density of observed sites before the loop (drawn from the prior where not fixed)."""
    trace, call, _ = prefix(model, key, fixed)
    return _static_values(trace, layout), call.init, trace_log_prob(trace, observed=True)


def _particle_step(model, settings, static, carry, x, key, reference, use_reference):
    latent = {n: static[n] for n in settings.layout.static}
    _, call, _ = prefix(model, jax.random.key(0), latent)  # static sites all fixed
    carry, trace, log_w = run_step(
        call.step, carry, x, key, settings.proposal, reference, use_reference
    )
    kept = settings.layout.latent + settings.layout.deterministic
    return carry, {n: trace[n]["value"] for n in kept}, log_w


def filter_states(model, settings, key, fixed=None, reference=None):
    """Run the filter once: a FilterResult.

    fixed: static site values shared by all particles (particle MCMC), or None to draw
    them from the prior per particle. reference: a trajectory {site: (T, ...)} that
    particle 0 keeps (conditional SMC), or None.
    """
    n = settings.num_particles
    fixed = {} if fixed is None else fixed
    key_start, key_loop = jax.random.split(key)
    start = partial(_particle_start, model, settings.layout)
    static, carry, log_w = jax.vmap(start, (0, None))(jax.random.split(key_start, n), fixed)
    _, call, _ = prefix(model, key_start, {k: v[0] for k, v in static.items()})
    log_total = jax.nn.logsumexp(log_w)
    log_w = log_w - log_total
    is_ref = jnp.arange(n) == 0
    step = jax.vmap(partial(_particle_step, model, settings), (0, 0, None, 0, None, 0))

    def one_step(state, inputs):
        static, carry, log_w, log_z = state
        x, ref_t, key = inputs
        key_resample, key_move = draws.split(key)  # (written out: no hash loop per step)
        ess = effective_sample_size(log_w)
        do = ess < settings.resample_threshold * n
        if reference is None:
            idx = resample(key_resample, log_w, scheme=settings.resampling)
        else:  # the reference particle keeps its own past, the others iid (any scheme)
            idx = conditional_resample(key_resample, log_w)
        idx = jnp.where(do, idx, jnp.arange(n, dtype=idx.dtype))
        static, carry = jax.tree.map(lambda v: v[idx], (static, carry))
        log_w = jnp.where(do, -jnp.log(n), log_w)
        keys = jax.random.split(key_move, n)
        carry, values, incr = step(static, carry, x, keys, ref_t, is_ref)
        nan = jnp.isnan(incr)
        log_w = log_w + jnp.where(nan, -jnp.inf, incr)  # NaN: zero weight (counted)
        increment = jax.nn.logsumexp(log_w)
        log_w = log_w - increment
        w = jnp.exp(log_w)
        means = {k: jnp.tensordot(w, v, 1) for k, v in values.items() if _real(v)}
        out = (values, idx, means, ess, do, increment, jnp.sum(nan))
        return (static, carry, log_w, log_z + increment), out

    t = settings.layout.length
    inputs = (call.xs, reference, jax.random.split(key_loop, t))
    state = (static, carry, log_w, log_total - jnp.log(n))
    (static, _, log_w, log_z), out = jax.lax.scan(one_step, state, inputs, length=t)
    return FilterResult(log_z, static, log_w, *out)


def _real(v):
    return jnp.issubdtype(v.dtype, jnp.floating)


def trace_back(key, result, num_draws):
    """Smoothed draws by ancestor tracing: (static values, trajectories (num_draws, T, ...)).

    Final particles are picked by their weights; each one's past is read off the
    recorded ancestors backwards in time."""
    pick = jax.random.categorical(key, result.log_weights, shape=(num_draws,))

    def back(idx, inputs):
        values, ancestors = inputs
        return ancestors[idx], jax.tree.map(lambda v: v[idx], values)

    _, paths = jax.lax.scan(back, pick, (result.values, result.ancestors), reverse=True)
    paths = jax.tree.map(lambda v: jnp.swapaxes(v, 0, 1), paths)  # (draws, T, ...)
    static = jax.tree.map(lambda v: v[pick], result.static)
    return static, paths


@partial(jax.jit, static_argnums=(0, 3))
def _run(settings, model, keys, num_samples):
    def one(key):
        key_filter, key_back = jax.random.split(key)
        result = filter_states(model, settings, key_filter)
        static, paths = trace_back(key_back, result, num_samples)
        final_ess = effective_sample_size(result.log_weights)
        summary = (
            result.ess, final_ess, result.resampled, result.increments, result.nan_weights,
            result.filtering_mean,
        )  # fmt: skip
        return result.log_evidence, static, paths, summary

    return jax.vmap(one)(keys)


def check_filter_options(method):
    """The particle filter's options (`num_particles`, `proposal`, `resample_threshold`,
    `resampling`), shared by "pf" and the particle MCMC kernels."""
    check_option(method, "num_particles", lambda v: v >= 2, "an integer >= 2", integer=True)
    check_option(method, "resample_threshold", lambda v: 0 <= v <= 1, "a number in [0, 1]")
    check_scheme(method.resampling)
    if method.proposal is not None and not callable(method.proposal):
        raise OptionError(
            f"{type(method).__name__}: proposal={method.proposal!r} must be a function "
            "proposal(carry, x) that samples the step's latent sites"
        )


def filter_settings(method, model):
    """The compiled filter's settings for `model` from a method's filter options."""
    return FilterSettings(
        describe(model, method.proposal), method.num_particles,
        float(method.resample_threshold), method.resampling, method.proposal,
    )  # fmt: skip


@register("pf")
@dataclass(frozen=True)
class ParticleFilter(Method):
    """A particle filter for models whose time loop is `ppl.scan(step, init, xs)`.

    >>> # m: a bound model with a ppl.scan loop over a latent site "x" (see ppl.scan)
    >>> post = ppl.infer(m, method=ppl.smc.ParticleFilter(num_particles=1000), num_chains=4)
    >>> post.log_evidence, post.diagnostics["filtering_mean"]["x"]

    Sites before the loop (static parameters) are drawn from the prior once per
    particle and weighted with the rest; for real parameter inference use particle
    MCMC (`ppl.smc.PMMH`, `ppl.smc.ParticleGibbs`).

    num_particles: particles per filter.
    proposal: None for the bootstrap filter (latent sites drawn from the model's
        transition), or a DSL function `proposal(carry, x)` sampling the step's latent
        sites (same names), e.g. one that looks at the observation x.
    resample_threshold: resample when the ESS falls below this fraction of the
        particles (1.0: at every step; 0.0: never).
    resampling: "systematic" | "stratified" | "residual" | "multinomial".

    In `infer()`, `num_chains` independent filters (their spread gives the Monte Carlo
    standard error of the log evidence) and `num_samples` smoothed trajectories per
    filter, by ancestor tracing: `post.samples["x"]` has shape (chains, draws, T, ...).
    `post.log_evidence` is log of the mean over filters of each filter's estimate.

    post.diagnostics: "filtering_mean" {site: (chains, T, ...)}, "ess" (chains, T,
    before resampling), "resampled" (chains, T), "log_evidence_increments" (chains, T),
    "log_evidence_per_run", "log_evidence_se", "nan_weights" (per chain: particles
    whose weight was NaN, counted as zero weight), "wall_time", and "warnings": one line
    per problem found (each also a `ppl.SamplingWarning`): NaN weights, and weights that
    collapse onto a few particles (an ESS after some step's weighting below 1% of the
    particles, but at least 2 and at most 20: the constants `COLLAPSE_FRACTION`,
    `COLLAPSE_MIN` and `COLLAPSE_MAX` of the module `ppl.smc.particle_filter`).
    """

    num_particles: int = 1000
    proposal: Any = None
    resample_threshold: float = 0.5
    resampling: str = "systematic"

    def __post_init__(self):
        super().__post_init__()
        check_filter_options(self)

    def settings(self, model):
        return filter_settings(self, model)

    def run(self, model, *, num_samples, num_chains, seed, progress):
        t0 = time.perf_counter()
        settings = self.settings(model)  # the model's structure first, then its data:
        # the observed-data checks of every method (shapes, NaN, support)
        model.log_density().require_full_data(self.label)
        bar = progress_bar(
            total=num_chains, disable=not progress_enabled(progress), desc="pf",
            bar_format="{desc} [{elapsed}]",
        )  # fmt: skip
        with bar, explain_tracer_errors(model.name):
            bar.set_description_str(
                f"pf: {num_chains} x {self.num_particles} particles, {settings.layout.length} steps"
            )
            keys = jax.random.split(seed, num_chains)
            log_z, static, paths, summary = jax.device_get(_run(settings, model, keys, num_samples))
        ess, final_ess, resampled, increments, nan_weights, means = summary
        _check_degenerate(increments)
        after = np.concatenate([ess[:, 1:], final_ess[:, None]], axis=1)  # ESS after step t
        messages = _nan_warnings(nan_weights) + _collapse_warnings(after, self.num_particles)
        for message in messages:
            warn(message)
        samples = {**static, **paths}
        log_z = np.asarray(log_z, dtype=np.float64)
        diagnostics = {
            "filtering_mean": {k: np.asarray(v) for k, v in means.items()},
            "ess": np.asarray(ess),
            "resampled": np.asarray(resampled),
            "log_evidence_increments": np.asarray(increments),
            "log_evidence_per_run": log_z,
            "log_evidence_se": log_mean_exp(log_z)[1],
            "num_particles": self.num_particles,
            "nan_weights": np.asarray(nan_weights).sum(axis=1),
            "wall_time": time.perf_counter() - t0,
            "warnings": messages,
        }
        return Posterior(
            {k: np.asarray(v) for k, v in samples.items()},
            diagnostics,
            log_evidence=log_mean_exp(log_z)[0],
            method=self.label,
            model=model,
            latent_sites=settings.layout.static + settings.layout.latent,
        )


def _check_degenerate(increments):
    bad = ~np.isfinite(np.asarray(increments))
    if bad.any():
        run, step = (int(i[0]) for i in np.nonzero(bad))
        raise InferenceError(
            f"particle filter: degenerate weights at time step {step} (of run {run}): no "
            "particle gives the observation a finite log density (all weights are -inf or "
            "NaN). Check the observation model at that step (data outside a distribution's "
            "support), or use more particles or a proposal that looks at the data."
        )


def _steps(steps):
    shown = [str(int(t)) for t in steps]
    return ", ".join(shown if len(shown) <= 6 else shown[:5] + ["...", shown[-1]])


def _nan_warnings(nan_weights):
    """A line when some particles' incremental weights were NaN (set to zero weight)."""
    nan_weights = np.asarray(nan_weights)
    if not nan_weights.any():
        return []
    steps = np.flatnonzero(nan_weights.any(axis=0))
    return [
        f"particle filter: {int(nan_weights.sum())} particle weight(s) were NaN (the "
        f"model's log density is NaN there) at time step(s) {_steps(steps)} and were "
        "counted as zero weight, so the results ignore those regions of the state space; "
        "check the model's densities for NaN (e.g. a scale that can be 0 or negative)"
    ]


def _collapse_warnings(ess_after, num_particles):
    """A line when the ESS after some step's weighting falls below the collapse level."""
    level = max(COLLAPSE_MIN, min(COLLAPSE_FRACTION * num_particles, COLLAPSE_MAX))
    low = ess_after < level
    if not low.any():
        return []
    steps = np.flatnonzero(low.any(axis=0))
    run, step = np.unravel_index(np.argmin(ess_after), ess_after.shape)
    return [
        f"particle filter: the particle weights collapsed: the effective sample size after "
        f"weighting fell below {level:g} of {num_particles} particles at {len(steps)} of "
        f"{ess_after.shape[1]} time step(s) ({_steps(steps)}; lowest "
        f"{ess_after[run, step]:.2f}, at step {step} of run {run}), so the log evidence, "
        "filtering means and smoothed paths rest on a few particles and can be far off. "
        "Use more particles (num_particles=...), resample more often (resample_threshold"
        "=0.5, or 1.0 for every step), or a proposal that looks at the observation "
        "(ParticleFilter(proposal=...))"
    ]
