"""Tempered SMC for any model: particles move from the prior to the posterior.

The target at inverse temperature β is log prior + β · log likelihood (the split
`LogDensity.terms` gives). N particles start as prior draws at β = 0; each stage

1. picks the next β' (by bisection, so the ESS of the incremental weights
   (β' − β) · log lik is `target_ess` times the particles with a finite likelihood;
   or the next entry of a fixed `schedule`),
2. adds log mean exp((β' − β) · log lik) to the log evidence (the particles are
   equally weighted after the previous stage's resampling),
3. resamples by those weights, and
4. moves every particle with `num_mcmc_steps` steps of any `ppl.mcmc` kernel (or
   combinator) on the tempered density, tuned from the particle population.

Waste-free SMC (Dau & Chopin 2022, `waste_free=True`) changes steps 3 and 4 only:
it resamples M = N / P particles (P = num_mcmc_steps + 1) and keeps every state of
their P-state chains as the N particles of the next stage.

Tuning, per adaptive part of the kernel (every part with a `target_accept` and an
adapted state: RWMH, MALA, HMC, NUTS, also inside `cycle`, `mixture`, `repeat` and
`blocks`): the inverse mass matrix (the proposal covariance of RWMH) is the
weighted covariance of the particles at the new temperature, diagonal or dense as
the kernel's `dense_mass` says, with Stan's shrinkage; the step size starts at
d^(-1/4) for gradient kernels (the target looks whitened once the mass matrix is
the particle covariance; Beskos et al. 2013) and at the kernel's own value for
RWMH (2.38 / √d), and after each stage becomes step · exp(ā − target_accept),
ā the mean acceptance of that stage's moves. Gradient kernels draw each particle's
step size at each move uniformly within ±50 % of that (which keeps fixed-length
HMC from turning whitened particles by a full period, see `_jittered`). Kernel
states (their caches) travel with the particles from stage to stage; the kernels'
own warmup (and their initial step-size search) never runs.

One stage is one compiled function over all independent runs (`num_chains`; see
`_per_run`), compiled once per run of `infer` (its output has its input's types);
Python runs the loop over stages and a progress bar showing β, one small transfer
(the stage's diagnostics) per stage. Runs that reach β = 1 first keep moving their
particles at β = 1 (which leaves them posterior draws) while the others finish; their
evidence and stage count stay put.

A particle whose log density is NaN gets zero weight, like one outside the support
(-inf); unlike those, NaN particles are counted ("nan_log_density") and warned about,
since the posterior then silently leaves out the region where the density is NaN.
"""

import time
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ppl.core.checks import explain_tracer_errors
from ppl.core.conditional import ConditionalDensity, block_indices
from ppl.core.model import abstract_call, is_improper
from ppl.errors import InferenceError, ModelError, OptionError, warn
from ppl.infer.driver import progress_bar, progress_enabled
from ppl.infer.evidence import log_mean_exp
from ppl.infer.method import Method, check_option
from ppl.infer.posterior import Posterior
from ppl.infer.registry import register, resolve
from ppl.mcmc.combinators import Blocks, Cycle, Mixture, Repeat
from ppl.mcmc.gradient import GradientMethod
from ppl.mcmc.method import MCMCMethod, constrained_values
from ppl.mcmc.rwmh import RWMH
from ppl.smc.resampling import check_scheme, effective_sample_size, resample

__all__ = ["Tempered", "TemperedDensity"]

#: Bisection steps for the next temperature (2^-40 of the remaining interval).
BISECTION_STEPS = 40
#: Step size update per stage: log step += STEP_GAIN · (mean acceptance − target).
STEP_GAIN = 1.0
#: Gradient moves draw each particle's step size, at each move, uniformly within
#: ±STEP_JITTER of the tuned one (see `_jittered`).
STEP_JITTER = 0.5


class TemperedDensity:
    """A LogDensity at inverse temperature `beta`: log prior + beta · log likelihood.

    A density view like `ConditionalDensity`: kernels use `potential`, `size`,
    `sites`, ...; everything but the density itself is the LogDensity's. `beta` may
    be a traced value.
    """

    def __init__(self, logdensity, beta):
        self.logdensity = logdensity
        self.beta = beta

    def __call__(self, z):
        if isinstance(self.beta, float) and self.beta == 0.0:  # known while tracing
            return self.logdensity.log_prior(z)
        log_prior, log_lik = self.logdensity.terms(z)
        # at beta = 0 the prior alone (0 · -inf would be NaN)
        return log_prior + jnp.where(self.beta > 0, self.beta * log_lik, 0.0)

    def potential(self, z):
        return -self(z)

    def restrict(self, names, z):
        return ConditionalDensity(self, tuple(names), z)

    def __getattr__(self, name):
        if name == "logdensity":  # not set yet (copying): no recursion
            raise AttributeError(name)
        return getattr(self.logdensity, name)


# ----- population tuning of the kernel's adaptive parts ------------------------------


class _Part(NamedTuple):
    """An adaptive part of a (combined) kernel, reached by `path` through the `adapt`
    tuples of combined states (and the `parts` of their infos)."""

    path: tuple
    target: float
    indices: Any  # its coordinates in the full vector (None: all)
    gradient: bool
    tune_step: bool
    tune_mass: bool


def _parts(method, logdensity, path=(), indices=None):
    """The adaptive parts of `method`'s kernel, walking the combinators."""
    if isinstance(method, Cycle):
        subs = [(m, indices) for m in method.methods]
    elif isinstance(method, Mixture):
        subs = [(m, indices) for _, m in method.weighted]
    elif isinstance(method, Repeat):
        subs = [(method.method, indices)]
    elif isinstance(method, Blocks):
        subs = [(m, block_indices(logdensity, names)) for names, m in method.parts]
    elif hasattr(method, "target_accept"):
        mass = getattr(method, "adapt_mass_matrix", getattr(method, "adapt_covariance", True))
        return [
            _Part(
                path,
                float(method.target_accept),
                indices,
                isinstance(method, GradientMethod),
                bool(getattr(method, "adapt_step_size", True)),
                bool(mass),
            )
        ]
    else:
        return []
    return [p for j, (m, idx) in enumerate(subs) for p in _parts(m, logdensity, path + (j,), idx)]


def _get(state, path):
    for j in path:
        state = state.adapt[j]
    return state


def _set(state, path, sub):
    if not path:
        return sub
    parts = list(state.adapt)
    parts[path[0]] = _set(parts[path[0]], path[1:], sub)
    return state._replace(adapt=tuple(parts))


def _info(info, path):
    for j in path:
        info = info.parts[j]
    return info


def _adapted(state, part):
    """Whether the part's state carries a step size and mass matrix (checked while tracing)."""
    adapt = _get(state, part.path).adapt
    return hasattr(adapt, "step_size") and hasattr(adapt, "inverse_mass_matrix")


def _jittered(state, part):
    """Whether the part's step size is jittered: tuned gradient parts. With the mass
    matrix the particle covariance, a near-Gaussian target looks isotropic, so a fixed
    number of leapfrog steps L at a fixed step size ε turns every particle by about the
    same angle ε·L, and the step size tuned toward the target acceptance can put that
    angle near 2π, where a move returns close to its start (the logistic regression of
    benchmarks/smc_vs_blackjax.py: ε ≈ 0.67, L = 10; the particles barely moved and
    log Z came out 0.4 too high, 6 standard errors). Random step sizes spread the
    angle (Neal 2011, 5.4); each draw is independent of the state, so the move stays
    invariant."""
    return part.gradient and part.tune_step and _adapted(state, part)


def _with_step_size(state, part, step_size):
    sub = _get(state, part.path)
    size = jnp.broadcast_to(step_size, sub.adapt.step_size.shape).astype(sub.adapt.step_size.dtype)
    return _set(state, part.path, sub._replace(adapt=sub.adapt._replace(step_size=size)))


def _population_mass(z, weights, dense):
    """Weighted particle covariance (diagonal or dense) with Stan's regularisation, as
    (inverse mass matrix, mass matrix sqrt, its inverse) in NumPyro's conventions."""
    mean = weights @ jnp.where(weights[:, None] > 0, z, 0.0)
    centred = jnp.where(weights[:, None] > 0, z - mean, 0.0)
    n = 1.0 / jnp.sum(weights**2)  # the ESS plays the part of the sample size
    shrink = 5.0 / (n + 5.0)
    if not dense:
        cov = (1 - shrink) * (weights @ centred**2) + 1e-3 * shrink
        return cov, 1.0 / jnp.sqrt(cov), jnp.sqrt(cov)
    cov = (1 - shrink) * (centred.T * weights) @ centred + 1e-3 * shrink * jnp.eye(z.shape[1])
    sqrt_inv = jnp.swapaxes(jnp.linalg.cholesky(cov[::-1, ::-1])[::-1, ::-1], -2, -1)
    sqrt = jax.scipy.linalg.solve_triangular(sqrt_inv, jnp.eye(z.shape[1]), lower=True)
    return cov, sqrt, sqrt_inv


def _with_mass(state, part, z, weights):
    sub = _get(state, part.path)
    zp = z if part.indices is None else z[:, part.indices]
    dense = sub.adapt.inverse_mass_matrix.ndim == 3  # (particles, d, d)
    inv, sqrt, sqrt_inv = _population_mass(zp, weights, dense)
    n = sub.z.shape[0]  # the particles moved (fewer than z's when waste-free)
    tile = lambda x: jnp.broadcast_to(x, (n,) + x.shape)  # noqa: E731
    adapt = sub.adapt._replace(
        inverse_mass_matrix=tile(inv),
        mass_matrix_sqrt=tile(sqrt),
        mass_matrix_sqrt_inv=tile(sqrt_inv),
    )
    return _set(state, part.path, sub._replace(adapt=adapt))


def _without_step_search(method):
    """`method` with the initial step-size search of its gradient parts switched off:
    the population tuning sets their step size before the first move, so the search
    (a loop of leapfrog steps per particle) would only cost compilation and time."""
    if isinstance(method, Cycle):
        return replace(method, methods=tuple(map(_without_step_search, method.methods)))
    if isinstance(method, Mixture):
        weighted = tuple((p, _without_step_search(m)) for p, m in method.weighted)
        return replace(method, weighted=weighted)
    if isinstance(method, Repeat):
        return replace(method, method=_without_step_search(method.method))
    if isinstance(method, Blocks):
        return replace(method, parts=tuple((n, _without_step_search(m)) for n, m in method.parts))
    if isinstance(method, GradientMethod) and method.adapt_step_size:
        return replace(method, adapt_step_size=False)
    return method


# ----- one run ------------------------------------------------------------------------


class SMCState(NamedTuple):
    """One run: particles (as kernel states), their log likelihoods, the temperature,
    the log evidence so far, the stage count, each adaptive part's step size and the
    number of particles found with a NaN log density so far (see `_usable`)."""

    kernel: Any
    log_lik: jax.Array
    beta: jax.Array
    log_evidence: jax.Array
    stage: jax.Array
    step_sizes: tuple
    num_nan: jax.Array


class StageInfo(NamedTuple):
    beta: jax.Array
    ess: jax.Array
    accept_prob: jax.Array
    step_sizes: tuple
    grad_evals: jax.Array
    degenerate: jax.Array
    active: jax.Array


def _usable(log_prior, log_lik):
    """Log likelihoods with NaN, +inf, or a non-finite prior counted as -inf (zero weight),
    and the number of particles whose log density is NaN (or +inf): a numerical fault to
    report, where -inf (outside the support) is not."""
    ok = jnp.isfinite(log_prior) & ~jnp.isnan(log_lik) & (log_lik < jnp.inf)
    outside = (log_prior == -jnp.inf) | (log_lik == -jnp.inf)
    return jnp.where(ok, log_lik, -jnp.inf), jnp.sum(~ok & ~outside)


def _strong(tree):
    """`tree` without weak types, so a stage's output has its input's types and the
    compiled stage is reused from the first call on."""
    return jax.tree.map(lambda x: x.astype(x.dtype) if getattr(x, "weak_type", False) else x, tree)


def _increments(log_lik, delta):
    return jnp.where(log_lik > -jnp.inf, delta * log_lik, -jnp.inf)


def _next_beta(log_lik, beta, target_ess):
    """The largest β' in (β, 1] whose incremental weights keep ESS ≥ target · (finite ones)."""
    goal = target_ess * jnp.sum(log_lik > -jnp.inf)

    def ok(b):
        return effective_sample_size(_increments(log_lik, b - beta)) >= goal

    def halve(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        good = ok(mid)
        return jnp.where(good, mid, lo), jnp.where(good, hi, mid)

    lo, hi = jax.lax.fori_loop(0, BISECTION_STEPS, halve, (beta, jnp.ones_like(beta)))
    return jnp.where(ok(1.0), 1.0, jnp.where(lo > beta, lo, hi))  # always some progress


@dataclass(frozen=True)
class _Program:
    """What the compiled functions depend on (hashable, so runs with equal settings and
    data of the same shapes share compiled code; `max_stages` is not here)."""

    num_particles: int
    method: MCMCMethod
    num_mcmc_steps: int
    target_ess: float
    schedule: tuple | None
    resampling: str
    waste_free: bool = False

    def parts(self, logdensity):
        return _parts(self.method, logdensity)

    def kernel(self, logdensity, beta):
        return self.method.kernel(TemperedDensity(logdensity, beta), 0)

    def start(self, logdensity, key):
        n = self.num_particles
        keys_prior, keys_kernel = jax.random.split(key, (2, n))
        z = jax.vmap(logdensity.prior_point)(keys_prior)
        log_prior, log_lik = jax.vmap(logdensity.terms)(z)
        # at β = 0 exactly: the states cache the prior's potential and gradient only
        density = TemperedDensity(logdensity, 0.0)
        kernel = _without_step_search(self.method).kernel(density, 0)
        state = jax.vmap(kernel.init)(keys_kernel, z)
        steps = []
        for part in self.parts(logdensity):
            if not _adapted(state, part):
                steps.append(jnp.array(jnp.nan))
                continue
            d = z.shape[1] if part.indices is None else len(part.indices)
            own = jnp.median(_get(state, part.path).adapt.step_size)
            steps.append(jnp.asarray(d**-0.25 if part.gradient else own, z.dtype))
        zero = jnp.zeros((), z.dtype)
        log_lik, num_nan = _usable(log_prior, log_lik)
        s = SMCState(state, log_lik, zero, zero, jnp.array(0), tuple(steps), num_nan)
        return _strong(s)

    def stage(self, logdensity, key, s):
        keys = jax.random.split(key, 1 + self.num_mcmc_steps)  # resampling, then each move
        if self.schedule is None:
            beta = _next_beta(s.log_lik, s.beta, self.target_ess)
        else:
            beta = jnp.asarray(self.schedule, s.beta.dtype)[
                jnp.minimum(s.stage, len(self.schedule) - 1)
            ]
        log_w = _increments(s.log_lik, beta - s.beta)
        log_increment = jax.nn.logsumexp(log_w) - jnp.log(log_w.shape[0])
        ess = effective_sample_size(log_w)
        weights = jnp.exp(log_w - jax.nn.logsumexp(log_w))

        kernel = self.kernel(logdensity, beta)
        # waste-free: M = N / P chains of P states each (Dau & Chopin 2022)
        m = self.num_particles // (self.num_mcmc_steps + 1 if self.waste_free else 1)
        ancestors = resample(keys[0], log_w, m, scheme=self.resampling)
        state = jax.tree.map(lambda x: x[ancestors], s.kernel)
        evals_before = jnp.sum(state.grad_evals)
        state = jax.vmap(kernel.refresh)(state, state.z)
        parts = self.parts(logdensity)
        for part, step in zip(parts, s.step_sizes):
            if not _adapted(state, part):
                continue
            if part.tune_mass:
                state = _with_mass(state, part, s.kernel.z, weights)
            if part.tune_step:
                state = _with_step_size(state, part, step)
        used = tuple(
            jnp.mean(_get(state, p.path).adapt.step_size) if _adapted(state, p) else step
            for p, step in zip(parts, s.step_sizes)
        )
        # the shared step index 0 (>= num_warmup = 0): the kernel's own adaptation is a
        # branch never taken, not a select computed for every particle at every step
        kernel_step = kernel.step if kernel.step_at is None else partial(kernel.step_at, i=0)

        jittered = [(p, step) for p, step in zip(parts, s.step_sizes) if _jittered(state, p)]

        def move(state, key):
            keys = jax.random.split(key, 1 + m)  # the step-size jitter, then each particle
            if jittered:
                u = jax.random.uniform(keys[0], (len(jittered), m), s.beta.dtype)
            for j, (part, step) in enumerate(jittered):
                size = step * (1 - STEP_JITTER + 2 * STEP_JITTER * u[j])
                state = _with_step_size(state, part, size)
            state, info = jax.vmap(kernel_step)(keys[1:], state)
            return state, (state if self.waste_free else (), info)

        last, (visited, infos) = jax.lax.scan(move, state, keys[1:])
        if self.waste_free:  # every state visited, the starting ones included: N particles
            state = jax.tree.map(
                lambda a, b: jnp.concatenate([a[None], b]).reshape((-1,) + a.shape[1:]),
                state, visited,
            )  # fmt: skip
        else:
            state = last
        steps = tuple(
            step * jnp.exp(STEP_GAIN * (jnp.mean(_info(infos, p.path).accept_prob) - p.target))
            if p.tune_step and _adapted(state, p)
            else step
            for p, step in zip(parts, s.step_sizes)
        )
        log_prior, log_lik = jax.vmap(logdensity.terms)(state.z)
        # A run already at β = 1 (others still tempering) moves its particles on at β = 1,
        # which leaves them posterior draws: only its evidence and stage count stay put
        # (cheaper than a select over every particle's state).
        active = s.beta < 1
        log_lik, num_nan = _usable(log_prior, log_lik)
        new = SMCState(
            state, log_lik, beta,
            s.log_evidence + jnp.where(active, log_increment, 0.0),
            s.stage + active, steps, s.num_nan + jnp.where(active, num_nan, 0),
        )  # fmt: skip
        info = StageInfo(
            beta, ess, jnp.mean(infos.accept_prob), used,
            jnp.where(active, jnp.sum(last.grad_evals) - evals_before, 0),
            active & ~jnp.isfinite(log_increment), active,
        )  # fmt: skip
        return _strong(new), info


def _per_run(f, logdensity, keys, *args):
    """`f(logdensity, key, *args)` mapped over the runs (the leading axis of `keys` and
    `args`). Runs are already batched over particles; batching them once more makes XLA
    lay the density's products out with transposes on CPU (a stage of the logistic
    regression of benchmarks/smc_vs_blackjax.py: 105 ms for one run under `vmap`, 71 ms
    without; four runs 482 vs 269 ms), so on CPU runs go one after another in the
    compiled program (one run: called directly). On accelerators, where a larger batch
    can fill the device (not measured against `lax.map` yet), runs stay side by side."""
    if keys.shape[0] == 1:
        first = jax.tree.map(lambda x: x[0], (keys, args))
        return jax.tree.map(lambda x: x[None], f(logdensity, first[0], *first[1]))
    if jax.default_backend() == "cpu":
        return jax.lax.map(lambda a: f(logdensity, *a), (keys, *args))
    return jax.vmap(f, (None, 0) + (0,) * len(args))(logdensity, keys, *args)


@partial(jax.jit, static_argnums=(0, 3))
def _start(program, logdensity, key, num_runs):
    """Each run's first state, its key for the stages and the seed of its draws."""
    key_start, key_run, key_draw = jax.random.split(key, (3, num_runs))
    state = _per_run(program.start, logdensity, key_start)
    return state, key_run, jax.random.key_data(key_draw)


@partial(jax.jit, static_argnums=0)
def _stage(program, logdensity, run_keys, k, state):
    keys = jax.vmap(jax.random.fold_in, (0, None))(run_keys, k)
    return _per_run(program.stage, logdensity, keys, state)


def _draws(seed, num_particles, num_samples):
    """Indices of `num_samples` draws from equally weighted particles (each particle once
    when num_samples == num_particles), in random order: systematic resampling, on the
    host (a compiled program for a few indices costs more than it saves)."""
    rng = np.random.default_rng([int(b) for b in np.ravel(seed)])
    idx = np.floor((np.arange(num_samples) + rng.uniform()) * (num_particles / num_samples))
    return rng.permutation(np.minimum(idx.astype(np.int64), num_particles - 1))


# ----- the method ---------------------------------------------------------------------


def _schedule(value):
    if value is None:
        return None
    try:
        betas = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        betas = None
    if betas is None or betas.size == 0 or not np.all(np.isfinite(betas)):
        raise OptionError(
            f"Tempered: schedule={value!r} must be an increasing sequence of numbers ending at 1.0"
        )
    if betas[0] == 0:
        betas = betas[1:]  # the prior is where every run starts
    if betas.size == 0 or betas[0] <= 0 or np.any(np.diff(betas) <= 0) or betas[-1] != 1.0:
        raise OptionError(
            f"Tempered: schedule={value!r} must increase strictly within (0, 1] and end at 1.0, "
            "e.g. schedule=(0.01, 0.1, 0.5, 1.0)"
        )
    return tuple(float(b) for b in betas)


def _kernel(value):
    if isinstance(value, str):
        value = resolve(value)
    if not isinstance(value, MCMCMethod):
        raise OptionError(
            f"Tempered: kernel={value!r} must be an MCMC method object such as "
            "ppl.mcmc.RWMH(), ppl.mcmc.NUTS() or a combinator (ppl.mcmc.cycle(...))"
        )
    started = [f"{m.label}(init={m.init!r})" for _, m in value.walk() if m.sets_init()]
    if started:
        raise OptionError(
            f"Tempered: the kernel's {', '.join(started)} would not be used: tempered SMC "
            "starts its particles as prior draws; leave init out"
        )
    untempered = [m.label for _, m in value.walk() if not m.tempers]
    if untempered:
        raise OptionError(
            f"Tempered: the kernel contains {', '.join(untempered)}, whose particle "
            "filter targets the model's untempered posterior, not the tempered stages; move "
            "the particles with ppl.mcmc kernels (e.g. ppl.mcmc.RWMH() or ppl.mcmc.NUTS()), "
            "or use particle MCMC (ppl.smc.PMMH, ppl.smc.ParticleGibbs in ppl.mcmc.blocks) "
            "as the method itself"
        )
    return value


@register("smc")
@dataclass(frozen=True)
class Tempered(Method):
    """Adaptive tempered SMC: likelihood tempering from prior to posterior, any model.

    >>> # m: a bound model, e.g. ppl.examples.eight_schools(sigma, y)
    >>> post = ppl.infer(m, method=ppl.smc.Tempered(kernel=ppl.mcmc.NUTS()), num_chains=4)
    >>> post.log_evidence, post.diagnostics["log_evidence_se"]

    num_particles: particles per run.
    kernel: the MCMC method that moves particles (any `ppl.mcmc` method object or
        combinator, or a registered name), tuned from the population at each stage.
    num_mcmc_steps: kernel steps per particle per stage.
    target_ess: the adaptive schedule picks each next temperature so the ESS of the
        incremental weights is this fraction of the particles (with a finite likelihood).
    schedule: a fixed increasing sequence of temperatures ending at 1.0 instead.
    resampling: "systematic" | "stratified" | "residual" | "multinomial".
    max_stages: a run still below β = 1 after this many stages is an error.
    waste_free: waste-free SMC (Dau & Chopin 2022): each stage resamples only
        M = N / P particles, P = num_mcmc_steps + 1, runs a chain of P − 1 kernel
        steps from each, and keeps all M · P states visited (the starting points
        included) as the next N particles, instead of the last state of N chains:
        for the same N, a stage takes P times fewer kernel steps. num_particles
        must be a multiple of P. Evidence increments, schedule and population tuning
        are as without it (from all N weighted particles). The P states of a chain
        are correlated, so the final particles are worth fewer independent draws
        than N: about M times the chain's P / (autocorrelation time).

    In `infer()`, `num_chains` independent runs (their spread gives the Monte Carlo
    standard error of the log evidence) and `num_samples` draws per run, taken from
    its final particles (every particle once when num_samples == num_particles).
    `post.log_evidence` is log of the mean over runs of each run's evidence estimate.

    post.diagnostics: "log_evidence_se" (delta-method standard error from the spread
    of the runs; NaN for one run), "log_evidence_per_run", "num_stages" per run, and
    per run and stage (NaN after a run reached β = 1) "beta", "ess" (of the
    incremental weights), "acceptance" and each adaptive kernel part's "step_size"
    ("i.j.step_size" inside combinators); "grad_evals" per run, "wall_time";
    "nan_log_density" per run: particles found with a NaN log density (at the start
    and after each stage's moves), given zero weight; "warnings": one line per problem
    found (each also a `ppl.SamplingWarning`).
    """

    common_options = ("num_samples", "num_chains", "seed", "progress")

    num_particles: int = 1000
    kernel: Any = RWMH()
    num_mcmc_steps: int = 10
    target_ess: float = 0.5
    schedule: Any = None
    resampling: str = "systematic"
    max_stages: int = 500
    waste_free: bool = False

    def __post_init__(self):
        super().__post_init__()
        check_option(self, "num_particles", lambda v: v >= 2, "an integer >= 2", integer=True)
        check_option(self, "num_mcmc_steps", lambda v: v >= 1, "an integer >= 1", integer=True)
        check_option(self, "target_ess", lambda v: 0 < v < 1, "a number in (0, 1)")
        check_option(self, "max_stages", lambda v: v >= 1, "an integer >= 1", integer=True)
        check_scheme(self.resampling)
        if not isinstance(self.waste_free, bool):
            raise OptionError(f"Tempered: waste_free={self.waste_free!r} must be True or False")
        chain = self.num_mcmc_steps + 1
        if self.waste_free and self.num_particles % chain:
            fit = max(chain, round(self.num_particles / chain) * chain)
            raise OptionError(
                f"Tempered(waste_free=True): num_particles={self.num_particles} must be a "
                f"multiple of the chain length num_mcmc_steps + 1 = {chain} (each stage "
                f"keeps the {chain} states of num_particles / {chain} chains); e.g. "
                f"num_particles={fit}, or num_mcmc_steps such that num_mcmc_steps + 1 "
                "divides num_particles"
            )
        object.__setattr__(self, "kernel", _kernel(self.kernel))
        object.__setattr__(self, "schedule", _schedule(self.schedule))
        if self.schedule is None and self.target_ess * self.num_particles < 2:
            raise OptionError(
                f"Tempered: target_ess × num_particles = "
                f"{self.target_ess * self.num_particles:g}: the adaptive schedule keeps the "
                "ESS of each stage above it, and one particle's worth always is, so a run "
                "could jump to β = 1 in one stage; use more particles (hundreds or more)"
            )

    def check(self, logdensity):
        """Refuse up front what cannot be tempered: sites the kernel cannot move, and
        improper priors (particles start as prior draws)."""
        self.kernel.check(logdensity)
        trace = abstract_call(lambda: logdensity.model.trace(seed=0))  # types only: no compiles
        flat = [n for n in logdensity.sites if is_improper(trace[n]["fn"])]
        if flat:
            raise ModelError(
                f"{logdensity.model.name}: site(s) {flat} have an improper prior "
                "(ImproperUniform), but tempered SMC starts its particles as prior draws; "
                "give them a proper prior"
            )

    def run(self, model, *, num_samples, num_chains, seed, progress):
        t0 = time.perf_counter()
        ld = model.log_density()
        ld.require_full_data(self.label)
        ld.warn_fixed_params(self.label)
        self.check(ld)
        program = _Program(
            self.num_particles, self.kernel, self.num_mcmc_steps, self.target_ess,
            self.schedule, self.resampling, self.waste_free,
        )  # fmt: skip
        with explain_tracer_errors(model.name):
            state, run_keys, draw_seeds = _start(program, ld, seed, num_chains)
        infos = []
        limit = self.max_stages if self.schedule is None else len(self.schedule)
        bar = progress_bar(
            total=1.0,
            disable=not progress_enabled(progress),
            bar_format="{desc} |{bar}| [{elapsed}]",
        )
        with bar:
            bar.set_description_str("smc stage 0, β=0")
            while np.any(np.asarray(state.beta) < 1):
                k = len(infos)
                if k == limit:
                    self._too_many_stages(np.asarray(state.beta))
                previous = np.asarray(state.beta)
                with explain_tracer_errors(model.name):
                    state, info = _stage(program, ld, run_keys, np.int32(k), state)
                info = jax.device_get(info)
                infos.append(info)
                _check_degenerate(info, k, previous)
                bar.n = float(np.min(state.beta))  # the run furthest behind
                bar.set_description_str(f"smc stage {k + 1}, β={bar.n:.3g}")
        z, log_lik = jax.device_get((state.kernel.z, state.log_lik))
        picks = [_draws(r, self.num_particles, num_samples) for r in np.asarray(draw_seeds)]
        zs = np.stack([z[r, idx] for r, idx in enumerate(picks)])
        log_lik = np.stack([log_lik[r, idx] for r, idx in enumerate(picks)])
        if not np.all(np.isfinite(zs)):
            raise InferenceError(
                "tempered SMC: some final particles are not finite; the kernel moved them to "
                "NaN/inf (check the model's density there)"
            )
        samples = constrained_values(ld, zs)
        log_z = np.asarray(state.log_evidence, dtype=np.float64)
        parts = _parts(self.kernel, ld)
        diagnostics = self._diagnostics(infos, parts, log_z, time.perf_counter() - t0)
        diagnostics["nan_log_density"] = np.asarray(state.num_nan)
        diagnostics["distinct_particles"] = np.array([len(np.unique(zr, axis=0)) for zr in z])
        diagnostics["warnings"] = _nan_warnings(diagnostics["nan_log_density"]) + _run_warnings(
            log_z, diagnostics["distinct_particles"], self.num_particles
        )
        for message in diagnostics["warnings"]:
            warn(message)
        return Posterior(
            {k: np.asarray(v) for k, v in samples.items()},
            diagnostics,
            sample_stats={"log_likelihood": np.asarray(log_lik)},
            log_evidence=log_mean_exp(log_z)[0],
            method=self.label,
            model=model,
            latent_sites=tuple(ld.sites),
        )

    def _too_many_stages(self, betas):
        raise InferenceError(
            f"tempered SMC: run(s) {np.flatnonzero(betas < 1).tolist()} still below β = 1 "
            f"(lowest β = {betas.min():.3g}) after max_stages={self.max_stages} stages; raise "
            "Tempered(max_stages=...), lower target_ess, or use more particles"
        )

    def _diagnostics(self, infos, parts, log_z, wall_time):
        def stacked(field):  # (runs, stages), NaN where a run had finished
            values = np.stack([np.asarray(getattr(i, field), float) for i in infos], axis=1)
            active = np.stack([i.active for i in infos], axis=1)
            return np.where(active, values, np.nan)

        active = np.stack([i.active for i in infos], axis=1)
        diag = {
            "num_stages": active.sum(axis=1),
            "beta": stacked("beta"),
            "ess": stacked("ess"),
            "acceptance": stacked("accept_prob"),
            "log_evidence_per_run": log_z,
            "log_evidence_se": log_mean_exp(log_z)[1],
            "grad_evals": np.stack([i.grad_evals for i in infos], axis=1).sum(axis=1),
            "num_particles": self.num_particles,
            "wall_time": wall_time,
        }
        for j, part in enumerate(parts):  # "step_size", or "i.j.step_size" inside combinators
            label = "".join(f"{i}." for i in part.path) + "step_size"
            values = np.stack([np.asarray(i.step_sizes[j], float) for i in infos], axis=1)
            diag[label] = np.where(active, values, np.nan)
        return diag


def _check_degenerate(info, stage, previous):
    bad = np.flatnonzero(np.asarray(info.degenerate))
    if bad.size:
        r = int(bad[0])
        raise InferenceError(
            f"tempered SMC: degenerate weights at stage {stage + 1} (β {previous[r]:.4g} → "
            f"{float(info.beta[r]):.4g}) in run {r}: no particle has a finite log likelihood "
            "(all are -inf or NaN). Check the model's likelihood (data outside a "
            "distribution's support, a factor of -inf or NaN) or the prior's support."
        )


#: Runs whose log evidence estimates spread more than this (sd, nats) disagree: the
#: log-mean-exp of the runs is then dominated by one run and its standard error unreliable.
LOG_Z_SPREAD_MAX = 1.0
#: Below this share of distinct final particles a run's particles are mostly copies.
DISTINCT_MIN = 0.1


def _run_warnings(log_z, distinct, num_particles):
    """Lines when the runs' evidence estimates disagree, or their final particles are
    mostly copies of a few (the moves did not rejuvenate them after resampling)."""
    out = []
    spread = float(np.std(log_z)) if log_z.size > 1 else 0.0
    if not np.isfinite(spread) or spread > LOG_Z_SPREAD_MAX:
        out.append(
            f"tempered SMC: the runs' log evidence estimates spread by {spread:.3g} nats (sd; "
            f"per run: {np.round(log_z, 2).tolist()}), more than {LOG_Z_SPREAD_MAX}: each "
            "run's particles missed much of the posterior, so the estimate and its standard "
            "error are unreliable. Use more particles, more num_mcmc_steps, or a higher "
            "target_ess"
        )
    few = np.flatnonzero(distinct < DISTINCT_MIN * num_particles)
    if few.size:
        out.append(
            f"tempered SMC: under {DISTINCT_MIN:.0%} of the final particles are distinct in "
            f"run(s) {few.tolist()} ({distinct[few].tolist()} of {num_particles}): they are "
            "mostly copies of a few, so the posterior draws and the evidence's standard "
            "error understate the uncertainty. Raise num_mcmc_steps, or move with a kernel "
            "suited to the posterior (e.g. NUTS; for well-separated modes, more particles)"
        )
    return out


def _nan_warnings(num_nan):
    """A line when some runs met particles with a NaN log density (given zero weight)."""
    if not num_nan.any():
        return []
    return [
        f"tempered SMC: {int(num_nan.sum())} particle(s) had a NaN log density (per run: "
        f"{num_nan.tolist()}, diagnostics['nan_log_density']) and were given zero weight, "
        "so the posterior and the evidence leave out the region where the model's density "
        "is NaN (the posterior may look cut off there). Check the model for what gives NaN "
        "there, e.g. a scale that can be 0 or negative, or log of a negative number"
    ]
