"""SVI: fit a guide by stochastic optimisation of an objective, run by the driver.

Each driver step is one optimisation step of one fit (a "chain"; `num_chains` fits run
side by side, vmapped): loss = -surrogate of the objective (`Objective.surrogate`),
gradients by `jax.grad` w.r.t. the guide's unconstrained params, optional clipping by
global norm, then the optax update. A step whose loss, gradient or updated params are
not finite is skipped (params, optimizer state and baseline unchanged) and counted;
more than `max_nonfinite` such steps in a row end the run with an `InferenceError`.
Early stopping watches an exponential moving average of the loss inside the compiled
step (so the result does not depend on how steps are chunked); the driver ends the run
between chunks once every fit has stopped.

After fitting, the Posterior holds `num_samples` draws per fit from the fitted guide
(after the guide's `finalize`, e.g. Laplace's Gaussian) of every latent site of the
model, plus the model's deterministic sites at those draws.
"""

import contextlib
import dataclasses
import functools
import math
import numbers
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.distributions import Delta, constraints
from numpyro.distributions.transforms import biject_to
from numpyro.infer.autoguide import AutoDelta
from numpyro.infer.autoguide import AutoGuide as NumPyroAutoGuide
from numpyro.optim import _NumPyroOptim

from ppl.core import handlers
from ppl.core.checks import (
    check_count,
    did_you_mean,
    explain_tracer_errors,
    outside,
    unwrapped,
)
from ppl.core.model import abstract_call, improper_values
from ppl.core.primitives import ESTIMATORS
from ppl.errors import InferenceError, OptionError, warn
from ppl.infer.algorithm import keep_where
from ppl.infer.driver import Phase, run
from ppl.infer.method import Method
from ppl.infer.posterior import Posterior
from ppl.infer.registry import register
from ppl.infer.summary import nonfinite_counts
from ppl.vi import guides
from ppl.vi.objectives import ELBO
from ppl.vi.optim import adam
from ppl.vi.program import Objective, draw, objective, score

__all__ = ["SVI", "EarlyStopping", "SVIState", "DEFAULT_OPTIMIZER"]

#: Steps averaged for `diagnostics["final_loss"]` (the last ones taken, finite only).
FINAL_LOSS_STEPS = 100


def _point_masses(spec, guide):
    """Where the guide draws latent sites from a Delta ("" where nowhere)."""
    if isinstance(spec, guides.Delta):
        return "every latent site"
    if isinstance(spec, guides.AutoGuide):
        return ""
    if isinstance(spec, NumPyroAutoGuide):  # (stateful: not run outside its fit)
        return "every latent site" if isinstance(spec, AutoDelta) else ""
    trace = abstract_call(lambda: handlers.trace(handlers.seed(guide, 0)).get_trace())
    sites = [
        n
        for n, s in trace.items()
        if s["type"] == "sample" and not s["is_observed"] and isinstance(unwrapped(s["fn"]), Delta)
    ]
    return f"site(s) {sites}" if sites else ""


@dataclass(frozen=True)
class EarlyStopping:
    """Stop a fit once its smoothed loss has not improved by more than `tolerance`
    (absolute, in loss units) for `patience` steps in a row. The smoothed loss is an
    exponential moving average, s <- smoothing · s + (1 - smoothing) · loss."""

    patience: int = 500
    tolerance: float = 1e-3
    smoothing: float = 0.99

    def __post_init__(self):
        p, t, s = self.patience, self.tolerance, self.smoothing
        if isinstance(p, bool) or not isinstance(p, numbers.Integral) or p < 1:
            raise OptionError(f"EarlyStopping: patience={p!r} must be an integer >= 1")
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not t >= 0:
            raise OptionError(f"EarlyStopping: tolerance={t!r} must be a number >= 0")
        if isinstance(s, bool) or not isinstance(s, numbers.Real) or not 0 <= s < 1:
            raise OptionError(f"EarlyStopping: smoothing={s!r} must be a number in [0, 1)")


class SVIState(NamedTuple):
    """One fit: params (unconstrained), optimizer state, moving-average baseline, and
    counters. `step` counts steps attempted; `streak` the current run of non-finite
    steps, `nonfinite` all of them; `failed_at` / `stopped_at` are -1 until the fit
    fails (too many non-finite steps in a row) or stops early; `smoothed`, `best` and
    `since` track the loss plateau; `unsafe` says a fast step (see `SVIProgram`) met a
    non-finite value, so its chunk must be run again with guarded steps."""

    params: dict
    opt_state: Any
    baseline: jax.Array
    step: jax.Array
    streak: jax.Array
    nonfinite: jax.Array
    failed_at: jax.Array
    smoothed: jax.Array
    best: jax.Array
    since: jax.Array
    stopped_at: jax.Array
    unsafe: jax.Array

    @classmethod
    def fresh(cls, params, opt_state, baseline):
        """A fit before its first step: counters at 0, nothing failed or stopped."""
        i = jnp.zeros((), jnp.int32)
        return cls(
            params, opt_state, baseline, i, i, i, i - 1,
            jnp.array(jnp.nan), jnp.array(jnp.inf), i, i - 1, jnp.zeros((), bool),
        )  # fmt: skip


DEFAULT_OPTIMIZER = adam(1e-2)


def _all_finite(tree):
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return functools.reduce(jnp.logical_and, leaves, jnp.array(True))


@dataclass(frozen=True)
class SVIProgram:
    """The driver's program (hashable): one step = one optimisation step of one fit.

    By default the steps are fast: nothing is checked while a chunk runs, and the driver
    runs the chunk again with guarded steps (`safe=True`: a failing step is skipped and
    counted) when a loss of the chunk, or a parameter at its end, is not finite (a
    non-finite gradient leaves the parameters non-finite from then on; with early
    stopping each step also flags itself, `SVIState.unsafe`). Guarding every step costs
    up to ~4x on small models, because the update can no longer be fused into the
    gradient computation; the result is the same either way (barring an optimizer that
    itself zeroes non-finite gradients)."""

    method: "SVI"
    safe: bool = False

    def __call__(self, data):
        model, guide = data
        return partial(self.method.step, model, guide, safe=self.safe), _collect

    def safe_variant(self):
        return dataclasses.replace(self, safe=True)

    def needs_safe(self, state, losses):
        if self.method.early_stopping is not None:
            # steps with bookkeeping flag their own non-finite values (`unsafe`); a
            # stopped fit's losses are NaN by design and need no rerun
            return bool(np.any(np.asarray(state.unsafe)))
        finite = [np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state.params)]
        return not (all(finite) and np.all(np.isfinite(np.asarray(losses))))

    def start(self, data, key):
        model, guide = data
        return self.method.init(model, guide, key)


def _collect(state, loss):
    return loss


_start = jax.jit(
    lambda program, data, keys: jax.vmap(program.start, (None, 0))(data, keys),
    static_argnums=0,
)


@register("vi")
@dataclass(frozen=True)
class SVI(Method):
    """Stochastic variational inference.

    >>> post = ppl.infer(m, method=ppl.vi.SVI(guide=ppl.vi.guides.Normal(),
    ...                  objective=ppl.vi.objectives.ELBO(), optimizer=ppl.vi.adam(1e-2),
    ...                  num_steps=5000), num_samples=1000, num_chains=1)

    guide: an automatic guide (`ppl.vi.guides.Normal()`, the default, ...), or a DSL
        guide: a function (or `@ppl.model`) with the model's arguments that samples
        every latent site of the model by name, with parameters from `ppl.param`.
    objective: an `Objective` to maximise (`ELBO()` default, `IWAE(num_particles=K)`,
        or one written with `@ppl.vi.objective`).
    optimizer: an optax GradientTransformation (default `ppl.vi.adam(1e-2)`, Adam with
        less arithmetic per step than `optax.adam`). Compiled code is shared between
        equal SVI objects: two `ppl.vi.adam(1e-2)` are equal, two `optax.adam(1e-2)` are
        not (reuse the same object).
    num_steps: optimisation steps per fit.
    estimators: {site: "reparam" | "reinforce" | "enum" | "mvd"}, overriding the
        guide's per-site `estimator=`.
    clip_norm: clip each gradient to this global norm (`optax.clip_by_global_norm`).
    max_nonfinite: a fit fails (InferenceError) after more than this many consecutive
        steps with a non-finite loss, gradient or update; fewer are skipped and counted.
    early_stopping: None, True (default settings) or `EarlyStopping(patience,
        tolerance, smoothing)`.
    evidence_particles: K of the log-evidence estimate, when the objective is a bound:
        `post.log_evidence` is the IWAE bound log (1/(C·K)) Σ p(x, z)/q(z) over K draws
        from each of the C fitted guides (≥ the ELBO in expectation; a lower bound on
        log p(x) in expectation, tight as K grows). Not computed (None, the reason in
        diagnostics["log_evidence_method"]) for subsampled models, Delta guides and
        guides with auxiliary sites.

    init_params: start from these params instead of their initial values: a Posterior
        of an earlier fit of this guide and model (to train on: fit c continues from its
        fit c, or every fit from its only one), or a dict {param: constrained value}.
        The optimizer starts afresh.

    `post.diagnostics` holds the loss per step, `final_loss`, the fitted `params` on
    their constrained spaces (a positive scale as itself) and `unconstrained_params`,
    which the guide objects' own methods take (e.g. `FlowGuide.log_prob`).
    """

    guide: Any = guides.Normal()
    objective: Objective = ELBO()
    optimizer: Any = DEFAULT_OPTIMIZER
    num_steps: int = 5000
    estimators: Any = None
    clip_norm: float | None = None
    max_nonfinite: int = 10
    early_stopping: Any = None
    evidence_particles: int = 1000
    init_params: Any = field(default=None, compare=False)  # (used on the host only)

    handles_discrete = True  # with a DSL guide that samples them

    def __post_init__(self):
        super().__post_init__()
        cls = "SVI"
        if isinstance(self.guide, type):
            raise OptionError(
                f"{cls}: guide={self.guide.__name__} is a class; pass an instance, e.g. "
                f"guide={self.guide.__name__}()"
            )
        if not (isinstance(self.guide, guides.AutoGuide) or callable(self.guide)):
            raise OptionError(
                f"{cls}: guide={self.guide!r} must be an automatic guide "
                "(ppl.vi.guides.Normal(), ...) or a function that samples the model's latent sites"
            )
        if not isinstance(self.objective, Objective):
            hint = " (call it: e.g. ELBO())" if callable(self.objective) else ""
            raise OptionError(
                f"{cls}: objective={self.objective!r} must be an objective such as "
                f"ppl.vi.objectives.ELBO() or IWAE(num_particles=K){hint}"
            )
        if isinstance(self.optimizer, _NumPyroOptim):
            raise OptionError(
                f"{cls}: optimizer={type(self.optimizer).__name__}(...) is a NumPyro optimizer "
                "(numpyro.optim), which ppl does not drive; pass an optax transformation "
                "instead, e.g. optax.adam(1e-2) or ppl.vi.adam(1e-2) (optax.chain(...) for "
                "clipping or schedules)"
            )
        if not (hasattr(self.optimizer, "init") and hasattr(self.optimizer, "update")):
            raise OptionError(
                f"{cls}: optimizer={self.optimizer!r} must be an optax GradientTransformation, "
                "e.g. optax.adam(1e-2)"
            )
        given = self.init_params
        if not (given is None or isinstance(given, dict) or _fitted_params(given) is not None):
            raise OptionError(
                f"{cls}: init_params={given!r} must be a Posterior of an earlier VI fit (its "
                "diagnostics hold the fitted params) or a dict {param name: value}"
            )
        check_count("SVI", "num_steps", self.num_steps, 1)
        check_count("SVI", "max_nonfinite", self.max_nonfinite, 0)
        check_count("SVI", "evidence_particles", self.evidence_particles, 1)
        if self.clip_norm is not None and not (
            isinstance(self.clip_norm, numbers.Real)
            and not isinstance(self.clip_norm, bool)
            and 0 < self.clip_norm < math.inf
        ):
            raise OptionError(
                f"{cls}: clip_norm={self.clip_norm!r} must be None or a positive number"
            )
        if self.estimators is not None:
            if not isinstance(self.estimators, (dict, tuple)):
                raise OptionError(
                    f"{cls}: estimators={self.estimators!r} must be a dict {{site: estimator}}"
                )
            items = tuple(sorted(dict(self.estimators).items()))
            for site, name in items:
                if name not in ESTIMATORS:
                    raise OptionError(
                        f"{cls}: estimators[{site!r}]={name!r} is not an estimator; choose one "
                        f"of {', '.join(ESTIMATORS)}"
                    )
            object.__setattr__(self, "estimators", items)  # hashable
        stopping = self.early_stopping
        if stopping is True:
            object.__setattr__(self, "early_stopping", EarlyStopping())
        elif stopping is False:
            object.__setattr__(self, "early_stopping", None)
        elif stopping is not None and not isinstance(stopping, EarlyStopping):
            raise OptionError(
                f"{cls}: early_stopping={stopping!r} must be None, True or "
                "ppl.vi.EarlyStopping(patience=..., tolerance=...)"
            )

    # ----- the step -----------------------------------------------------------------

    @property
    def transform(self):
        if self.clip_norm is None:
            return self.optimizer
        return optax.chain(optax.clip_by_global_norm(self.clip_norm), self.optimizer)

    def _surrogate(self, model, guide, key, params, baseline):
        estimators = dict(self.estimators or ())
        return self.objective.surrogate(key, params, model, guide, baseline, estimators)

    def init(self, model, guide, key):
        """The state of one fit: params from the programs' `ppl.param` initial values."""
        from ppl.vi.program import init_params

        params = init_params(self.objective, key, model, guide)
        value = self._surrogate(model, guide, key, params, jnp.zeros(())).value
        baseline = jnp.where(jnp.isfinite(value), value, 0.0)  # REINFORCE's first baseline
        return SVIState.fresh(params, self.transform.init(params), baseline)

    def step(self, model, guide, key, s, safe=True):
        """One optimisation step of one fit: (new state, loss of this step). `safe=False`
        applies the update even when it is not finite (see `SVIProgram`)."""

        def loss_fn(params):
            out = self._surrogate(model, guide, key, params, s.baseline)
            return -out.surrogate, out

        grads, out = jax.grad(loss_fn, has_aux=True)(s.params)
        loss = -out.value
        try:
            # (the step's loss goes along, for transformations that watch it, e.g.
            # optax.contrib.reduce_on_plateau)
            update = optax.with_extra_args_support(self.transform).update
            updates, opt_state = update(grads, s.opt_state, s.params, value=loss)
        except TypeError as e:
            if "value" not in str(e):
                raise
            raise OptionError(
                f"SVI: the optimizer needs more than the gradient and the loss at each update "
                f"({e}), e.g. a line search; SVI's losses are stochastic, so pass a gradient "
                "transformation such as ppl.vi.adam(1e-2)"
            ) from None
        params = optax.apply_updates(s.params, updates)
        if not safe and self.early_stopping is None:
            # Nothing to skip or stop: a fit that failed ended the run (`_monitor`), and a
            # non-finite step shows in the chunk's losses or final params (`needs_safe`).
            state = s._replace(
                params=params, opt_state=opt_state, baseline=out.baseline, step=s.step + 1
            )
            return state, loss
        finite = jnp.isfinite(loss) & _all_finite(grads) & _all_finite(params)
        active = (s.failed_at < 0) & (s.stopped_at < 0)
        take = finite & active
        params, opt_state, baseline = keep_where(
            take if safe else active,
            (params, opt_state, out.baseline), (s.params, s.opt_state, s.baseline),
        )  # fmt: skip
        streak = jnp.where(active, jnp.where(finite, 0, s.streak + 1), s.streak)
        failed_at = jnp.where(active & (streak > self.max_nonfinite), s.step, s.failed_at)
        smoothed, best, since, stopped_at = s.smoothed, s.best, s.since, s.stopped_at
        stop = self.early_stopping
        if stop is not None:
            a = stop.smoothing
            new = jnp.where(jnp.isnan(smoothed), loss, a * smoothed + (1 - a) * loss)
            improved = new < best - stop.tolerance
            smoothed = jnp.where(take, new, smoothed)
            best = jnp.where(take & improved, new, best)
            since = jnp.where(take, jnp.where(improved, 0, since + 1), since)
            stopped_at = jnp.where(take & (since >= stop.patience), s.step + 1, stopped_at)
        state = SVIState(
            params, opt_state, baseline, s.step + active, streak,
            s.nonfinite + (active & ~finite), failed_at, smoothed, best, since, stopped_at,
            jnp.zeros((), bool) if safe else s.unsafe | (active & ~finite),
        )  # fmt: skip
        return state, jnp.where(active, loss, jnp.nan)

    # ----- the run ------------------------------------------------------------------

    def fit(self, data, key_init, key_fit, num_chains, *, progress, model_name=None):
        """Run `num_chains` fits side by side on the driver's `data` (`init` / `step`'s
        (model, guide)): start them, take up to `num_steps` steps, and raise an
        InferenceError if any failed. Returns (state, losses, timings)."""
        program = SVIProgram(self)
        explain = (
            explain_tracer_errors(model_name)
            if model_name is not None
            else contextlib.nullcontext()
        )
        with explain:  # a guide missing a site fails here
            state = _start(program, data, jax.random.split(key_init, num_chains))
        if self.init_params is not None:
            state = self._warm_start(state, data, num_chains)
        phases = [Phase("fit", self.num_steps, keep=True)]
        state, losses, timings = run(
            program, data, state, jax.random.split(key_fit, num_chains), phases,
            progress=progress, monitor=_monitor,
        )  # fmt: skip
        self._raise_if_failed(state)
        return state, losses, timings

    def _warm_start(self, state, programs, num_chains):
        """`state` with the params of `init_params` (fits × unconstrained values) and a
        fresh optimizer state."""
        params = dict(state.params)
        fitted = _fitted_params(self.init_params)
        if fitted is None:  # a dict of constrained values: to the unconstrained scale
            found = _param_constraints(programs, params)
            fitted = {}
            for k, v in self.init_params.items():
                constraint = found.get(k, constraints.real)
                bad = outside(constraint, v)
                if bad is not None and bad.any():
                    raise OptionError(
                        f"SVI: init_params['{k}'] = {v!r} lies outside the param's constraint "
                        f"{constraint!r}; give a value inside it"
                    )
                fitted[k] = biject_to(constraint).inv(jnp.asarray(v, jnp.float32))
        for name, value in fitted.items():
            if name not in params:
                raise OptionError(
                    f"SVI: init_params names {name!r}, which is no param of the guide or "
                    f"model{did_you_mean(name, params)}; params are {sorted(params)}"
                )
            one = params[name].shape[1:]
            value = jnp.asarray(value, params[name].dtype)
            if value.shape == one:
                value = jnp.broadcast_to(value, params[name].shape)
            elif value.shape != params[name].shape and value.shape != (1,) + one:
                raise OptionError(
                    f"SVI: init_params['{name}'] has shape {value.shape}; the param has "
                    f"shape {one} (per fit; {num_chains} fits)"
                )
            params[name] = jnp.broadcast_to(value, params[name].shape)
        return state._replace(params=params, opt_state=jax.vmap(self.transform.init)(params))

    def run(self, model, *, num_samples, num_chains, seed, progress):
        t0 = time.perf_counter()
        ld = model.log_density()
        guide = guides.bind_guide(self.guide, model)  # refuses discrete sites for auto guides
        key_init, key_fit, key_draw, key_evidence = jax.random.split(seed, 4)
        state, losses, timings = self.fit(
            (model, guide), key_init, key_fit, num_chains, progress=progress,
            model_name=model.name,
        )  # fmt: skip
        params = jax.tree.map(np.asarray, state.params)
        programs, fitted, stacked = self._finalize(model, guide, params, num_chains)
        latent, determ = tuple(ld.sites), tuple(ld.deterministic)
        keys = jax.random.split(key_draw, num_chains)
        axis = 0 if stacked else None
        samples = _draws(num_samples, latent, determ, axis, programs, model, fitted, params, keys)
        samples = {k: np.asarray(v) for k, v in samples.items()}
        diagnostics = self._diagnostics(state, losses, (guide, model), params, timings)
        # what the guide objects' own methods take (e.g. FlowGuide.log_prob)
        diagnostics["unconstrained_params"] = params
        log_evidence = None
        if self.objective.is_bound:
            why_not = self._no_evidence(ld, guide)
            if why_not:
                diagnostics["log_evidence_method"] = why_not
            else:
                log_evidence = self._evidence(
                    model, programs, fitted, axis, key_evidence, diagnostics, num_chains
                )
        _warn_nonfinite(self.label, samples, diagnostics)
        diagnostics["wall_time"] = time.perf_counter() - t0
        return Posterior(
            samples, diagnostics, log_evidence=log_evidence, method=self.label, model=model,
            latent_sites=latent,
        )  # fmt: skip

    def _finalize(self, model, guide, params, num_chains):
        """The program(s) and params that draws come from: the fitted guide itself, or
        per fit what the guide's `finalize(model, params)` makes (e.g. Laplace's
        Gaussian), stacked over fits. Returns (program, params, stacked)."""
        finalize = getattr(type(self.guide), "finalize", None)
        if finalize is None or finalize is guides.AutoGuide.finalize:
            return guide, params, False
        outs = [
            self.guide.finalize(model, jax.tree.map(lambda p, c=c: p[c], params))
            for c in range(num_chains)
        ]
        programs = jax.tree.map(lambda *xs: jnp.stack(xs), *[o[0] for o in outs])
        fitted = jax.tree.map(lambda *xs: jnp.stack(xs), *[o[1] for o in outs])
        return programs, fitted, True

    def _raise_if_failed(self, state):
        at = np.asarray(state.failed_at)
        bad = np.flatnonzero(at >= 0)
        if not bad.size:
            return
        first = int(at[bad].min())
        n = self.max_nonfinite + 1
        hint = "" if self.clip_norm else ", clip gradients (clip_norm=10.0)"
        raise InferenceError(
            f"{self._fitted}: fit(s) {bad.tolist()} failed at step {first}: {n} consecutive "
            f"steps (up to step {first}, counted from 0) had a non-finite loss, gradient or "
            f"update. Lower the optimizer's learning rate{hint}, {self._start_advice}; "
            "max_nonfinite sets how many such steps in a row are skipped"
        )

    #: Who failed, and how to start better, in `_raise_if_failed`'s message.
    _fitted = "SVI"
    _start_advice = (
        "start the guide closer (e.g. a smaller init_scale), or check that the model's log "
        "density is finite where the guide draws"
    )

    def _diagnostics(self, state, losses, programs, params, timings):
        losses = np.asarray(losses)  # (fits, steps run)
        steps = np.asarray(state.step)
        stopped = np.asarray(state.stopped_at)
        return {
            "loss": losses,
            "final_loss": _final_loss(losses, steps),
            "nonfinite_steps": np.asarray(state.nonfinite),
            "steps": steps,
            "stopped_early_at": stopped,
            "params": _constrained_params(programs, params),
            "fit_time": timings.get("fit", 0.0),
        }

    def _no_evidence(self, ld, guide):
        """Why `post.log_evidence` is not computed (None when it is)."""
        if self.objective.auxiliary:
            return (
                f"not computed: the guide samples auxiliary site(s) "
                f"{list(self.objective.auxiliary)}, so its draws have no density q(z) to "
                "weigh them by; the objective's value (-diagnostics['final_loss']) is a lower "
                "bound on log p(x)"
            )
        point_masses = _point_masses(self.guide, guide)
        if point_masses:
            return (
                f"not computed: the guide is a point mass (Delta) at {point_masses}, with no "
                "density to weigh draws by (its bound would be log p(x, z_MAP), not an "
                "evidence estimate)"
            )
        if ld.subsampled_plates:
            name, (size, batch) = next(iter(ld.subsampled_plates.items()))
            return (
                f"not computed: plate '{name}' subsamples ({batch} of {size}), and an "
                "importance-weighted bound over one minibatch, scaled up, is biased upward; "
                "bind the model without subsampling to get log p(x)"
            )
        return None

    def _evidence(self, model, programs, fitted, axis, key, diagnostics, num_chains):
        """log (1/(C·K)) Σ w over K draws per fit (the IWAE bound), its standard error
        (delta method) and the per-fit IWAE bounds in the diagnostics."""
        keys = jax.random.split(key, num_chains)
        log_w = np.asarray(
            _log_weights(self.evidence_particles, axis, programs, model, fitted, keys), np.float64
        )
        flat = log_w.reshape(-1)
        finite = flat[np.isfinite(flat)]
        if finite.size == 0:
            return None
        top = finite.max()
        w = np.exp(flat - top)  # -inf weights count as 0; NaN ones make the result NaN
        value = float(top + np.log(np.mean(w)))
        se = float(np.std(w) / (np.sqrt(w.size) * np.mean(w)))
        per_chain = top + np.log(np.mean(np.exp(log_w - top), axis=1))
        diagnostics["log_evidence_se"] = se
        diagnostics["log_evidence_per_chain"] = per_chain
        diagnostics["log_evidence_method"] = (
            f"IWAE bound, K={self.evidence_particles} draws per fit from the fitted guide"
        )
        return value


# ----- what the monitor, the draws and the evidence need ----------------------------


def _monitor(state, losses, done):
    """The driver's monitor: the running loss on the bar; stop once every fit has
    stopped early, or as soon as one failed."""
    failed = np.asarray(state.failed_at) >= 0
    stopped = np.asarray(state.stopped_at) >= 0
    postfix = None
    if losses is not None:
        recent = losses[-min(len(losses), FINAL_LOSS_STEPS) :]
        recent = recent[np.isfinite(recent)]
        if recent.size:
            postfix = f"loss {recent.mean():.4g}"
    return postfix, bool(failed.any() or (stopped | failed).all())


def _final_loss(losses, steps):
    out = np.full(losses.shape[0], np.nan)
    for c, (row, n) in enumerate(zip(losses, steps)):
        row = row[max(0, int(n) - FINAL_LOSS_STEPS) : int(n)]
        row = row[np.isfinite(row)]
        if row.size:
            out[c] = row.mean()
    return out


def _warn_nonfinite(label, samples, diagnostics):
    """Warn about skipped optimisation steps and non-finite draws (both also in
    `diagnostics`): a result with either is not to be trusted silently."""
    messages = diagnostics.setdefault("warnings", [])
    skipped = np.asarray(diagnostics["nonfinite_steps"])
    if skipped.any():
        messages.append(
            f"{label}: {int(skipped.sum())} optimisation step(s) had a non-finite loss, "
            f"gradient or update and were skipped (per fit: {skipped.tolist()}); lower the "
            "learning rate or clip gradients (clip_norm=10.0) if this recurs"
        )
    bad = nonfinite_counts(samples)
    diagnostics["nonfinite_draws"] = sum(bad.values())
    if bad:
        shown = ", ".join(f"'{n}': {k}" for n, k in bad.items())
        messages.append(
            f"{label}: the fitted guide gives non-finite draws ({shown} values): it puts mass "
            "where a site's transform overflows; start with a smaller init_scale or fit "
            "longer, and check post.diagnostics['final_loss']"
        )
    for message in messages:
        warn(message)


def _fitted_params(posterior):
    """A VI Posterior's unconstrained params (fits, ...), else None."""
    diagnostics = getattr(posterior, "diagnostics", None)
    return None if diagnostics is None else diagnostics.get("unconstrained_params")


def _param_constraints(programs, params):
    """name -> constraint of each `ppl.param` of `programs` (the guide's and the
    model's own), given params (fits, ...) to run them at."""
    found = {}

    def record(msg):
        if msg["type"] == "param":
            found[msg["name"]] = msg["kwargs"].get("constraint", constraints.real)
        return None

    first = jax.tree.map(lambda p: jnp.asarray(p[0]), params)  # (a traced index may index it)
    for program in programs:
        seeded = handlers.seed(_with_params(program, first, record), rng_seed=0)
        runnable = handlers.substitute(seeded, substitute_fn=improper_values(0.0))
        jax.eval_shape(lambda s=runnable: (s(), 0)[1])  # records the constraints, computes nothing
    return found


def _constrained_params(programs, params):
    """Fitted params on their constrained spaces, name -> (fits, ...); the constraints
    are read from `programs` (the guide's params and the model's own)."""
    found = _param_constraints(programs, params)
    out = {}
    for name, value in params.items():
        transform = jax.vmap(biject_to(found.get(name, constraints.real)))
        out[name] = jax.tree.map(lambda v, t=transform: np.asarray(t(jnp.asarray(v))), value)
    return out


def _with_params(program, params, record=None):
    """`program` with each `ppl.param` set from the unconstrained `params`."""

    def substitute_fn(msg):
        if record is not None:
            record(msg)
        if msg["type"] != "param" or msg["name"] not in params:
            return None
        constraint = msg["kwargs"].get("constraint", constraints.real)
        return biject_to(constraint)(params[msg["name"]])

    return handlers.substitute(program, substitute_fn=substitute_fn)


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _draws(num_samples, latent, determ, axis, programs, model, params, fitted, keys):
    """num_samples draws per fit of the model's latent sites from the fitted guide,
    and of its deterministic sites at those draws (with the model's own params as
    fitted): name -> (fits, draws, ...). `params`: the guide programs' params; `fitted`:
    every param of the fit (the model's included)."""

    def one(program, params, fitted, key):
        k_guide, k_model = jax.random.split(key)
        # every data point's local latent values (not one minibatch's)
        guided = handlers.full_data(handlers.seed(_with_params(program, params), rng_seed=k_guide))
        trace = handlers.trace(guided).get_trace()
        values = {n: trace[n]["value"] for n in latent}
        if not determ:
            return values
        filled = handlers.substitute(_with_params(model, fitted), data=values)
        model_trace = handlers.trace(handlers.full_data(handlers.seed(filled, k_model))).get_trace()
        return {**values, **{n: model_trace[n]["value"] for n in determ}}

    def fit(program, params, fitted, key):
        keys = jax.random.split(key, num_samples)
        return jax.vmap(one, (None, None, None, 0))(program, params, fitted, keys)

    return jax.vmap(fit, (axis, 0, 0, 0))(programs, params, fitted, keys)


@objective(bound=True)
def _log_weight(model, guide):
    d = draw(guide)  # (no gradient is taken of the evidence)
    return score(model, d) - d.log_q


_LOG_WEIGHT = _log_weight()


@partial(jax.jit, static_argnums=(0, 1))
def _log_weights(num_particles, axis, programs, model, params, keys):
    """log p(x, z_k) - log q(z_k) for K draws per fit: (fits, K)."""

    def fit(program, params, key):
        def one(k):
            return _LOG_WEIGHT.surrogate(k, params, model, program, jnp.zeros(())).value

        keys = jax.random.split(key, num_particles)
        return jax.lax.map(one, keys, batch_size=min(num_particles, 256))

    return jax.vmap(fit, (axis, 0, 0))(programs, params, keys)
