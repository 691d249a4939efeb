"""The four 2-D test energies of Rezende & Mohamed (2015, table 1), p(z) ∝ exp(-U(z)),
and their log normalizers by quadrature on a grid.

U2–U4 are not normalizable along z1 as written (their density is constant in z1 far
out), so here they get the soft box (z1 / 4)^8, which leaves [-4, 4] untouched in
effect: the plotted region of the paper.
"""

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

__all__ = ["U1", "U2", "U3", "U4", "ENERGIES", "log_normalizer", "grid"]


def _w1(z):
    return jnp.sin(2 * jnp.pi * z[..., 0] / 4)


def _box(z):
    return (z[..., 0] / 4) ** 8


def U1(z):
    ring = 0.5 * ((jnp.linalg.norm(z, axis=-1) - 2) / 0.4) ** 2
    modes = jnp.stack([-0.5 * ((z[..., 0] - 2) / 0.6) ** 2, -0.5 * ((z[..., 0] + 2) / 0.6) ** 2])
    return ring - logsumexp(modes, axis=0)


def U2(z):
    return 0.5 * ((z[..., 1] - _w1(z)) / 0.4) ** 2 + _box(z)


def U3(z):
    w2 = 3 * jnp.exp(-0.5 * ((z[..., 0] - 1) / 0.6) ** 2)
    a = -0.5 * ((z[..., 1] - _w1(z)) / 0.35) ** 2
    b = -0.5 * ((z[..., 1] - _w1(z) + w2) / 0.35) ** 2
    return -logsumexp(jnp.stack([a, b]), axis=0) + _box(z)


def U4(z):
    w3 = 3 / (1 + jnp.exp(-(z[..., 0] - 1) / 0.3))
    a = -0.5 * ((z[..., 1] - _w1(z)) / 0.4) ** 2
    b = -0.5 * ((z[..., 1] - _w1(z) + w3) / 0.35) ** 2
    return -logsumexp(jnp.stack([a, b]), axis=0) + _box(z)


ENERGIES = {"U1": U1, "U2": U2, "U3": U3, "U4": U4}


def grid(limit=6.0, num=601):
    """Points (num², 2) of a square grid on [-limit, limit]² and the cell area."""
    axis = np.linspace(-limit, limit, num)
    z1, z2 = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([z1.ravel(), z2.ravel()], axis=-1), (axis[1] - axis[0]) ** 2


def log_normalizer(energy, limit=6.0, num=601):
    """log ∫ exp(-U(z)) dz by the midpoint rule on [-limit, limit]² (the densities are
    negligible outside; the error is far below 1e-3 at the default 601² points)."""
    points, area = grid(limit, num)
    log_f = -np.asarray(energy(jnp.asarray(points)), np.float64)
    top = log_f.max()
    return float(top + np.log(np.sum(np.exp(log_f - top)) * area))
