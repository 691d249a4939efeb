"""What every MCMC method shares: build the log density, start chains, run, summarise."""

import time
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ppl.core.checks import explain_tracer_errors
from ppl.infer.driver import Phase, run
from ppl.infer.method import Method
from ppl.infer.posterior import Posterior
from ppl.infer.summary import nonfinite_counts
from ppl.mcmc.diagnostics import check_run, warn


@dataclass(frozen=True)
class MCMCProgram:
    """A hashable description of one MCMC run, so compiled code is shared between runs."""

    method: "MCMCMethod"
    num_warmup: int

    uses_step_index = True  # the driver passes the shared step index to __call__

    def __call__(self, logdensity, i=None):
        kernel = self.method.kernel(logdensity, self.num_warmup)
        if i is None or kernel.step_at is None:
            return kernel.step, _collect
        return partial(kernel.step_at, i=i), _collect

    def start(self, logdensity, key):
        key_point, key_kernel = jax.random.split(key)
        z, found = logdensity.candidate(key_point, self.method.init)
        return self.method.kernel(logdensity, self.num_warmup).init(key_kernel, z), found


def _collect(state, info):
    return state.z, -state.potential_energy, info


def _step_sizes(adapt, prefix=""):
    """Final step sizes per chain, of a kernel or of each part of a combined kernel."""
    if hasattr(adapt, "step_size"):
        return {f"{prefix}step_size": np.asarray(adapt.step_size)}
    out = {}
    if isinstance(adapt, tuple):
        for j, part in enumerate(adapt):
            out.update(_step_sizes(getattr(part, "adapt", None), f"{prefix}{j}."))
    return out


def flat_stats(info, prefix=""):
    """Per-draw statistics as name -> array; parts of combined kernels get "j." prefixes."""
    out = {}
    for k, v in info._asdict().items():
        if k == "parts":
            for j, part in enumerate(v):
                out.update(flat_stats(part, f"{prefix}{j}."))
        else:
            out[prefix + k] = np.asarray(v)
    return out


def constrained_values(logdensity, zs):
    """Site values of draws `zs` (a, b, size): by slicing on the host where no site has a
    transform or a deterministic value (no program to compile), else by a compiled
    program running the model's transforms."""
    if logdensity.values_are_slices:  # (C-ordered copies, as a program's outputs are)
        return {k: np.ascontiguousarray(v) for k, v in logdensity.unflatten(np.asarray(zs)).items()}
    return _constrained_values(logdensity, zs)


@jax.jit
def _constrained_values(logdensity, zs):
    return jax.vmap(jax.vmap(logdensity.values))(zs)


# Compiled without LLVM's optimisations: they are ~40% of this program's compile time (more
# than a small model's whole run) and would save microseconds of its one run per call.
@partial(jax.jit, static_argnums=(0, 3), compiler_options={"xla_backend_optimization_level": 0})
def _start(program, logdensity, key, num_chains):
    """Each chain's first state, whether its density there is finite, and its run key
    (derived here, not by eager `split`s: each of those is a small program to compile)."""
    keys_start, keys_run = jax.random.split(key, (2, num_chains))
    state, found = jax.vmap(program.start, (None, 0))(logdensity, keys_start)
    return state, found, keys_run


def start_chains(program, logdensity, key, num_chains, max_tries=100):
    """(initial states, found, run keys) of all chains; chains whose starting point has a
    non-finite density are drawn again (same compiled program, new keys) up to
    `max_tries` times."""
    state, found, run_keys = _start(program, logdensity, key, num_chains)
    found = np.asarray(found)
    for attempt in range(1, max_tries):
        if found.all():
            break
        retry, retry_found, _ = _start(
            program, logdensity, jax.random.fold_in(key, attempt), num_chains
        )
        take = ~found & np.asarray(retry_found)
        state = jax.tree.map(
            lambda old, new, take=take: jnp.where(take.reshape((-1,) + (1,) * (old.ndim - 1)), new, old),
            state, retry,
        )  # fmt: skip
        found = found | take
    return state, found, run_keys


@dataclass(frozen=True)
class MCMCMethod(Method):
    """Base of MCMC method objects; subclasses give `kernel(logdensity, num_warmup)`."""

    common_options = Method.common_options + (
        "num_warmup", "chain_method", "checkpoint", "convergence_checks",
    )  # fmt: skip
    # whether its kernel leaves any density it is given invariant, a tempered one included
    # (particle MCMC kernels run a filter on the model's own likelihood instead)
    tempers = True

    def kernel(self, logdensity, num_warmup):
        """The kernel on `logdensity` (a LogDensity or a ConditionalDensity of a block)."""
        raise NotImplementedError

    def check(self, logdensity):
        """Refuse up front a density this method cannot sample (default: discrete sites)."""
        logdensity.require_continuous(self.name or type(self).__name__)

    def kernel_diagnostics(self, stats):
        return {}

    def sets_init(self):
        """Whether `init` was given (not its default): unused where another method (a
        combinator, tempered SMC) starts the chains."""
        field = getattr(self, "__dataclass_fields__", {}).get("init")
        return field is not None and self.init != field.default

    def walk(self, prefix=""):
        """(stat prefix, method) for this method and, recursively, the methods combined in
        it, in the order of its kernel's parts ("0.", "0.1.", ...): the method objects in
        its fields, read in field order and through tuples (`Cycle.methods`,
        `Mixture.weighted`, `Repeat.method`, `Blocks.parts`)."""

        def found(value):
            if isinstance(value, MCMCMethod):
                return [value]
            if isinstance(value, (tuple, list)):
                return [m for v in value for m in found(v)]
            return []

        yield prefix, self
        fields = getattr(self, "__dataclass_fields__", {})
        children = [m for f in fields for m in found(getattr(self, f))]
        for j, child in enumerate(children):
            yield from child.walk(f"{prefix}{j}.")

    def run(
        self, model, *, num_samples, num_warmup, num_chains, seed, progress,
        chain_method="vectorized", checkpoint=None, convergence_checks=True,
    ):  # fmt: skip
        t0 = time.perf_counter()
        ld = model.log_density()
        ld.require_full_data(self.label)
        ld.warn_fixed_params(self.label)
        self.check(ld)
        program = MCMCProgram(self, num_warmup)
        with explain_tracer_errors(model.name):
            state, found, run_keys = start_chains(program, ld, seed, num_chains)
        ld.check_finite_start(found, state.z)
        phases = [Phase("warmup", num_warmup, keep=False), Phase("sample", num_samples, keep=True)]
        state, (zs, lp, stats), timings = run(
            program, ld, state, run_keys, phases,
            progress=progress, chain_method=chain_method, checkpoint=checkpoint,
        )  # fmt: skip
        samples = constrained_values(ld, zs)
        stats = {"lp": lp, **flat_stats(stats)}
        # R-hat/ESS checks: latent sites only
        latent = {k: samples[k] for k in ld.sites} if convergence_checks else None
        determ = {k: samples[k] for k in ld.deterministic if k in samples}
        diagnostics = self._diagnostics(
            state, stats, timings, time.perf_counter() - t0, latent, determ
        )
        return Posterior(
            {k: np.asarray(v) for k, v in samples.items()},
            diagnostics,
            sample_stats=stats,
            method=self.label,
            model=model,
            latent_sites=tuple(ld.sites),
        )

    def _diagnostics(self, state, stats, timings, total_time, samples=None, determ=None):
        """Run statistics plus the checks of `ppl.mcmc.diagnostics` (divergences, E-BFMI,
        tree depth, and R-hat/ESS of `samples`, the latent sites, when given; non-finite
        values of the deterministic sites `determ`): each problem found is a line of
        diag["warnings"] and a warning at the user's call."""
        diag = {
            "accept_rate": stats["accept_prob"].mean(axis=1),
            **_step_sizes(state.adapt),
            "grad_evals": np.asarray(state.grad_evals),
            "wall_time": total_time,
            "warmup_time": timings.get("warmup", 0.0),
            "sampling_time": timings.get("sample", 0.0),
        }
        diag.update(check_run(self, stats, samples))
        bad = nonfinite_counts(determ or {})
        if bad:
            diag["warnings"].append(
                f"{self.label}: deterministic site(s) have non-finite values ({bad}): the "
                "expression is undefined at some draws (e.g. log of a negative value)"
            )
        for message in diag["warnings"]:
            warn(message)
        return diag
