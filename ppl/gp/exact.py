"""Exact GP regression: log marginal likelihood, predictions, and the `Exact` method
(type-II maximum likelihood of the hyperparameters with optax, then the exact
posterior of f). O(N³) time and O(N²) memory: for N up to a few thousand.

With K_y = K + σ² I = L Lᵀ and r = y − m(X):
log p(y) = −½ rᵀ K_y⁻¹ r − Σ log L_ii − (N/2) log 2π,
f(X*) | y ~ N(m(X*) + K*ᵀ K_y⁻¹ r, k** − K*ᵀ K_y⁻¹ K*).
"""

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ppl.errors import OptionError
from ppl.gp.fit import GPMethod
from ppl.gp.kernels import _as_2d
from ppl.gp.linalg import chol_solve, cholesky, tri_inv, tri_solve
from ppl.gp.model import GP
from ppl.infer.registry import register

__all__ = ["log_marginal_likelihood", "predict", "Exact"]


def _noisy_gram(kernel, X, noise_var):
    """K(X, X) + σ² I."""
    X = _as_2d(X)
    return kernel(X, X) + noise_var * jnp.eye(X.shape[0], dtype=X.dtype)


def _factor(kernel, X, noise_var):
    return cholesky(_noisy_gram(kernel, X, noise_var))


def log_marginal_likelihood(kernel, X, y, noise, mean_fn=None, *, return_jitter=False):
    """log N(y; m(X), K(X, X) + noise² I); with return_jitter, also the jitter used."""
    K = _noisy_gram(kernel, X, jnp.square(noise))
    value, jitter = _gaussian_log_density(K, y - GP(kernel, mean_fn).mean(_as_2d(X)))
    return (value, jitter) if return_jitter else value


@jax.custom_vjp
def _gaussian_log_density(K, r):
    return _gaussian_log_density_fwd(K, r)[0]


def _gaussian_log_density_fwd(K, r):
    L, jitter = cholesky(jax.lax.stop_gradient(K))
    alpha = chol_solve(L, r)
    n = r.shape[0]
    value = -0.5 * r @ alpha - jnp.sum(jnp.log(jnp.diagonal(L))) - 0.5 * n * math.log(2 * math.pi)
    return (value, jitter), (L, alpha)


def _gaussian_log_density_bwd(res, cotangents):
    """∂/∂K = ½(ααᵀ − K⁻¹), ∂/∂r = −α: one triangular inverse and one product, about
    a third of differentiating through the Cholesky factorisation."""
    L, alpha = res
    g = cotangents[0]
    Linv = tri_inv(L)
    dK = 0.5 * g * (jnp.outer(alpha, alpha) - Linv.T @ Linv)
    return dK, -g * alpha


_gaussian_log_density.defvjp(_gaussian_log_density_fwd, _gaussian_log_density_bwd)


def predict(kernel, X, y, noise, X_new, mean_fn=None):
    """Mean and variance of the latent f(X_new) given y (without the noise)."""
    gp = GP(kernel, mean_fn)
    L, _ = _factor(kernel, X, jnp.square(noise))
    Ks = kernel(X, X_new)
    mean = gp.mean(X_new) + Ks.T @ chol_solve(L, y - gp.mean(X))
    V = tri_solve(L, Ks)
    var = kernel.diag(X_new) - jnp.sum(V * V, axis=0)
    return mean, jnp.maximum(var, 0.0)


@register("gp_exact")
@dataclass(frozen=True, kw_only=True)
class Exact(GPMethod):
    """Exact GP regression: hyperparameters by maximising the log marginal likelihood
    with optax (full batch: `batch_size` is ignored; learn_hyperparameters=False keeps
    the model's kernel and noise), then `post.predict` gives the exact posterior of f.
    `post.diagnostics["jitter"]` is the jitter added to K + σ²I at the fitted values."""

    num_steps: int = 500

    full_batch = True

    def check(self, data):
        if data.likelihood != "gaussian":
            raise OptionError(
                "Exact: exact GP inference needs likelihood='gaussian'; for "
                f"likelihood={data.likelihood!r} use ppl.gp.CoresetVI or ppl.gp.SVGP"
            )

    def init_variational(self, key, X, y, spec):
        return {}

    def objective(self, params, X, y, key, spec):
        kernel, noise_var = self.hyper(params, spec)
        return log_marginal_likelihood(kernel, X, y, jnp.sqrt(noise_var), spec.mean_fn)

    def marginals(self, params, X, y, X_new, spec):
        kernel, noise_var = self.hyper(params, spec)
        return predict(kernel, X, y, jnp.sqrt(noise_var), X_new, spec.mean_fn)

    def jitter(self, params, X, y, spec):
        kernel, noise_var = self.hyper(params, spec)
        return _factor(kernel, X, noise_var)[1]
