"""SVGP (Hensman, Fusi & Lawrence 2013), whitened: the baseline for CoresetVI.

Inducing inputs Z (M, D), u = f(Z) = m(Z) + L v with K_ZZ = L Lᵀ and
q(v) = N(μ, S S ᵀ) (S lower triangular, positive diagonal). For a point x, with
a = L⁻¹ k_Zx: q(f(x)) = N(m(x) + aᵀμ, k_xx − aᵀa + ‖Sᵀa‖²), and
ELBO = (N/B) Σ_batch E_q[log p(y_n | f_n)] − KL(N(μ, SSᵀ) ‖ N(0, I)).
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ppl.gp.fit import GPMethod, check_size, minibatch
from ppl.gp.init import coreset_init
from ppl.gp.likelihoods import expected_log_lik
from ppl.gp.linalg import cholesky, tri_inv
from ppl.gp.model import GP
from ppl.infer.registry import register

__all__ = ["SVGP", "whitened_kl"]


def whitened_kl(mu, S):
    """KL(N(μ, SSᵀ) ‖ N(0, I)) for lower-triangular S."""
    M = mu.shape[0]
    logdet = 2.0 * jnp.sum(jnp.log(jnp.abs(jnp.diagonal(S))))
    return 0.5 * (jnp.sum(S * S) + mu @ mu - M - logdet)


@register("svgp")
@dataclass(frozen=True, kw_only=True)
class SVGP(GPMethod):
    """Sparse variational GP with M whitened inducing points, trained on minibatches.

    num_inducing: M. Inducing inputs start at k-means++ centres of (a subsample of
    `init_subsample` of) the inputs; q(v) starts at the prior N(0, I).
    num_mc: Monte Carlo draws per point for non-Gaussian likelihoods.
    """

    num_inducing: int = 100
    num_mc: int = 8
    init_subsample: int = 10_000

    def check(self, data):
        check_size(self, "num_inducing", data)

    def init_variational(self, key, X, y, spec):
        M = self.num_inducing
        Z, _, _ = coreset_init(key, X, y, M, min(self.init_subsample, X.shape[0]))
        return {"Z": Z, "mu": jnp.zeros(M, X.dtype), "S_raw": jnp.zeros((M, M), X.dtype)}

    @staticmethod
    def _S(params):
        S_raw = params["S_raw"]
        return jnp.tril(S_raw, -1) + jnp.diag(jnp.exp(jnp.diagonal(S_raw)))

    def _parts(self, params, X_new, spec):
        kernel, noise_var = self.hyper(params, spec)
        gp = GP(kernel, spec.mean_fn)
        Z = params["Z"]
        L, jitter = cholesky(kernel(Z, Z))
        a = tri_inv(L) @ kernel(Z, X_new)
        SA = self._S(params).T @ a
        mean = gp.mean(X_new) + a.T @ params["mu"]
        var = kernel.diag(X_new) - jnp.sum(a * a, axis=0) + jnp.sum(SA * SA, axis=0)
        return mean, jnp.maximum(var, 1e-12 * jnp.ones_like(var)), noise_var, jitter

    def objective(self, params, X, y, key, spec):
        k_batch, k_mc = jax.random.split(key)
        Xb, yb, scale = minibatch(k_batch, X, y, spec)
        mean, var, noise_var, _ = self._parts(params, Xb, spec)
        ell = expected_log_lik(spec.likelihood, yb, mean, var, noise_var, k_mc, self.num_mc)
        return scale * jnp.sum(ell) - whitened_kl(params["mu"], self._S(params))

    def marginals(self, params, X, y, X_new, spec):
        return self._parts(params, X_new, spec)[:2]

    def jitter(self, params, X, y, spec):
        kernel, _ = self.hyper(params, spec)
        return cholesky(kernel(params["Z"], params["Z"]))[1]

    def constrained(self, params):
        return {"inducing_inputs": params["Z"], "mu": params["mu"]}
