"""Kernel combinators: build a sampler from small kernels, the way optax chains transforms.

Each combinator is a method object (usable as `infer(method=...)`) whose kernel
runs its parts on one shared position; `handover` passes the position, potential
and gradient from one part to the next, so nothing is evaluated twice.

>>> ppl.mcmc.cycle(ppl.mcmc.RWMH(), ppl.mcmc.NUTS())
>>> ppl.mcmc.mixture([(0.9, ppl.mcmc.NUTS()), (0.1, ppl.mcmc.RWMH())])
>>> ppl.mcmc.repeat(ppl.mcmc.RWMH(), 10)
>>> ppl.mcmc.blocks({"z": ppl.mcmc.DiscreteGibbs(), ("mu", "sigma"): ppl.mcmc.NUTS()})

Each takes `init=` (the chains' starting values, as for NUTS, e.g. `init={"mu": 0.0}`):
the combined method starts the chains, not the methods inside it.
"""

import numbers
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ppl.core.checks import did_you_mean
from ppl.errors import ModelError, OptionError
from ppl.mcmc.kernel import Kernel, MCMCState, handover
from ppl.mcmc.method import MCMCMethod

__all__ = ["cycle", "mixture", "repeat", "blocks", "Cycle", "Mixture", "Repeat", "Blocks"]


class CombinedInfo(NamedTuple):
    accept_prob: jax.Array
    num_grad_evals: jax.Array
    parts: Any


class MixtureInfo(NamedTuple):
    accept_prob: jax.Array
    num_grad_evals: jax.Array
    parts: Any
    choice: jax.Array


def _applied_only(info, applied):
    """Boolean statistics (e.g. divergences) count only for the proposal that was applied."""
    return jax.tree.map(lambda v: v & applied if v.dtype == jnp.bool_ else v, info)


def _combine(state, new_parts, infos, z, pe, grad):
    grad_evals = sum(s.grad_evals for s in new_parts)
    info = CombinedInfo(
        jnp.mean(jnp.stack([jnp.asarray(i.accept_prob, jnp.float32) for i in infos])),
        grad_evals - state.grad_evals,
        tuple(infos),
    )
    return MCMCState(state.i + 1, z, pe, grad, tuple(new_parts), grad_evals), info


def _shared_kernel(kernels, step, uses_gradient, refresh_on_handover=False):
    """A kernel whose parts all live on the full position (cycle, mixture, repeat)."""

    def init(key, z):
        parts = tuple(k.init(kk, z) for k, kk in zip(kernels, jax.random.split(key, len(kernels))))
        last = parts[-1]
        grad_evals = sum(s.grad_evals for s in parts)
        return MCMCState(jnp.array(0), z, last.potential_energy, last.z_grad, parts, grad_evals)

    def refresh(state, z):
        last = kernels[-1].refresh(state.adapt[-1], z)
        parts = state.adapt[:-1] + (last,)
        grad_evals = sum(s.grad_evals for s in parts)
        return state._replace(
            z=z, potential_energy=last.potential_energy, z_grad=last.z_grad,
            adapt=parts, grad_evals=grad_evals,
        )  # fmt: skip

    return Kernel(init, step, refresh, uses_gradient, refresh_on_handover=refresh_on_handover)


def cycle_kernels(kernels):
    """Run every kernel once per step, in order."""
    valid_out = kernels[-1].uses_gradient

    def step(key, state):
        z, pe, grad, valid = state.z, state.potential_energy, state.z_grad, valid_out
        parts, infos = [], []
        for k, s, kk in zip(kernels, state.adapt, jax.random.split(key, len(kernels))):
            s, info = k.step(kk, handover(k, s, z, pe, grad, valid))
            z, pe, grad, valid = s.z, s.potential_energy, s.z_grad, k.uses_gradient
            parts.append(s)
            infos.append(info)
        return _combine(state, parts, infos, z, pe, grad)

    return _shared_kernel(kernels, step, valid_out)


def mixture_kernels(probs, kernels):
    """Run one kernel per step, kernel j with probability probs[j].

    Under vectorized chains each chain picks its own kernel, so every kernel's step
    is computed for all chains and the picked one kept: the cost is the sum of the
    kernels' costs, the result exact. The parts' per-draw statistics describe every
    proposal, applied or not (boolean ones, e.g. `diverging`, only where applied);
    the stat `choice` says which part moved the chain.
    """
    valid_out = all(k.uses_gradient for k in kernels)
    probs = jnp.asarray(probs)

    def step(key, state):
        key_pick, key_step = jax.random.split(key)
        pick = jax.random.choice(key_pick, len(kernels), p=probs)
        z, pe, grad = state.z, state.potential_energy, state.z_grad
        moved = [
            k.step(key_step, handover(k, s, z, pe, grad, valid_out))
            for k, s in zip(kernels, state.adapt)
        ]
        chosen = lambda tree: jax.tree.map(lambda *xs: jnp.stack(xs)[pick], *tree)  # noqa: E731
        parts = tuple(
            jax.tree.map(lambda new, old, j=j: jnp.where(pick == j, new, old), m[0], s)
            for j, (m, s) in enumerate(zip(moved, state.adapt))
        )
        z, pe = chosen([m[0].z for m in moved]), chosen([m[0].potential_energy for m in moved])
        grad = chosen([m[0].z_grad for m in moved])
        infos = [_applied_only(m[1], pick == j) for j, m in enumerate(moved)]
        new, info = _combine(state, parts, infos, z, pe, grad)
        accept = chosen([jnp.asarray(m[1].accept_prob, jnp.float32) for m in moved])
        return new, MixtureInfo(accept, info.num_grad_evals, info.parts, pick)

    return _shared_kernel(kernels, step, valid_out)


def repeat_kernel(kernel, times):
    """Run `kernel` `times` times per step (a scan, compiled once)."""

    def step(key, state):
        # from the position, potential and gradient handed over to this kernel (by a
        # combinator around it), which its part's state does not hold yet
        (inner,) = state.adapt
        inner = inner._replace(
            z=state.z, potential_energy=state.potential_energy, z_grad=state.z_grad
        )

        def body(s, k):
            return kernel.step(k, s)

        inner, infos = jax.lax.scan(body, inner, jax.random.split(key, times))
        last = jax.tree.map(lambda x: x[-1], infos)
        new, info = _combine(state, [inner], [last], inner.z, inner.potential_energy, inner.z_grad)
        return new, info._replace(accept_prob=jnp.mean(infos.accept_prob))

    return _shared_kernel([kernel], step, kernel.uses_gradient, kernel.refresh_on_handover)


def blocks_kernel(logdensity, parts, num_warmup):
    """Gibbs over blocks of sites: each block's kernel moves its sites, the rest held fixed.

    A block's kernel is rebuilt each step on the conditional density at the current
    position (cheap: it is Python that runs while tracing), and its own state
    (adaptation included) persists between steps.
    """

    def kernel_of(names, method, z):
        view = logdensity.restrict(names, z)
        return view, method.kernel(view, num_warmup)

    def init(key, z):
        subs = []
        for (names, method), kk in zip(parts, jax.random.split(key, len(parts))):
            view, k = kernel_of(names, method, z)
            subs.append(k.init(kk, z[view.indices]))
        return MCMCState(
            jnp.array(0), z, logdensity.potential(z), jnp.zeros_like(z), tuple(subs),
            sum(s.grad_evals for s in subs),
        )  # fmt: skip

    def step(key, state):
        z, pe = state.z, state.potential_energy
        subs, infos = [], []
        for (names, method), s, kk in zip(parts, state.adapt, jax.random.split(key, len(parts))):
            view, k = kernel_of(names, method, z)
            s = handover(k, s, z[view.indices], pe, jnp.zeros(view.size), False)
            s, info = k.step(kk, s)
            z, pe = view.embed(s.z), s.potential_energy
            subs.append(s)
            infos.append(info)
        return _combine(state, subs, infos, z, pe, jnp.zeros_like(z))

    def refresh(state, z):
        return state._replace(z=z, potential_energy=logdensity.potential(z))

    return Kernel(init, step, refresh, False)


@dataclass(frozen=True)
class Cycle(MCMCMethod):
    """Each step runs every method's kernel once, in order."""

    methods: tuple = ()
    init: str = "uniform"

    def check(self, logdensity):
        for m in self.methods:
            m.check(logdensity)

    def kernel(self, logdensity, num_warmup):
        return cycle_kernels([m.kernel(logdensity, num_warmup) for m in self.methods])


@dataclass(frozen=True)
class Mixture(MCMCMethod):
    """Each step runs one method's kernel, picked at random with the given weights."""

    weighted: tuple = ()
    init: str = "uniform"

    def check(self, logdensity):
        for _, m in self.weighted:
            m.check(logdensity)

    def kernel(self, logdensity, num_warmup):
        # a kernel picked with probability p steps about p * num_warmup times during warmup
        kernels = [
            m.kernel(logdensity, max(1, round(p * num_warmup)) if num_warmup else 0)
            for p, m in self.weighted
        ]
        return mixture_kernels([p for p, _ in self.weighted], kernels)


@dataclass(frozen=True)
class Repeat(MCMCMethod):
    """Each step runs one method's kernel `times` times."""

    method: MCMCMethod = None
    times: int = 1
    init: str = "uniform"

    def check(self, logdensity):
        self.method.check(logdensity)

    def kernel(self, logdensity, num_warmup):
        return repeat_kernel(self.method.kernel(logdensity, num_warmup * self.times), self.times)


@dataclass(frozen=True)
class Blocks(MCMCMethod):
    """Gibbs over blocks: ((site names), method) pairs, each block moved by its method."""

    parts: tuple = ()
    init: str = "uniform"

    def check(self, logdensity):
        named = [n for names, _ in self.parts for n in names]
        sites = logdensity.sites
        unknown = [n for n in named if n not in sites]
        if unknown:
            raise ModelError(
                f"blocks: {logdensity.model.name} has no latent site(s) {unknown}"
                f"{did_you_mean(unknown[0], sites)}; latent sites are {list(sites)}"
            )
        missing = [n for n in sites if n not in named]
        if missing:
            discrete = [n for n in missing if sites[n].is_discrete]
            continuous = [n for n in missing if not sites[n].is_discrete]
            example = ", ".join(
                f"{tuple(names)!r}: ppl.mcmc.{method}()"
                for names, method in ((discrete, "DiscreteGibbs"), (continuous, "NUTS"))
                if names
            )
            raise ModelError(
                f"blocks: latent site(s) {missing} are in no block; add them, e.g. "
                f"blocks({{..., {example}}})"
            )
        z = jnp.zeros(logdensity.size)
        for names, method in self.parts:
            method.check(logdensity.restrict(names, z))

    def kernel(self, logdensity, num_warmup):
        return blocks_kernel(logdensity, self.parts, num_warmup)


def _method(m, where):
    if not isinstance(m, MCMCMethod):
        raise OptionError(
            f"{where}: expected an MCMC method object such as ppl.mcmc.NUTS(), got {m!r}"
        )
    if m.sets_init():
        raise OptionError(
            f"{where}: {type(m).__name__}(init={m.init!r}) would not be used: the combined method "
            f"starts the chains; give init to it, e.g. {where}(..., init={m.init!r})"
        )
    return m


def cycle(*methods, init="uniform"):
    """A method that runs each of `methods` once per step, in order (`init`: the
    chains' starting values, as for NUTS)."""
    if not methods:
        raise OptionError("cycle: give at least one method, e.g. cycle(RWMH(), NUTS())")
    return Cycle(tuple(_method(m, "cycle") for m in methods), init)


def mixture(weighted, *more, init="uniform"):
    """A method that runs one of the methods per step: `[(p1, method1), (p2, method2), ...]`
    (weights relative: they are divided by their sum)."""
    example = "e.g. mixture([(0.9, NUTS()), (0.1, RWMH())])"
    if more:
        raise OptionError(f"mixture: give one list of (weight, method) pairs, {example}")
    pairs = list(weighted) if isinstance(weighted, (list, tuple)) else None
    if pairs is None or not all(isinstance(x, (list, tuple)) and len(x) == 2 for x in pairs):
        raise OptionError(f"mixture: expected a list of (weight, method) pairs, {example}")
    weighted = [(_weight(p), _method(m, "mixture")) for p, m in pairs]
    total = sum(p for p, _ in weighted)
    if not weighted or any(p < 0 for p, _ in weighted) or total <= 0:
        raise OptionError("mixture: weights must be non-negative with a positive sum")
    return Mixture(tuple((p / total, m) for p, m in weighted), init)


def _weight(p):
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise OptionError(f"mixture: weight {p!r} must be a number")
    return float(p)


def repeat(method, times, init="uniform"):
    """A method that runs `method` `times` times per step."""
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        raise OptionError(f"repeat: times={times!r} must be an integer >= 1")
    return Repeat(_method(method, "repeat"), times, init)


def blocks(mapping, init="uniform"):
    """Gibbs over blocks of sites: `{"z": DiscreteGibbs(), ("mu", "sigma"): NUTS()}`.

    Every latent site must be in exactly one block; each step updates the blocks
    in order, each conditional on the current values of the others.
    """
    if not isinstance(mapping, dict):
        raise OptionError(
            f"blocks: expected a dict {{site or tuple of sites: method}}, e.g. "
            f"blocks({{'z': DiscreteGibbs(), ('mu', 'sigma'): NUTS()}}), got {type(mapping).__name__}"
        )
    parts, seen = [], set()
    for names, method in mapping.items():
        names = (names,) if isinstance(names, str) else tuple(names)
        twice = seen & set(names)
        if twice:
            raise OptionError(f"blocks: site(s) {sorted(twice)} appear in more than one block")
        seen |= set(names)
        parts.append((names, _method(method, "blocks")))
    if not parts:
        raise OptionError("blocks: give at least one block")
    return Blocks(tuple(parts), init)
