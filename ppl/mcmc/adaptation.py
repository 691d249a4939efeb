"""Stan-style windowed adaptation of step size and mass matrix, for any kernel.

A kernel here is a *proposal*: `propose(key, point, step_size, inverse_mass_matrix,
mass_matrix_sqrt) -> (point, info)` with `info.accept_prob`. `adaptive()` wraps
it into a `Kernel` whose state carries NumPyro's warmup adapter (dual
averaging on the step size, Welford estimates of the mass matrix in doubling
windows), updated during the first `num_warmup` steps and frozen after.
"""

import jax
import jax.numpy as jnp
from numpyro.infer.hmc_util import (
    IntegratorState,
    dual_averaging,
    euclidean_kinetic_energy,
    velocity_verlet,
    warmup_adapter,
)

from ppl.core import draws
from ppl.core.model import int_key
from ppl.mcmc.kernel import Kernel, MCMCState, evaluator, refresher

__all__ = ["adaptive", "point_at"]


def point_at(state):
    return IntegratorState(state.z, None, state.potential_energy, state.z_grad)


def initial_step_size(potential, point, step_size, key, accepted=False):
    """A first step size by Hoffman & Gelman's heuristic (2014, Algorithm 4, as Stan and
    NumPyro): double or halve `step_size` until one leapfrog step from `point` with unit
    mass crosses an acceptance probability of 0.8. One momentum, drawn before the loop
    (NumPyro draws one per try): no random-number code inside it to compile.

    The heuristic returns the step at the crossing, which after doublings is the first
    one rejected: a start for dual averaging. `accepted=True` returns the last accepted
    one instead, for a run with no warmup to adapt it."""
    z = point.z
    r = draws.normal(key, z.shape[0], z.dtype)
    unit = jnp.ones_like(z)
    energy = point.potential_energy + euclidean_kinetic_energy(unit, r)
    _, leapfrog = velocity_verlet(potential, euclidean_kinetic_energy)
    finfo = jnp.finfo(z.dtype)

    def accepts(eps):  # exp(-ΔH) > 0.8; a NaN energy (divergence) halves the step
        end = leapfrog(eps, unit, IntegratorState(z, r, point.potential_energy, point.z_grad))
        return jnp.log(0.8) < energy - (
            end.potential_energy + euclidean_kinetic_energy(unit, end.r)
        )

    def body(state):
        eps, _, direction = state
        eps = 2.0**direction * eps
        return eps, direction, jnp.where(accepts(eps), 1, -1)

    def cond(state):
        eps, last, direction = state
        in_range = ((eps > finfo.tiny) | (direction >= 0)) & ((eps < finfo.max) | (direction <= 0))
        return in_range & ((last == 0) | (direction == last))

    eps, last, _ = jax.lax.while_loop(cond, body, (jnp.asarray(step_size, z.dtype), 0, 0))
    return jnp.where(accepted & (last > 0), eps / 2, eps)


def adaptive(
    propose,
    potential,
    num_warmup,
    *,
    target_accept,
    step_size=1.0,
    dense_mass=False,
    adapt_step_size=True,
    adapt_mass_matrix=True,
    uses_gradient=True,
    tune_initial_step_size=True,
    restart_step_size=True,
):
    """A `Kernel` running `propose` with windowed adaptation during warmup.

    With `num_warmup=0` nothing is adapted, but the initial step size is still
    found by the heuristic (the largest step it saw accepted) unless
    `adapt_step_size=False`: an untuned step of 1.0 can exceed the leapfrog stability
    limit and freeze a chain (NumPyro keeps 1.0 unless `find_heuristic_step_size=True`).

    The heuristic runs once, at init, not again at each window end as in NumPyro:
    chains are vmapped, so every `cond` on a per-chain counter runs both branches,
    and a step-size search inside the step would cost gradients at every iteration.
    Dual averaging restarts from the current step size at each window end instead.

    `restart_step_size=False` keeps one dual-averaging run through all of warmup.
    Random-walk kernels want that: their acceptance probabilities are so noisy that
    50 steps of dual averaging after the last window (Stan's end buffer) leave the
    step size off by up to 3x from chain to chain, and the adapted covariance already
    sets the proposal's scale, so the step size need not restart when it changes.
    """

    adapt_init, adapt_update = warmup_adapter(
        num_warmup,
        find_reasonable_step_size=None,
        adapt_step_size=adapt_step_size,
        adapt_mass_matrix=adapt_mass_matrix,
        dense_mass=dense_mass,
        target_accept_prob=target_accept,
    )

    _, ss_update = dual_averaging()  # the defaults warmup_adapter uses

    def update(i, accept_prob, point, a):
        # keeping the adapter's key as it was leaves the split it makes at each window's
        # end unused, so it is not compiled (its step-size search is off)
        new = adapt_update(i, accept_prob, point, a)._replace(rng_key=a.rng_key)
        if restart_step_size or not adapt_step_size:
            return new
        ss = ss_update(target_accept - accept_prob, a.ss_state)
        log_step = jnp.where(i == num_warmup - 1, ss[1], ss[0])  # the average at the end
        return new._replace(step_size=jnp.exp(log_step), ss_state=ss)

    evaluate = evaluator(potential, uses_gradient)

    def init(key, z):
        pe, grad = evaluate(z)
        point = IntegratorState(z, None, pe, grad)
        start_step = step_size
        if adapt_step_size and tune_initial_step_size:  # the mass matrix starts at I
            start_step = initial_step_size(potential, point, step_size, key, num_warmup == 0)
        # the adapter only splits and keeps its key (its step-size search is off): it
        # gets a constant one, which leaves no random-number code to compile
        adapt = adapt_init(point, int_key(0), step_size=start_step, mass_matrix_size=z.shape[0])
        return MCMCState(jnp.array(0), z, pe, grad, adapt, jnp.array(int(uses_gradient)))

    def step_at(key, state, i):
        a = state.adapt
        point, info = propose(
            key, point_at(state), a.step_size, a.inverse_mass_matrix, a.mass_matrix_sqrt
        )
        if isinstance(i, int):  # a fixed step index (SMC moves): one branch, no other compiled
            adapt = update(state.i, info.accept_prob, point, a) if i < num_warmup else a
        else:
            adapt = jax.lax.cond(
                i < num_warmup,
                lambda: update(state.i, info.accept_prob, point, a),
                lambda: a,
            )
        new = MCMCState(
            state.i + 1, point.z, point.potential_energy, point.z_grad, adapt,
            state.grad_evals + info.num_grad_evals,
        )  # fmt: skip
        return new, info

    def step(key, state):
        return step_at(key, state, state.i)

    return Kernel(init, step, refresher(evaluate, uses_gradient), uses_gradient, step_at)
