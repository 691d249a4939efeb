"""The MCMC kernel contract that lets kernels compose.

Every kernel is an `Algorithm` (`init(key, z)`, `step(key, state)`) over a flat
position, plus `refresh(state, z)`, which moves a state to a new position and
recomputes what it caches there. All kernel states are `MCMCState`s, so a
combinator can hand one kernel's position, potential and gradient to the next
(`handover`) without evaluating the density again when nothing changed.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["MCMCState", "Kernel", "handover", "evaluator", "plain_kernel"]


class MCMCState(NamedTuple):
    """One chain: iteration, position, potential (-log density) and its gradient,
    the kernel's own state (`adapt`: adaptation, or sub-kernel states), gradient count."""

    i: jax.Array
    z: jax.Array
    potential_energy: jax.Array
    z_grad: jax.Array
    adapt: Any
    grad_evals: jax.Array


class Kernel(NamedTuple):
    """An Algorithm on one potential, plus `refresh(state, z) -> state` and whether its
    states carry a valid gradient (`uses_gradient`).

    `step_at(key, state, i)`, where given, is `step` told the step index `i` shared by
    all chains, so a phase switch (warmup or not) is a real branch under `vmap`
    instead of a select that computes both sides.

    `refresh_on_handover`: the state caches more than the potential at its position
    (particle MCMC caches a likelihood estimate), so a position handed over by another
    kernel must always go through `refresh`.
    """

    init: Any
    step: Any
    refresh: Any
    uses_gradient: bool
    step_at: Any = None
    refresh_on_handover: bool = False


def evaluator(potential, uses_gradient):
    """z -> (potential, gradient or zeros): what a kernel caches at its position."""

    def evaluate(z):
        if uses_gradient:
            return jax.value_and_grad(potential)(z)
        return potential(z), jnp.zeros_like(z)

    return evaluate


def refresher(evaluate, uses_gradient):
    def refresh(state, z):
        pe, grad = evaluate(z)
        return state._replace(
            z=z, potential_energy=pe, z_grad=grad,
            grad_evals=state.grad_evals + int(uses_gradient),
        )  # fmt: skip

    return refresh


def handover(kernel, state, z, potential_energy, z_grad, grad_valid):
    """`state` of `kernel` placed at `z`, reusing the cached potential (and gradient where
    valid) instead of evaluating the density again."""
    if (kernel.uses_gradient and not grad_valid) or kernel.refresh_on_handover:
        return kernel.refresh(state, z)
    return state._replace(z=z, potential_energy=potential_energy, z_grad=z_grad)


def plain_kernel(transition, potential, uses_gradient=False):
    """A kernel with nothing to adapt: `transition(key, state) -> (state, info)`."""
    evaluate = evaluator(potential, uses_gradient)

    def init(key, z):
        pe, grad = evaluate(z)
        return MCMCState(jnp.array(0), z, pe, grad, (), jnp.array(int(uses_gradient)))

    def step(key, state):
        new, info = transition(key, state)
        return new._replace(i=state.i + 1), info

    return Kernel(init, step, refresher(evaluate, uses_gradient), uses_gradient)


def times(matrix, v):
    """matrix @ v for a dense matrix, elementwise for a diagonal one (a vector)."""
    return matrix @ v if matrix.ndim == 2 else matrix * v
