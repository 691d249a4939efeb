"""Gaussian processes: kernels, GP model components, exact GP regression, SVGP and
coreset-based tempered variational inference (CVTGP).

>>> # X: (N, D) inputs, y: (N,) outputs, X_new: inputs to predict at
>>> k = ppl.gp.kernels.RBF(lengthscale=0.5) + ppl.gp.kernels.Periodic(period=1.0)
>>> m = ppl.gp.regression(X, y, kernel=k, noise=0.1)        # a BoundModel
>>> post = ppl.infer(m, method=ppl.gp.CoresetVI(num_points=100, batch_size=512),
...                  num_chains=1)
>>> mean, var = post.predict(X_new)                          # latent f(X_new)

Inside any model: `f = ppl.gp.sample("f", ppl.gp.GP(kernel, mean_fn), X)`.
"""

from ppl.gp import kernels
from ppl.gp.coreset import CoresetVI, coreset_elbo, coreset_kl, coreset_marginals
from ppl.gp.exact import Exact, log_marginal_likelihood, predict
from ppl.gp.fit import GPMethod, GPPosterior
from ppl.gp.linalg import cholesky
from ppl.gp.model import GP, gp_regression, regression, sample
from ppl.gp.svgp import SVGP

__all__ = [
    "kernels", "GP", "sample", "regression", "gp_regression", "Exact", "SVGP", "CoresetVI",
    "GPMethod", "GPPosterior", "log_marginal_likelihood", "predict", "cholesky",
    "coreset_elbo", "coreset_kl", "coreset_marginals",
]  # fmt: skip
