"""A model whose time loop is `ppl.scan(step, init, xs)`, seen one time step at a time.

A particle filter needs what NumPyro's `scan` hides: the step function, its initial
carry and the per-step inputs. Running the model under `_StopAtScan` halts it at the
scan and hands those over, together with the trace of everything before the loop
(the *static* sites, e.g. parameters). The filter then runs the step function
itself, one step for N particles at a time, under its own handlers.

Inference code calls the functions here on a `LogDensity`'s model; they never run
anything outside JAX tracing except `describe`, which runs the model once (eagerly,
with seed 0) to learn its structure and check its data.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.primitives import Messenger

from ppl.core import draws, handlers
from ppl.core.model import abstract_call
from ppl.core.primitives import check_scan_step
from ppl.errors import DataError, ModelError

__all__ = ["Layout", "describe", "prefix", "run_step", "trace_log_prob"]


class _ScanReached(Exception):
    def __init__(self, msg):
        super().__init__("ppl.scan reached")
        self.msg = msg


class _StopAtScan(Messenger):
    """Halts the model at its first `ppl.scan`, raising the scan's message."""

    def process_message(self, msg):
        if msg["type"] == "control_flow":
            raise _ScanReached(msg)


class ScanCall(NamedTuple):
    step: Any
    init: Any
    xs: Any
    length: Any


class Layout(NamedTuple):
    """What the filter needs to know about the model's structure (hashable).

    static: latent sites before the loop; static_deterministic: deterministic ones;
    latent / deterministic: the step's unobserved sample and deterministic sites;
    observed: the step's observed sites; length: number of time steps."""

    static: tuple
    static_deterministic: tuple
    latent: tuple
    deterministic: tuple
    observed: tuple
    length: int


def prefix(model, key, values):
    """Run `model` up to its `ppl.scan`, latent sites before it set from `values` (drawn
    from the prior where absent): (trace of the sites before the loop, ScanCall)."""
    seeded = handlers.substitute(handlers.seed(model, key), data=values)
    with handlers.trace() as trace:
        try:
            with _StopAtScan():
                seeded()
        except _ScanReached as reached:
            f, init, xs, length, reverse = reached.msg["args"]
            return trace, ScanCall(f, init, xs, length), reverse
    return trace, None, False


def site_log_prob(site):
    lp = site["fn"].log_prob(site["value"])
    if site.get("scale") is not None:
        lp = site["scale"] * lp
    return jnp.sum(lp)


def trace_log_prob(trace, observed=None):
    """Sum of the scaled log densities of a trace's sample sites: all of them, or only the
    observed ones (`observed=True`) or only the latent ones (`observed=False`)."""
    total = jnp.zeros(())
    for site in trace.values():
        if site["type"] == "sample" and (observed is None or site["is_observed"] == observed):
            total = total + site_log_prob(site)
    return total


class _Draw(Messenger):
    """Draws every latent sample site with its own key, or takes the reference value where
    `use_reference` (conditional SMC keeps one particle on a given trajectory)."""

    def __init__(self, fn, key, reference=None, use_reference=False):
        self.key, self.next = key, jax.random.fold_in(key, 1)
        self.reference = reference
        self.use_reference = use_reference
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] != "sample" or msg["is_observed"] or msg["value"] is not None:
            return
        key, self.key = self.key, None  # the first site takes the key as it is
        if key is None:
            self.next, key = jax.random.split(self.next)
        sample_shape = msg["kwargs"].get("sample_shape", ())
        value = msg["fn"](rng_key=draws.for_sampler(msg["fn"], key), sample_shape=sample_shape)
        if self.reference is not None:
            value = jnp.where(self.use_reference, self.reference[msg["name"]], value)
        msg["value"] = value


def run_step(step, carry, x, key, proposal=None, reference=None, use_reference=False):
    """One time step for one particle: (new carry, trace, log incremental weight).

    Bootstrap (no proposal): latent sites are drawn from the model's own transition, so
    the weight is the observed sites' log density. With a proposal (a DSL function of
    (carry, x) that samples the step's latent sites), the latent sites come from it and
    the weight is log p(latent, observed | carry) - log q(latent | carry)."""
    out = {}

    def call(c, xt):
        out["carry"] = step(c, xt)[0]

    if proposal is None:
        with handlers.trace() as trace:
            _Draw(call, key, reference, use_reference)(carry, x)
        return out["carry"], trace, trace_log_prob(trace, observed=True)
    with handlers.trace() as guide:
        _Draw(proposal, key, reference, use_reference)(carry, x)
    values = {n: s["value"] for n, s in guide.items() if s["type"] == "sample"}
    with handlers.trace() as trace:
        handlers.substitute(call, data=values)(carry, x)
    return out["carry"], trace, trace_log_prob(trace) - trace_log_prob(guide)


def _kind(trace, name):
    site = trace[name]
    if site["type"] == "deterministic":
        return "deterministic"
    return "observed" if site["is_observed"] else "latent"


def _time_length(model_name, xs, length):
    """The number of time steps, after checking every input in xs has that many."""
    leaves = jax.tree_util.tree_leaves_with_path(xs)
    lengths = {
        jax.tree_util.keystr(p) or "xs": np.shape(v)[0] if np.ndim(v) else None for p, v in leaves
    }
    scalar = [p for p, n in lengths.items() if n is None]
    if scalar:
        raise DataError(f"{model_name}: ppl.scan input(s) {scalar} have no time axis (a scalar)")
    found = sorted(set(lengths.values()))
    if length is not None:
        found = sorted(set(found) | {int(length)})
    if len(found) > 1:
        detail = ", ".join(f"{p}: {n}" for p, n in lengths.items())
        given = f"; length={length}" if length is not None else ""
        raise DataError(
            f"{model_name}: ppl.scan inputs have different time lengths ({detail}{given}); "
            "every array in xs needs the same leading (time) axis, one entry per time step"
        )
    if not found:
        raise ModelError(f"{model_name}: ppl.scan has no xs; give it length=T")
    return found[0]


def describe(bound_model, proposal=None):
    """The model's Layout, after checking it has the shape a particle filter needs: sites
    before one `ppl.scan`, the time loop, nothing sampled after it.

    It depends only on the model's structure and its data's shapes: the model runs
    abstractly (`jax.eval_shape`, nothing computed) once per structure and shapes."""
    leaves, treedef = jax.tree.flatten(bound_model)
    key = (treedef, tuple((np.shape(v), jnp.result_type(v)) for v in leaves), proposal)
    if key not in _LAYOUTS:
        if len(_LAYOUTS) >= MAX_LAYOUTS:  # bounded: keys hold proposals, maybe fresh lambdas
            del _LAYOUTS[next(iter(_LAYOUTS))]  # the oldest
        _LAYOUTS[key] = abstract_call(lambda m: _describe(m, proposal), bound_model)
    return _LAYOUTS[key]


_LAYOUTS = {}  # (model structure, data shapes, proposal) -> Layout
MAX_LAYOUTS = 64


def _describe(bound_model, proposal):
    name = bound_model.name
    key = jax.random.key(0)
    before, call, reverse = prefix(bound_model, key, {})
    if call is None:
        raise ModelError(
            f"{name}: the particle filter needs the model's time loop written as "
            "`ppl.scan(step, init, xs)`, where step(carry, x) samples one time step's latent "
            "state and observation and returns (new carry, output); this model has no "
            "ppl.scan. Write the loop with ppl.scan, or use a method for any model "
            '(method="smc" or "nuts").'
        )
    if reverse:
        raise ModelError(f"{name}: the particle filter runs forward in time; reverse=True")
    length = _time_length(name, call.xs, call.length)
    x0 = jax.tree.map(lambda v: v[0], call.xs)
    step_trace = _trace_step(name, call, x0, key)
    step_sites = {n: _kind(step_trace, n) for n in step_trace if step_trace[n]["type"] != "plate"}
    whole = bound_model.trace(seed=0)
    after = [
        n for n, s in whole.items()
        if s["type"] == "sample" and n not in before and n not in step_sites
    ]  # fmt: skip
    if after:
        raise ModelError(
            f"{name}: site(s) {after} come after the ppl.scan loop; the particle filter needs "
            "every sample site either before the loop (static) or inside its step"
        )
    static = tuple(n for n, s in before.items() if s["type"] == "sample" and not s["is_observed"])
    layout = Layout(
        static,
        tuple(n for n, s in before.items() if s["type"] == "deterministic"),
        tuple(n for n, k in step_sites.items() if k == "latent"),
        tuple(n for n, k in step_sites.items() if k == "deterministic"),
        tuple(n for n, k in step_sites.items() if k == "observed"),
        int(length),
    )
    if proposal is not None:
        _check_proposal(name, proposal, call, x0, step_trace)
    return layout


def _trace_step(name, call, x0, key):
    """The trace of the step function's first time step, after checking that it returns
    (new carry, output) with a carry shaped like `init` (as `ppl.scan` needs)."""
    result = {}

    def run(carry, x):
        step = getattr(call.step, "__wrapped__", call.step)  # (not ppl.scan's own check)
        result["out"] = step(carry, x)

    with handlers.trace() as trace:
        _Draw(run, key)(call.init, x0)
    check_scan_step(name, call.step, call.init, result["out"])
    return trace


def _check_proposal(name, proposal, call, x0, step_trace):
    with handlers.trace() as guide:
        handlers.seed(proposal, jax.random.key(0))(call.init, x0)
    drawn = {n for n, s in guide.items() if s["type"] == "sample" and not s["is_observed"]}
    latent = {n for n, s in step_trace.items() if s["type"] == "sample" and not s["is_observed"]}
    if drawn != latent:
        raise ModelError(
            f"{name}: the proposal must sample exactly the step's latent sites "
            f"{sorted(latent)}; it samples {sorted(drawn)}"
        )
    for n in sorted(latent):
        want, got = np.shape(step_trace[n]["value"]), np.shape(guide[n]["value"])
        if want != got:
            raise ModelError(
                f"{name}: the proposal samples site '{n}' with shape {got}, but the model's "
                f"step samples it with shape {want}; make the proposal's distribution match"
            )
