"""Stochastic normalizing flows (Wu, Köhler & Noé 2020) as a guide over the model's
unconstrained space.

A draw runs a sequence of layers forward from a base draw z_0 = loc + scale ⊙ ε,
ε ~ N(0, I). Each layer is either a deterministic bijector from `ppl.flows` or a
stochastic MCMC layer (`Langevin`, `RandomWalkMH`) whose transitions leave invariant the
annealed density π_t(z) ∝ q_0(z)^(1-β_t) p(x, z)^β_t, with q_0 = N(loc, diag(scale²))
and p(x, z) the model's log joint on the unconstrained space (Jacobians included).

The path's importance weight (the paper's eq. for w(z_0 → z_T)) is

    log w = log p(x, z_T) - log q_0(z_0) + Σ_flow log|det J_t| + Σ_stochastic ΔS_t,
    ΔS_t = log b_t(z_t → z_{t-1}) - log f_t(z_{t-1} → z_t),

with f_t the forward transition and b_t the backward one. Each transition here is:

- Metropolis–Hastings (`Langevin(metropolis=True)`, i.e. MALA, and `RandomWalkMH`):
  the kernel is reversible w.r.t. π_t, and we take it as its own backward kernel, so by
  detailed balance π_t(a) f(a → b) = π_t(b) f(b → a) and
  ΔS_t = log π_t(z_{t-1}) - log π_t(z_t) = U_t(z_t) - U_t(z_{t-1}) (U_t = -log π_t,
  its normaliser cancels); a rejected move gives ΔS_t = 0, consistently with the atom of
  the kernel at z_{t-1}. The proposals come from `ppl.mcmc.mala.mala_proposal` and
  `ppl.mcmc.rwmh.rwmh_proposal` (identity preconditioner).
- unadjusted Langevin (`Langevin(metropolis=False)`): z_t = z_{t-1} - (h²/2) ∇U_t(z_{t-1})
  + h ξ with backward kernel the same Euler step from z_t, so
  ΔS_t = log N(z_{t-1}; z_t - (h²/2) ∇U_t(z_t), h²) - log N(z_t; z_{t-1} - (h²/2)
  ∇U_t(z_{t-1}), h²) = ½|ξ|² - ½|ξ̃|², ξ̃ = (z_{t-1} - z_t + (h²/2) ∇U_t(z_t)) / h.

Because every backward kernel is a normalised conditional density, E[w] = Z = p(x) over
the forward paths: exp(log w) is an unbiased estimate of the evidence and E[log w] <= log Z.

As a guide, the draw's `log_q` is log w's complement: log_q = log p(x, z_T) - log w
(on the model's constrained space, the constraint's Jacobian added as usual), so the
`ppl.vi.ELBO` of an `SNFGuide` is E[log w], `ppl.vi.IWAE` is E log mean_k w_k, and
`ppl.vi.SVI`'s `post.log_evidence` is log mean exp(log w) over many paths. Note that
`log_q` is not a density of z_T (that has no closed form): it is only valid at the
guide's own draws, so objectives that score the guide at other values (wake-sleep,
path gradients) do not apply.

Gradients: reparameterised through the base draw, the bijectors and the proposals (the
Langevin drift is differentiated, second derivatives of log p included); the MH
accept/reject decisions are held fixed (no score-function term for them), as in the
paper, so the gradient of E[log w] is slightly biased where acceptance depends on the
parameters. Step sizes are learned too with `learn_step_size=True`.

>>> # m: a bound model, e.g. ppl.examples.eight_schools(sigma, y)
>>> snf = ppl.flows.SNFGuide([ppl.flows.Affine(), ppl.flows.Langevin(0.3, num_steps=2),
...                           ppl.flows.Planar(), ppl.flows.Langevin(0.3, num_steps=2)])
>>> post = ppl.infer(m, method=ppl.vi.SVI(guide=snf, objective=ppl.vi.ELBO()))
>>> post.log_evidence                  # log mean exp(log w): unbiased in w for p(x)
"""

import numbers
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
from numpyro.distributions import constraints
from numpyro.infer.hmc_util import IntegratorState
from numpyro.primitives import prng_key

from ppl import dist
from ppl.core import handlers
from ppl.core.model import BoundModel
from ppl.core.primitives import deterministic, param, sample
from ppl.errors import OptionError
from ppl.flows.bijector import Bijector, check_positive_int
from ppl.flows.guide import PointGivenEps, check_event_size, register
from ppl.mcmc.mala import mala_proposal
from ppl.mcmc.rwmh import rwmh_proposal
from ppl.vi.guides import (
    LOCAL_ADVICE,
    AutoGuide,
    _check_scale,
    check_continuous,
    emit_constrained,
    prior_median,
)
from ppl.vi.program import draw, objective, score

__all__ = ["StochasticLayer", "Langevin", "RandomWalkMH", "SNFGuide", "SNFPath"]

sg = jax.lax.stop_gradient


# ----- stochastic layers ------------------------------------------------------------


class StochasticLayer:
    """An MCMC layer: `num_steps` transitions that leave π_t invariant (see the module
    docstring), each returning its contribution ΔS_t to log w."""

    step_size: float
    num_steps: int
    beta: float | None
    learn_step_size: bool

    def check(self):
        name = type(self).__name__
        h = self.step_size
        if isinstance(h, bool) or not isinstance(h, numbers.Real) or not h > 0:
            raise OptionError(f"{name}: step_size={h!r} must be a positive number")
        check_positive_int(name, "num_steps", self.num_steps)
        b = self.beta
        if b is not None and (isinstance(b, bool) or not isinstance(b, numbers.Real)):
            raise OptionError(f"{name}: beta={b!r} must be None or a number in [0, 1]")
        if b is not None and not 0 <= b <= 1:
            raise OptionError(f"{name}: beta={b!r} must be in [0, 1] (π ∝ q0^(1-β) p^β)")

    def init(self, key, dim):
        if self.learn_step_size:
            return {"log_step_size": jnp.log(jnp.asarray(self.step_size, dtype=float))}
        return ()

    def step_size_of(self, params):
        return jnp.exp(params["log_step_size"]) if self.learn_step_size else self.step_size

    def transition(self, params, key, z, potential):
        """`num_steps` moves from z: (z_T, Σ ΔS, mean acceptance)."""
        h = self.step_size_of(params)
        value_and_grad = jax.value_and_grad(potential)

        def one(carry, k):
            z, pe, grad = carry
            z, pe, grad, delta, accept = self.move(k, z, pe, grad, h, potential)
            return (z, pe, grad), (delta, accept)

        pe, grad = value_and_grad(z)
        keys = jax.random.split(key, self.num_steps)
        (z, _, _), (delta, accept) = jax.lax.scan(one, (z, pe, grad), keys)
        return z, jnp.sum(delta), jnp.mean(accept)


def _metropolis(propose, key, z, pe, grad, h):
    """One MH move by a ppl.mcmc proposal (identity preconditioner); ΔS = U(z') - U(z)."""
    ones = jnp.ones_like(z)
    new, info = propose(key, IntegratorState(z, None, pe, grad), h, ones, ones)
    accepted = sg(info.accepted)
    delta = jnp.where(accepted, new.potential_energy - pe, 0.0)
    return new.z, new.potential_energy, new.z_grad, delta, info.accept_prob


@dataclass(frozen=True)
class Langevin(StochasticLayer):
    """Langevin moves z' = z - (h²/2) ∇U_t(z) + h ξ, with a Metropolis–Hastings
    correction (MALA, `ppl.mcmc.mala.mala_proposal`) or without (`metropolis=False`:
    unadjusted, weighted by the forward/backward transition densities).

    step_size: h. beta: the annealing exponent β_t (None: spaced evenly over the
    stochastic layers, the last at 1)."""

    step_size: float = 0.1
    num_steps: int = 1
    beta: float | None = None
    metropolis: bool = True
    learn_step_size: bool = False

    def __post_init__(self):
        self.check()

    def move(self, key, z, pe, grad, h, potential):
        if self.metropolis:
            return _metropolis(mala_proposal(potential), key, z, pe, grad, h)
        xi = jax.random.normal(key, z.shape)
        z_new = z - 0.5 * h**2 * grad + h * xi
        pe_new, grad_new = jax.value_and_grad(potential)(z_new)
        xi_back = (z - z_new + 0.5 * h**2 * grad_new) / h
        delta = 0.5 * jnp.sum(xi**2) - 0.5 * jnp.sum(xi_back**2)
        return z_new, pe_new, grad_new, delta, jnp.ones(())


@dataclass(frozen=True)
class RandomWalkMH(StochasticLayer):
    """Random-walk Metropolis moves z' = z + h ξ (`ppl.mcmc.rwmh.rwmh_proposal`); no
    gradients of the target needed."""

    step_size: float = 0.5
    num_steps: int = 1
    beta: float | None = None
    learn_step_size: bool = False

    def __post_init__(self):
        self.check()

    def move(self, key, z, pe, grad, h, potential):
        return _metropolis(rwmh_proposal(potential), key, z, pe, grad, h)


# ----- the path ---------------------------------------------------------------------


class SNFPath(NamedTuple):
    """One forward path: its end z_T, Σ log|det J| + Σ ΔS (`log_det`), and the mean
    acceptance of each stochastic layer (in layer order)."""

    z: jax.Array
    log_det: jax.Array
    accept: tuple


def _betas(layers):
    """β_t per layer (None for bijectors): given, or t/n over the n stochastic layers."""
    stochastic = [i for i, layer in enumerate(layers) if isinstance(layer, StochasticLayer)]
    out = [None] * len(layers)
    for t, i in enumerate(stochastic, start=1):
        beta = layers[i].beta
        out[i] = t / len(stochastic) if beta is None else float(beta)
    return tuple(out)


def run_path(layers, weights, loc, scale, eps, log_p, key):
    """Run the layers forward from z_0 = loc + scale ε; `log_p(z)` is the target's log
    density (unnormalised) on the unconstrained space."""
    z0 = loc + scale * eps
    base = dist.Normal(loc, scale).to_event(1)
    z, total, accept = z0, jnp.zeros(()), []
    keys = jax.random.split(key, len(layers))
    for layer, w, beta, k in zip(layers, weights, _betas(layers), keys):
        if isinstance(layer, Bijector):
            z, log_det = layer.forward_and_log_det(w, z)
        else:

            def potential(x, beta=beta):
                return -((1.0 - beta) * base.log_prob(x) + beta * log_p(x))

            z, log_det, rate = layer.transition(w, k, z, potential)
            accept.append(rate)
        total = total + log_det
    return SNFPath(z, total, tuple(accept))


class _PathEnd(PointGivenEps):
    """The end z_T of a path given its base draw ε and transition noise: a point mass
    scored by -Σ log scale - Σ log|det J| - Σ ΔS, so that with log N(ε) (the ε site)
    the draw's log q is log p(x, z_T) - log w. Valid at its own draw only."""

    def __init__(self, z, log_q_given_eps):
        self.u, self.log_q_given_eps = z, log_q_given_eps
        super().__init__(batch_shape=(), event_shape=jnp.shape(z)[-1:])

    def path_log_prob(self, value):
        raise OptionError(
            "SNFGuide: path gradients need log q as a function of the draw, which a "
            "stochastic normalizing flow does not have; use path_gradient=False"
        )


# ----- the guide --------------------------------------------------------------------


def _as_layers(layers):
    layers = tuple(layers) if isinstance(layers, (list, tuple)) else (layers,)
    bad = [x for x in layers if not isinstance(x, (Bijector, StochasticLayer))]
    if not layers or bad:
        raise OptionError(
            f"SNFGuide: layers must be a non-empty list of ppl.flows bijectors and "
            f"stochastic layers (ppl.flows.Langevin, RandomWalkMH); got {bad or layers!r}"
        )
    return layers


@dataclass(frozen=True)
class SNFGuide(AutoGuide):
    """`ppl.flows.SNFGuide(layers, init_scale=1.0)`: a stochastic normalizing flow over the
    model's unconstrained space (see the module docstring). Params: "auto_loc",
    "auto_scale" (the base Gaussian q_0) and "auto_snf/<layer>/..." (bijector weights,
    learned step sizes)."""

    layers: tuple
    init_scale: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "layers", _as_layers(self.layers))
        _check_scale("SNFGuide", self.init_scale)
        for layer in self.layers:
            if isinstance(layer, Bijector) and layer.context_size:
                raise OptionError(
                    f"SNFGuide: {type(layer).__name__} reads a context of size "
                    f"{layer.context_size}, but an automatic guide has none"
                )

    def bind(self, model):
        ld = model.log_density()
        check_continuous(model, ld, "SNFGuide")
        ld.require_global_sites("SNFGuide (an automatic guide)", LOCAL_ADVICE)
        for layer in self.layers:
            size = getattr(layer, "event_size", None)
            check_event_size(model, ld, f"SNFGuide's {type(layer).__name__} layer", size)
        return BoundModel(_SNFProgram(self), (ld,))

    def init_weights(self, dim):
        keys = jax.random.split(jax.random.key(0), len(self.layers))
        return tuple(layer.init(k, dim) for layer, k in zip(self.layers, keys))

    # ----- evidence -----------------------------------------------------------------

    def log_weights(self, model, params, key, num_samples):
        """log w of `num_samples` independent paths at the (unconstrained) `params`."""
        return _log_weights(num_samples, model, self.bind(model), params, key)

    def log_evidence(self, model, params, key, num_samples=4096):
        """(log mean exp(log w), its standard error by the delta method): exp of the
        first is an unbiased estimate of p(x)."""
        log_w = self.log_weights(model, params, key, num_samples)
        top = jnp.max(log_w)
        w = jnp.exp(log_w - top)
        return top + jnp.log(jnp.mean(w)), jnp.std(w) / (jnp.sqrt(w.size) * jnp.mean(w))


@dataclass(frozen=True)
class _SNFProgram:
    """The guide program (hashable, so compiled code is shared)."""

    spec: SNFGuide

    def __call__(self, ld):
        spec, d = self.spec, ld.size
        loc = param("auto_loc", prior_median(ld))
        scale = param("auto_scale", jnp.full(d, spec.init_scale), constraint=constraints.positive)
        weights = register("auto_snf", spec.init_weights(d))
        eps = sample("_auto_eps", dist.Normal(0.0, 1.0).expand([d]).to_event(1))
        key = prng_key()
        with handlers.block():  # the model runs inside: its sites are not the guide's
            path = run_path(spec.layers, weights, loc, scale, eps, ld, key)
        log_q = -jnp.sum(jnp.log(scale)) - path.log_det
        u = sample("_auto_u", _PathEnd(path.z, log_q))
        emit_constrained(ld, u)
        if path.accept:
            deterministic("_snf_accept", jnp.stack(path.accept))


@objective
def _path_log_weight(model, guide):
    d = draw(guide)  # (no gradient is taken of it)
    return score(model, d) - d.log_q


_LOG_WEIGHT = _path_log_weight()


@jax.jit
def _log_weights_impl(keys, model, guide, params):
    def one(k):
        return _LOG_WEIGHT.surrogate(k, params, model, guide, jnp.zeros(())).value

    return jax.lax.map(one, keys, batch_size=min(keys.shape[0], 256))


def _log_weights(num_samples, model, guide, params, key):
    return _log_weights_impl(jax.random.split(key, num_samples), model, guide, params)
