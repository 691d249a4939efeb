"""Stan-style windowed adaptation of step size and mass matrix, for any kernel.

A kernel here is a *proposal*: `propose(key, point, step_size, inverse_mass_matrix,
mass_matrix_sqrt) -> (point, info)` with `info.accept_prob`. `adaptive()` wraps
it into a `Kernel` whose state carries NumPyro's warmup adapter (dual
averaging on the step size, Welford estimates of the mass matrix in doubling
windows), updated during the first `num_warmup` steps and frozen after.
"""

import jax
import jax.numpy as jnp
from numpyro.infer.hmc import momentum_generator
from numpyro.infer.hmc_util import (
    IntegratorState,
    dual_averaging,
    euclidean_kinetic_energy,
    find_reasonable_step_size,
    warmup_adapter,
)

from ppl.mcmc.kernel import Kernel, MCMCState, evaluator, refresher

__all__ = ["adaptive", "point_at"]


def point_at(state):
    return IntegratorState(state.z, None, state.potential_energy, state.z_grad)


def _mass_sqrt(z, inverse_mass_matrix):
    if inverse_mass_matrix.ndim == 1:
        return jnp.reciprocal(jnp.sqrt(inverse_mass_matrix))
    inverse_chol = jnp.linalg.cholesky(inverse_mass_matrix)
    return jax.scipy.linalg.solve_triangular(inverse_chol, jnp.eye(z.shape[0]), lower=True).T


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
    found by NumPyro's heuristic (as NumPyro does) unless `adapt_step_size=False`:
    an untuned step of 1.0 can exceed the leapfrog stability limit and freeze a chain.

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

    def find_step_size(step_size, inverse_mass_matrix, point, key):
        def momentum(z, inverse_mm, key):
            return momentum_generator(z, _mass_sqrt(z, inverse_mm), key)

        return find_reasonable_step_size(
            potential, euclidean_kinetic_energy, momentum, step_size,
            inverse_mass_matrix, point, key,
        )  # fmt: skip

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
        new = adapt_update(i, accept_prob, point, a)
        if restart_step_size or not adapt_step_size:
            return new
        ss = ss_update(target_accept - accept_prob, a.ss_state)
        log_step = jnp.where(i == num_warmup - 1, ss[1], ss[0])  # the average at the end
        return new._replace(step_size=jnp.exp(log_step), ss_state=ss)

    evaluate = evaluator(potential, uses_gradient)

    def init(key, z):
        pe, grad = evaluate(z)
        point = IntegratorState(z, None, pe, grad)
        key_adapt, key_step = jax.random.split(key)
        start_step = step_size
        if adapt_step_size and tune_initial_step_size:
            identity = jnp.eye(z.shape[0]) if dense_mass else jnp.ones(z.shape[0])
            start_step = find_step_size(step_size, identity, point, key_step)
        adapt = adapt_init(point, key_adapt, step_size=start_step, mass_matrix_size=z.shape[0])
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
