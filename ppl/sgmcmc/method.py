"""What every SG-MCMC method shares: chains, burn-in, thinning, divergence checks, Posterior.

A sampler gives two pure functions on its own NamedTuple state (whose first field
is the position `z`): `init_state(z)` and `update(key, state, grad, step_size)`,
one move given a stochastic gradient of the log density at `state.z`. The rest
is here: each driver step draws a minibatch gradient (`minibatch.estimate`),
moves, and watches for divergence: the first step whose position or gradient is
not finite is recorded, the run stops at the end of that chunk and ends with an
`InferenceError` naming that step instead of a Posterior full of NaN.

A chain can also settle, finite, in the wrong distribution (a step size far too large
with bounded gradients: every chain equally wrong, so R-hat is quiet). After the run,
a Stein check evaluates the gradient estimate at up to 100 draws per chain: under the
posterior -E[(z_i - mean z_i) ∂_i log p(z)] = 1 for every unconstrained coordinate
(integration by parts), the draws' variance over the posterior's for a Gaussian one;
coordinates that are off by more than a factor 2 (and 5 standard errors) are warned
about, and `diagnostics["variance_ratio"]` holds every coordinate's value and se.
"""

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ppl.core import draws
from ppl.core.checks import explain_tracer_errors
from ppl.errors import InferenceError, OptionError
from ppl.infer.driver import Phase, run
from ppl.infer.method import Method, check_option
from ppl.infer.posterior import Posterior
from ppl.infer.summary import component_labels, ess_means
from ppl.mcmc.diagnostics import check_convergence, warn
from ppl.mcmc.method import constrained_values, start_chains
from ppl.sgmcmc.minibatch import Target, check_data_parallel, estimate, find_center, minibatches
from ppl.sgmcmc.schedules import Constant, Schedule

__all__ = ["SGMCMCMethod", "Sampler", "Chain", "SGInfo", "SGProgram"]


class Chain(NamedTuple):
    """One chain: steps taken, the sampler's state, a pool of past positions (structured
    samplers; () otherwise), and the first step with a non-finite position or gradient
    (-1 while there is none)."""

    t: jax.Array
    state: Any
    pool: Any
    diverged_at: jax.Array


class SGInfo(NamedTuple):
    """Per-step statistics: the minibatch log-density estimate and the step size used."""

    log_density: jax.Array
    step_size: jax.Array


@dataclass(frozen=True)
class SGProgram:
    """A hashable SG-MCMC run for the driver: one driver step = `thinning` sampler steps."""

    method: "SGMCMCMethod"

    def __call__(self, target):
        move, thinning = self.method.move, self.method.options.thinning

        def one(key, chain):
            state, pool, value, grad, h = move(target, key, chain)
            # only the first non-finite step is recorded: a diverged run ends with an
            # error and keeps no draws, so the chain need not be guarded (a select on
            # every step would stop XLA fusing the update into the gradient: ~25% here)
            ok = jnp.all(jnp.isfinite(state.z)) & jnp.all(jnp.isfinite(grad))
            alive = chain.diverged_at < 0
            diverged_at = jnp.where(alive & ~ok, chain.t, chain.diverged_at)
            return Chain(chain.t + 1, state, pool, diverged_at), SGInfo(value, h)

        def step(key, chain):
            if thinning == 1:
                return one(key, chain)
            chain, infos = jax.lax.scan(
                lambda c, k: one(k, c), chain, jax.random.split(key, thinning)
            )
            return chain, jax.tree.map(lambda x: x[-1], infos)

        return step, _collect

    def start(self, target, key):
        method = self.method
        z, found = target.density.candidate(key, method.options.init)
        chain = Chain(jnp.array(0), method.init_state(z), method.init_pool(z), jnp.array(-1))
        return chain, found


@partial(jax.jit, static_argnums=(2, 3, 4))
def _center(density, key, init, num_steps, learning_rate):
    z0, _ = density.candidate(key, init)
    return find_center(density, z0, num_steps, learning_rate)


def _collect(chain, info):
    return chain.state.z, info


#: Draws per chain that the spread check evaluates the gradient at (evenly spaced).
STEIN_DRAWS = 100
#: The spread check warns when a coordinate's draws look this many times too wide, or
#: too narrow, and the difference exceeds STEIN_SE of its standard errors.
STEIN_FACTOR, STEIN_SE = 2.0, 5.0


@partial(jax.jit, static_argnums=(3,))
def _stein_terms(target, z, key, method):
    keys = jax.random.split(key, z.shape[0])
    opts = method.options

    def grad(z, key):
        return estimate(target, z, key, opts.replace, opts.data_parallel)[1]

    g = jax.vmap(grad)(z, keys)
    return -(z - z.mean(axis=0)) * g


def _stein_ratios(target, zs, key, method):
    """Per unconstrained coordinate i: -mean (z_i - mean z_i) ∂_i log p(z) over the draws
    (at most STEIN_DRAWS per chain), with the method's own gradient estimate, and its
    standard error: (ratio, se). Integration by parts gives exactly 1 under the
    posterior, whatever its shape; for a Gaussian posterior it is the draws' variance
    over the posterior's. So a chain that sits in a finite but wrong distribution (a step
    size far too large with bounded gradients, a thermostat not yet settled) shows up,
    where R-hat, with every chain equally wrong, does not."""
    chains, draws, size = zs.shape
    keep = np.unique(np.linspace(0, draws - 1, min(draws, STEIN_DRAWS)).astype(int))
    z = zs[:, keep].reshape(-1, size)
    terms = np.asarray(_stein_terms(target, jnp.asarray(z), key, method), np.float64)
    # the standard error from the terms' effective sample size (draws are correlated)
    ess = ess_means(np.moveaxis(terms.reshape(chains, keep.size, size), -1, 0))
    ess = np.where(np.isfinite(ess) & (ess > 0), ess, terms.shape[0])
    return terms.mean(axis=0), terms.std(axis=0) / np.sqrt(ess)


def _spread_messages(ratios, density):
    """A warning naming the coordinates whose Stein ratio is far from 1."""
    ratio, se = ratios
    off = (np.abs(np.log(np.abs(ratio) + 1e-300)) > np.log(STEIN_FACTOR)) | (ratio <= 0)
    off &= np.abs(ratio - 1) > STEIN_SE * se
    if not off.any():
        return []
    labels = [
        label
        for s in density.sites.values()
        for label in component_labels(s.name, s.unconstrained_shape)
    ]
    worst = sorted(np.flatnonzero(off), key=lambda i: -abs(np.log(abs(ratio[i]) + 1e-300)))
    shown = ", ".join(f"{labels[i]}: {ratio[i]:.3g}" for i in worst[:6])
    more = f" and {off.sum() - 6} more" if off.sum() > 6 else ""
    wide = (ratio[off] > 1).any()
    narrow = (ratio[off] < 1).any()
    advice = " ".join(
        text
        for flag, text in (
            (wide, "Ratios above 1 (draws too wide): lower step_size."),
            (
                narrow,
                "Ratios below 1 (draws too narrow): the chains have not spread over the "
                "posterior yet: run a longer burn-in (num_warmup) and more draws, or raise "
                "step_size.",
            ),
        )
        if flag
    )
    return [
        f"the draws' spread disagrees with the log density's gradient at them for "
        f"{off.sum()} of {ratio.size} coordinates (unconstrained; {shown}{more}): "
        "-E[(z - mean) * d log p / dz] is 1 under the posterior and reads as the draws' "
        f"variance over the posterior's, so the chains sample another distribution. {advice} "
        "(diagnostics['variance_ratio'] holds every coordinate's ratio and its se.)"
    ]


def _stop_on_divergence(chains, out, done):
    """The driver's monitor: end the run at the first chunk in which a chain diverged
    (the error naming the step is raised afterwards, with no draws kept)."""
    diverged = bool(np.any(np.asarray(chains.diverged_at) >= 0))
    return ("diverged" if diverged else None), diverged


@dataclass(frozen=True)
class SGMCMCMethod(Method):
    """Base of SG-MCMC method objects: `run(model, ...)` -> Posterior.

    Subclasses give `init_state(z)`, `update(key, state, grad, step_size)` and
    `grads_per_step`; `move` (one gradient, one update) may be overridden, as the
    structured sampler does. `options` is the object holding the run settings
    (step size, schedule, thinning, control variates, init).
    """

    common_options = Method.common_options + (
        "num_warmup", "chain_method", "checkpoint", "convergence_checks",
    )  # fmt: skip

    @property
    def options(self):
        return self

    def grads_per_step(self, density):
        return 2 if self.options.control_variate else 1

    def init_pool(self, z):
        return ()

    def state_diagnostics(self, state):
        """Per-chain values of the samplers' final states worth reporting (none here)."""
        return {}

    def move(self, target, key, chain):
        """One step: (new sampler state, pool, log-density estimate, gradient, step size)."""
        key_grad, key_move = draws.split(key)  # (written out: no hash loop per step)
        opts = self.options
        value, grad = estimate(target, chain.state.z, key_grad, opts.replace, opts.data_parallel)
        h = opts.schedule(opts.step_size, chain.t)
        return self.update(key_move, chain.state, grad, h), chain.pool, value, grad, h

    def check(self, density):
        density.require_continuous(self.label)

    def target(self, density, key):
        """The driver's data: the density, plus the control-variate centre when asked."""
        opts = self.options
        if not opts.control_variate:
            return Target(density)
        center, grad = _center(density, key, opts.init, opts.cv_steps, opts.cv_learning_rate)
        if not np.all(np.isfinite(np.asarray(grad))):
            raise InferenceError(
                f"{self.label}: the control-variate centre (after cv_steps={opts.cv_steps} "
                "Adam steps on the full-data log density) has a non-finite gradient; lower "
                "cv_learning_rate or set control_variate=False"
            )
        return Target(density, center, grad)

    def run(
        self, model, *, num_samples, num_warmup, num_chains, seed, progress,
        chain_method="vectorized", checkpoint=None, convergence_checks=True,
    ):  # fmt: skip
        t0 = time.perf_counter()
        with minibatches(jax.random.key(0)):  # cheaper than NumPyro's shuffle when tracing
            ld = model.log_density()
        ld.require_global_sites(
            self.label,
            "SG-MCMC samples global sites (shared by all data points): marginalise the local "
            "ones out, or fit them with VI and a DSL or amortized guide",
        )
        self.check(ld)
        if self.options.data_parallel:
            self._check_data_parallel(ld, chain_method)
        program = SGProgram(self)
        key_center, key_init = jax.random.split(seed)
        thinning = self.options.thinning
        burn_in = -(-num_warmup // thinning)  # driver steps; each is `thinning` sampler steps
        with explain_tracer_errors(model.name):
            target = self.target(ld, key_center)
            chains, found, run_keys = start_chains(program, target, key_init, num_chains)
        ld.check_finite_start(found)
        phases = [Phase("burn-in", burn_in, keep=False), Phase("sample", num_samples, keep=True)]
        chains, kept, timings = run(
            program, target, chains, run_keys, phases,
            progress=progress, chain_method=chain_method, checkpoint=checkpoint,
            monitor=_stop_on_divergence,
        )  # fmt: skip
        self._raise_if_diverged(chains, burn_in * thinning)
        zs, info = kept
        samples = {k: np.asarray(v) for k, v in constrained_values(ld, zs).items()}
        stats = {"lp": np.asarray(info.log_density), "step_size": np.asarray(info.step_size)}
        convergence, messages = {}, []
        if convergence_checks:
            convergence, messages = check_convergence({k: samples[k] for k in ld.sites})
            ratios = _stein_ratios(target, np.asarray(zs), jax.random.fold_in(seed, 1), self)
            convergence["variance_ratio"] = np.stack(ratios)  # rows: ratio, its se
            messages += _spread_messages(ratios, ld)
        steps = np.asarray(chains.t)
        diagnostics = {
            "step_size": stats["step_size"][:, -1],
            "grad_evals": steps * self.grads_per_step(ld),
            "steps": steps,
            "wall_time": time.perf_counter() - t0,
            "warmup_time": timings.get("burn-in", 0.0),
            "sampling_time": timings.get("sample", 0.0),
            "divergences": np.zeros(num_chains, int),
            **self.state_diagnostics(chains.state),
            **convergence,
            "warnings": [f"{self.label}: {m}" for m in messages],
        }
        for message in diagnostics["warnings"]:
            warn(message)
        return Posterior(
            samples, diagnostics, sample_stats=stats, method=self.label, model=model,
            latent_sites=tuple(ld.sites),
        )  # fmt: skip

    def _check_data_parallel(self, density, chain_method):
        if chain_method == "sharded":
            raise OptionError(
                f"{self.label}: data_parallel=True already spreads each step's minibatch over "
                "all devices; it cannot be combined with chain_method='sharded' (chains over "
                "the same devices). Use chain_method='vectorized' or data_parallel=False"
            )
        check_data_parallel(density, self.label)

    def _raise_if_diverged(self, chains, burn_in_steps):
        at = np.asarray(chains.diverged_at)
        bad = np.flatnonzero(at >= 0)
        if not bad.size:
            return
        first = int(at[bad].min())
        where = "burn-in" if first < burn_in_steps else "sampling"
        h = float(self.options.schedule(self.options.step_size, first))
        raise InferenceError(
            f"{self.label}: chain(s) {bad.tolist()} diverged: at step {first} ({where}; steps "
            f"counted from 0, burn-in included) the position or its gradient became "
            f"non-finite, with step size {h:.3g}; the run was stopped and no draws are "
            f"kept. Lower step_size (e.g. step_size={self.options.step_size / 10:.3g}), use a "
            "decaying schedule, or "
            "a preconditioned sampler (ppl.sgmcmc.PSGLD)."
        )


@dataclass(frozen=True)
class Sampler(SGMCMCMethod):
    """Run settings shared by the plain samplers (keyword-only fields).

    schedule: a `ppl.sgmcmc` schedule (Constant, Polynomial, Cyclical) of `step_size`.
    thinning: keep every `thinning`-th step (num_samples draws are kept either way).
    control_variate: Baker et al.'s control-variate gradients, centred at the result of
        `cv_steps` Adam steps (learning rate `cv_learning_rate`) on the full data.
    replace: draw each minibatch with replacement (default: the fastest draw) or without;
        both give unbiased estimates (`ppl.sgmcmc.minibatch.minibatches`).
    init: starting points, as for MCMC ("uniform", "prior", "median" or {site: value}).
    data_parallel: split each step's minibatch evenly over `jax.devices()` and average the
        devices' estimates (`ppl.sgmcmc.minibatch.estimate`): the same chain as on one
        device, up to float round-off. Every subsampled plate's batch size must be a
        multiple of the number of devices; chains stay vectorized (not "sharded").
    """

    schedule: Schedule = field(default=Constant(), kw_only=True)
    thinning: int = field(default=1, kw_only=True)
    control_variate: bool = field(default=False, kw_only=True)
    cv_steps: int = field(default=1000, kw_only=True)
    cv_learning_rate: float = field(default=0.01, kw_only=True)
    replace: bool = field(default=True, kw_only=True)
    init: str = field(default="uniform", kw_only=True)
    data_parallel: bool = field(default=False, kw_only=True)

    def __post_init__(self):
        super().__post_init__()
        cls = type(self).__name__
        check_option(self, "step_size", lambda v: 0 < v < float("inf"), "a positive number")
        check_option(self, "thinning", lambda v: v >= 1, "an integer >= 1", integer=True)
        check_option(self, "cv_steps", lambda v: v >= 0, "an integer >= 0", integer=True)
        check_option(self, "cv_learning_rate", lambda v: v > 0, "a positive number")
        if not isinstance(self.schedule, Schedule):
            raise OptionError(
                f"{cls}: schedule={self.schedule!r} must be a schedule object: "
                "ppl.sgmcmc.Constant(), Polynomial(b, gamma) or Cyclical(cycle_length)"
            )

    def init_state(self, z):
        raise NotImplementedError

    def update(self, key, state, grad, step_size):
        raise NotImplementedError
