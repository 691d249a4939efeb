"""Planar and radial flows (Rezende & Mohamed 2015), invertible for ANY raw parameters.

Planar: f(z) = z + û tanh(w·z + b), with û = u + (m(w·u) - w·u) w / |w|² and
m(a) = -1 + 10⁻⁴ + softplus(a), so that w·û = m(w·u) > -1: then the derivative of f along w,
1 + tanh'(·) w·û, is positive and f is a bijection. log|det| = log(1 + tanh'(w·z + b) w·û)
(matrix determinant lemma). The inverse is found along w by bisection: a = w·z solves
a + w·û tanh(a + b) = w·y, an increasing function of a, with |a - w·y| <= |w·û|.

Radial: f(z) = z + β h(r) (z - z0), h = 1 / (α + r), r = |z - z0|, with α = softplus(α̃)
> 0 and β = -α + softplus(β̃) > -α, which keeps r -> r (1 + β h(r)) increasing. Its
inverse is closed form: r solves a quadratic given |y - z0|.
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ppl.flows.bijector import Bijector

__all__ = ["Planar", "Radial", "planar_u_hat", "radial_alpha_beta"]

#: Bisection steps of the planar inverse: the bracket 2|w·û| shrinks below float precision.
BISECTION_STEPS = 60
INIT_SCALE = 0.1


#: w·û >= -1 + PLANAR_MARGIN, so the log-det stays finite in floating point too.
PLANAR_MARGIN = 1e-4


def planar_u_hat(w, u):
    """(û, w·û) with w·û = -1 + PLANAR_MARGIN + softplus(w·u) > -1."""
    wu = jnp.dot(w, u)
    m = -1.0 + PLANAR_MARGIN + jax.nn.softplus(wu)
    return u + (m - wu) * w / (jnp.dot(w, w) + 1e-12), m


@dataclass(frozen=True)
class Planar(Bijector):
    """One planar layer: params {"w": (d,), "u": (d,), "b": ()} (u is the raw ũ)."""

    has_inverse = True  # numerical (bisection along w); not differentiable in y

    def init(self, key, dim):
        self.check_size(dim)
        kw, ku = jax.random.split(key)
        return {
            "w": INIT_SCALE * jax.random.normal(kw, (dim,)),
            "u": INIT_SCALE * jax.random.normal(ku, (dim,)),
            "b": jnp.zeros(()),
        }

    def forward_and_log_det(self, params, x, context=None):
        w, b = params["w"], params["b"]
        u, wu = planar_u_hat(w, params["u"])
        a = jnp.dot(w, x) + b
        y = x + u * jnp.tanh(a)
        slope = 1.0 - jnp.tanh(a) ** 2
        return y, jnp.log1p(slope * wu)

    has_fast_score = True

    def forward_and_score(self, params, x, score, context=None):
        # J = I + slope û wᵀ, so J⁻ᵀ v = v - w slope (û·v) / (1 + slope w·û)
        w = params["w"]
        u, wu = planar_u_hat(w, params["u"])
        slope = 1.0 - jnp.tanh(jnp.dot(w, x) + params["b"]) ** 2
        v = score - self.log_det_gradient(params, x, context)
        return self.forward(params, x), v - w * slope * jnp.dot(u, v) / (1 + slope * wu)

    def inverse_and_log_det(self, params, y, context=None):
        w, b = params["w"], params["b"]
        u, wu = planar_u_hat(w, params["u"])
        wy = jnp.dot(w, y)

        def bisect(_, bracket):
            lo, hi = bracket
            mid = (lo + hi) / 2
            above = mid + wu * jnp.tanh(mid + b) > wy
            return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

        lo, hi = jax.lax.fori_loop(
            0, BISECTION_STEPS, bisect, (wy - jnp.abs(wu) - 1e-6, wy + jnp.abs(wu) + 1e-6)
        )
        a = (lo + hi) / 2  # = w·x
        x = y - u * jnp.tanh(a + b)
        slope = 1.0 - jnp.tanh(a + b) ** 2
        return x, -jnp.log1p(slope * wu)


def radial_alpha_beta(params):
    """(α > 0, β > -α) from the raw params."""
    alpha = jax.nn.softplus(params["alpha"])
    return alpha, -alpha + jax.nn.softplus(params["beta"])


def _norm(v):
    return jnp.sqrt(jnp.sum(v**2) + 1e-20)  # finite gradient at v = 0


@dataclass(frozen=True)
class Radial(Bijector):
    """One radial layer: params {"z0": (d,), "alpha": (), "beta": ()} (raw α̃, β̃)."""

    has_inverse = True

    def init(self, key, dim):
        self.check_size(dim)
        return {
            "z0": INIT_SCALE * jax.random.normal(key, (dim,)),
            "alpha": jnp.zeros(()),
            "beta": jnp.zeros(()),  # β = 0: the identity
        }

    def forward_and_log_det(self, params, x, context=None):
        alpha, beta = radial_alpha_beta(params)
        diff = x - params["z0"]
        r = _norm(diff)
        bh = beta / (alpha + r)
        d = x.shape[-1]
        log_det = (d - 1) * jnp.log1p(bh) + jnp.log1p(beta * alpha / (alpha + r) ** 2)
        return x + bh * diff, log_det

    has_fast_score = True

    def forward_and_score(self, params, x, score, context=None):
        # J = a I + c d dᵀ (symmetric), a = 1 + β h, c = β h'(r) / r, d = x - z0:
        # J⁻¹ v = (v - c d (d·v) / (a + c |d|²)) / a (Sherman-Morrison)
        alpha, beta = radial_alpha_beta(params)
        diff = x - params["z0"]
        r = _norm(diff)
        a, c = 1 + beta / (alpha + r), -beta / ((alpha + r) ** 2 * r)
        v = score - self.log_det_gradient(params, x, context)
        out = (v - c * diff * jnp.dot(diff, v) / (a + c * jnp.dot(diff, diff))) / a
        return self.forward(params, x), out

    def inverse_and_log_det(self, params, y, context=None):
        alpha, beta = radial_alpha_beta(params)
        diff = y - params["z0"]
        r_y = _norm(diff)
        # r_y = r (α + β + r) / (α + r)  <=>  r² + (α + β - r_y) r - α r_y = 0
        c = alpha + beta - r_y
        root = jnp.sqrt(c**2 + 4 * alpha * r_y)
        r = jnp.where(c > 0, 2 * alpha * r_y / (c + root), (root - c) / 2)  # no cancellation
        bh = beta / (alpha + r)
        d = y.shape[-1]
        log_det = (d - 1) * jnp.log1p(bh) + jnp.log1p(beta * alpha / (alpha + r) ** 2)
        return params["z0"] + diff / (1 + bh), -log_det
