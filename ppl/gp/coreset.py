"""Coreset-based tempered variational GP (CVTGP; Ketenci, Perotte, Elhadad & Urteaga).

The variational posterior is the GP prior times a tempered Gaussian likelihood on M
learnable weighted pseudo points (X_M, Y_M, β):

    q(f) ∝ p(f) Π_m N(Y_m | f(X_m), σ²)^β_m  ∝  p(f) Π_m N(Y_m | f(X_m), σ²/β_m),

i.e. the exact GP posterior given the pseudo data with noise Λ = σ² diag(β)⁻¹. With
A = K_MM + Λ and r = Y_M − m(X_M):

    q(f(x)) = N(m(x) + k_xM A⁻¹ r,  k_xx − k_xM A⁻¹ k_Mx).

The pseudo likelihood touches f only through f_M = f(X_M), so q(f) = p(f | f_M) q(f_M)
with q(f_M) = N(m_M + K A⁻¹ r, K − K A⁻¹ K) (K = K_MM), and the ELBO is the sparse-GP
one, ELBO = Σ_n E_q[log p(y_n | f_n)] − KL(q(f_M) ‖ p(f_M)), estimated on a
minibatch scaled by N/B. The KL has a closed form in A alone: with a = A⁻¹ r,
K⁻¹Σ = A⁻¹Λ and log|Σ| − log|K| = log|Λ| − log|A|, so

    KL = ½ [tr(A⁻¹Λ) + aᵀ K a − M − log|Λ| + log|A|],   aᵀ K a = aᵀ r − aᵀ Λ a.

M·D + 2M variational parameters; O(M³ + B M²) time and O(M² + B M) memory per step.
For a Bernoulli likelihood σ² = 1 (β carries the scale) and the expected log
likelihood is a Monte Carlo average.
"""

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ppl.gp.fit import GPMethod, check_size, minibatch
from ppl.gp.init import coreset_init
from ppl.gp.likelihoods import expected_log_lik
from ppl.gp.linalg import cholesky, tri_inv
from ppl.gp.model import GP
from ppl.infer.registry import register

__all__ = ["CoresetVI", "coreset_kl", "coreset_marginals", "coreset_elbo"]


class _Parts(NamedTuple):
    """A's Cholesky factor L and its inverse, Λ (with the jitter: A = K + Λ exactly),
    a = A⁻¹ r with r = Y_M − m(X_M), and the jitter used."""

    L: jax.Array
    Linv: jax.Array
    lam: jax.Array
    a: jax.Array
    r: jax.Array
    jitter: jax.Array


def _parts(kernel, X_M, Y_M, beta, noise_var, mean_fn):
    lam = noise_var / beta
    L, jitter = cholesky(kernel(X_M, X_M) + jnp.diag(lam))
    Linv = tri_inv(L)
    r = Y_M - GP(kernel, mean_fn).mean(X_M)
    return _Parts(L, Linv, lam + jitter, Linv.T @ (Linv @ r), r, jitter)


def coreset_marginals(kernel, X_M, Y_M, beta, noise_var, X_new, mean_fn=None):
    """Mean and variance of q(f(X_new))."""
    p = _parts(kernel, X_M, Y_M, beta, noise_var, mean_fn)
    return _marginals_from(p, kernel, X_M, X_new, mean_fn)


def _marginals_from(p, kernel, X_M, X_new, mean_fn):
    Kmx = kernel(X_M, X_new)
    V = p.Linv @ Kmx
    var = kernel.diag(X_new) - jnp.sum(V * V, axis=0)
    mean = GP(kernel, mean_fn).mean(X_new) + Kmx.T @ p.a
    return mean, jnp.maximum(var, 1e-12 * jnp.ones_like(var))


def coreset_kl(kernel, X_M, Y_M, beta, noise_var, mean_fn=None):
    """KL(q(f_M) ‖ p(f_M)) in closed form (see the module docstring)."""
    return _kl_from(_parts(kernel, X_M, Y_M, beta, noise_var, mean_fn))


def _kl_from(p):
    trace = jnp.sum(p.lam * jnp.sum(p.Linv * p.Linv, axis=0))  # diag A⁻¹: column norms² of L⁻¹
    quad = p.a @ p.r - p.a @ (p.lam * p.a)  # aᵀ K a with K = A − Λ
    logdet_A = 2.0 * jnp.sum(jnp.log(jnp.diagonal(p.L)))
    return 0.5 * (trace + quad - p.L.shape[0] - jnp.sum(jnp.log(p.lam)) + logdet_A)


def coreset_elbo(kernel, X_M, Y_M, beta, noise_var, X, y, mean_fn=None, *, scale=1.0,
                 likelihood="gaussian", key=None, num_mc=8):  # fmt: skip
    """scale · Σ_n E_q[log p(y_n | f_n)] − KL(q(f_M) ‖ p(f_M)) over the points given."""
    p = _parts(kernel, X_M, Y_M, beta, noise_var, mean_fn)
    mean, var = _marginals_from(p, kernel, X_M, X, mean_fn)
    key = jax.random.key(0) if key is None else key
    ell = expected_log_lik(likelihood, y, mean, var, noise_var, key, num_mc)
    return scale * jnp.sum(ell) - _kl_from(p)


@register("coreset_vi")
@dataclass(frozen=True, kw_only=True)
class CoresetVI(GPMethod):
    """Coreset-based tempered variational GP inference (CVTGP).

    >>> # X: (N, D) inputs, y: (N,) outputs, X_new: inputs to predict at
    >>> m = ppl.gp.regression(X, y, kernel=ppl.gp.kernels.RBF(), noise=0.1)
    >>> post = ppl.infer(m, method=ppl.gp.CoresetVI(num_points=100, batch_size=512,
    ...                  num_steps=2000), num_chains=1)
    >>> mean, var = post.predict(X_new)

    num_points: M pseudo points. They start at k-means++ centres of (a subsample of
    `init_subsample` of) the inputs, with outputs the mean of each centre's 10 nearest
    neighbours and weights β_m = N · (share of the points in cluster m).
    num_mc: Monte Carlo draws per point for non-Gaussian likelihoods.
    `post.params` holds the fitted coreset: "inputs" (M, D), "outputs" (M,), "weights" (M,).
    """

    num_points: int = 100
    num_mc: int = 8
    init_subsample: int = 10_000

    def check(self, data):
        check_size(self, "num_points", data)

    def init_variational(self, key, X, y, spec):
        n = min(self.init_subsample, X.shape[0])
        X_M, Y_M, beta = coreset_init(key, X, y, self.num_points, n)
        if spec.likelihood == "bernoulli":  # pseudo outputs live on the logit scale
            p = jnp.clip(Y_M, 0.05, 0.95)
            Y_M = jnp.log(p) - jnp.log1p(-p)
        return {"X_M": X_M, "Y_M": Y_M, "log_beta": jnp.log(beta)}

    def _args(self, params, spec):
        kernel, noise_var = self.hyper(params, spec)
        return kernel, params["X_M"], params["Y_M"], jnp.exp(params["log_beta"]), noise_var

    def objective(self, params, X, y, key, spec):
        k_batch, k_mc = jax.random.split(key)
        Xb, yb, scale = minibatch(k_batch, X, y, spec)
        return coreset_elbo(
            *self._args(params, spec), Xb, yb, spec.mean_fn, scale=scale,
            likelihood=spec.likelihood, key=k_mc, num_mc=self.num_mc,
        )  # fmt: skip

    def marginals(self, params, X, y, X_new, spec):
        return coreset_marginals(*self._args(params, spec), X_new, spec.mean_fn)

    def jitter(self, params, X, y, spec):
        return _parts(*self._args(params, spec), spec.mean_fn).jitter

    def constrained(self, params):
        return {
            "inputs": params["X_M"], "outputs": params["Y_M"],
            "weights": jnp.exp(params["log_beta"]),
        }  # fmt: skip
