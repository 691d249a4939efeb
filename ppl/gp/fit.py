"""What the GP methods share: the fit through SVI's step and the driver, and the
Posterior with `predict`.

Each GP method (Exact, SVGP, CoresetVI) only says how to start its variational
parameters, what objective to maximise (a log marginal likelihood or an ELBO, from a
minibatch) and how to predict. The optimisation step is `ppl.vi.SVI.step` itself
(optax update, gradient clipping, skipping non-finite steps, early stopping), run by
the driver in compiled chunks with a progress bar (`SVI.fit`): `_Fit` is an SVI whose
surrogate is the GP objective. Hyperparameters (kernel, noise) are learned jointly, on
the log scale.
"""

import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ppl.errors import DataError, OptionError
from ppl.gp.kernels import Kernel, from_unconstrained, to_unconstrained
from ppl.gp.model import finite_2d, gp_data
from ppl.infer.method import Method, check_option
from ppl.infer.posterior import Posterior
from ppl.vi.program import SurrogateOut
from ppl.vi.svi import DEFAULT_OPTIMIZER, SVI, SVIState, _final_loss

__all__ = [
    "GPMethod", "GPPosterior", "Spec", "check_size", "minibatch", "named_hyperparameters",
]  # fmt: skip

#: The entries of a fit's params that are hyperparameters (on the log scale).
HYPERPARAMETERS = ("kernel", "log_noise")

#: Rows of X_new per compiled prediction call (bounds memory to this × M or × N).
PREDICT_BLOCK = 4096


@dataclass(frozen=True)
class Spec:
    """Static facts about the data a fit is compiled for."""

    likelihood: str
    mean_fn: Any
    num_data: int
    batch_size: int


def minibatch(key, X, y, spec):
    """(X_b, y_b, N/B): B points drawn uniformly with replacement (unbiased for any sum
    over the data; O(B) per step whatever N), or all the data when B ≥ N."""
    if spec.batch_size >= spec.num_data:
        return X, y, 1.0
    idx = jax.random.randint(key, (spec.batch_size,), 0, spec.num_data)
    return X[idx], y[idx], spec.num_data / spec.batch_size


@dataclass(frozen=True, kw_only=True)
class GPMethod(Method):
    """Options shared by the GP methods (see each method for its own).

    batch_size: points per step (all of them when ≥ N).
    num_steps: optimisation steps. optimizer: an optax transformation (Adam 0.01).
    learn_hyperparameters: fit the kernel's hyperparameters and the noise jointly
        (else keep those of the model).
    clip_norm, early_stopping, max_nonfinite: as in `ppl.vi.SVI`.

    `infer(..., num_chains=C)` runs C independent fits side by side (vmapped);
    `num_samples` is not used (the fits are point estimates of the hyperparameters and
    Gaussian posteriors of f, read with `post.predict`).
    """

    batch_size: int = 512
    num_steps: int = 2000
    optimizer: Any = DEFAULT_OPTIMIZER
    learn_hyperparameters: bool = True
    clip_norm: float | None = None
    early_stopping: Any = None
    max_nonfinite: int = 10

    def __post_init__(self):
        super().__post_init__()
        for name in ("batch_size", "num_steps", "num_points", "num_inducing"):
            if hasattr(self, name):  # (the point counts are checked against N when run)
                check_option(self, name, lambda v: v >= 1, "an integer >= 1", integer=True)
        if not (hasattr(self.optimizer, "init") and hasattr(self.optimizer, "update")):
            raise OptionError(
                f"{type(self).__name__}: optimizer={self.optimizer!r} must be an optax "
                "GradientTransformation"
            )

    full_batch = False  # a method whose objective reads all the data every step

    # ----- what each method defines -------------------------------------------------

    def check(self, data):
        """Refuse data this method cannot fit (DataError / OptionError)."""

    def init_variational(self, key, X, y, spec):
        raise NotImplementedError

    def objective(self, params, X, y, key, spec):
        raise NotImplementedError

    def marginals(self, params, X, y, X_new, spec):
        raise NotImplementedError

    def jitter(self, params, X, y, spec):
        raise NotImplementedError

    def constrained(self, params):
        """Variational parameters on their natural scale (for the Posterior)."""
        return {}

    # ----- shared ------------------------------------------------------------------

    def hyper(self, params, spec):
        """(kernel, noise variance) from the unconstrained params."""
        hyper = {k: params[k] for k in HYPERPARAMETERS if k in params}
        if not self.learn_hyperparameters:
            hyper = jax.lax.stop_gradient(hyper)
        kernel = from_unconstrained(hyper["kernel"])
        noise_var = jnp.exp(2.0 * hyper["log_noise"]) if "log_noise" in hyper else 1.0
        return kernel, noise_var

    def run(self, model, *, num_samples, num_chains, seed, progress):
        t0 = time.perf_counter()
        data = gp_data(model)
        self.check(data)
        N = data.X.shape[0]
        batch = N if self.full_batch else min(self.batch_size, N)
        spec = Spec(data.likelihood, data.mean_fn, N, batch)
        fit = _Fit(
            gp=self, spec=spec, optimizer=self.optimizer, num_steps=self.num_steps,
            clip_norm=self.clip_norm, max_nonfinite=self.max_nonfinite,
            early_stopping=self.early_stopping,
        )  # fmt: skip
        noise = jnp.asarray(data.noise, data.X.dtype)
        driver_data = ((data.X, data.y), (data.kernel, noise))
        key_init, key_fit = jax.random.split(seed)
        state, losses, timings = fit.fit(
            driver_data, key_init, key_fit, num_chains, progress=progress
        )
        params = state.params
        jitter = _jitters(self, spec, params, data.X, data.y)
        steps = np.asarray(state.step)
        diagnostics = {
            "loss": np.asarray(losses),
            "final_loss": _final_loss(np.asarray(losses), steps),
            "steps": steps,
            "epochs": steps * spec.batch_size / N,
            "nonfinite_steps": np.asarray(state.nonfinite),
            "stopped_early_at": np.asarray(state.stopped_at),
            "jitter": np.asarray(jitter),
            "fit_time": timings.get("fit", 0.0),
        }
        samples = {
            name: np.asarray(v)[:, None]
            for name, v in named_hyperparameters(self, params, spec).items()
        }
        diagnostics["wall_time"] = time.perf_counter() - t0
        return GPPosterior(
            samples, diagnostics, method=self.label, model=model, gp=self, spec=spec,
            params=params, X=data.X, y=data.y,
        )  # fmt: skip


def check_size(method, field, data):
    """Check a count of points (inducing or coreset points) against the data size."""
    check_option(method, field, lambda v: v >= 1, "an integer >= 1", integer=True)
    M, N = getattr(method, field), data.X.shape[0]
    if M > N:
        raise DataError(
            f"{type(method).__name__}: {field}={M} is larger than the number of data points "
            f"N={N}; use {field} <= {N} (for small N, ppl.gp.Exact is exact and cheap)"
        )


@partial(jax.jit, static_argnums=(0, 1))
def _jitters(gp, spec, params, X, y):
    return jax.vmap(lambda p: gp.jitter(p, X, y, spec))(params)


def named_hyperparameters(gp, params, spec):
    """'kernel.<path>' and 'noise' (a standard deviation) -> values with a chain axis."""
    kernel, noise_var = jax.vmap(lambda p: gp.hyper(p, spec))(params)
    out = {}

    def walk(k, prefix):
        for p in k.params:
            v = getattr(k, p)
            if isinstance(v, Kernel):
                walk(v, f"{prefix}{p}.")
            else:
                out[f"{prefix}{p}"] = v

    walk(kernel, "kernel.")
    if spec.likelihood == "gaussian":
        out["noise"] = jnp.sqrt(noise_var)
    return out


@dataclass(frozen=True)
class _Fit(SVI):
    """SVI whose surrogate is the GP method's objective (no model/guide programs):
    its `step` is SVI's. The driver's data is ((X, y), (kernel, noise)) at the start."""

    gp: Any = None
    spec: Any = None

    @property
    def transform(self):
        """SVI's optimizer, kept off the hyperparameters when they are not learned (a
        zero gradient alone would not stop, e.g., weight decay from moving them)."""
        fit = super().transform
        if self.gp.learn_hyperparameters:
            return fit
        return optax.multi_transform({"fit": fit, "fixed": optax.set_to_zero()}, _labels)

    # SVI's failure message, with advice for a GP fit (which has no guide)
    _start_advice = (
        "or start the kernel's hyperparameters and the noise nearer the scales of X and y"
    )

    @property
    def _fitted(self):
        return type(self.gp).__name__

    def _surrogate(self, model, guide, key, params, baseline):
        X, y = model
        value = self.gp.objective(params, X, y, key, self.spec)
        return SurrogateOut(jax.lax.stop_gradient(value), value, baseline)

    def init(self, model, guide, key):
        (X, y), (kernel, noise) = model, guide
        params = {"kernel": to_unconstrained(kernel)}
        if self.spec.likelihood == "gaussian":
            params["log_noise"] = jnp.log(noise)
        params.update(self.gp.init_variational(key, X, y, self.spec))
        return SVIState.fresh(params, self.transform.init(params), jnp.zeros(()))


def _labels(params):
    """ "fixed" for the hyperparameters (kernel, noise), "fit" for the rest."""
    return {
        k: jax.tree.map(lambda _, k=k: "fixed" if k in HYPERPARAMETERS else "fit", v)
        for k, v in params.items()
    }


@partial(jax.jit, static_argnums=(0, 1))
def _predict(gp, spec, params, X, y, X_new):
    return jax.vmap(lambda p: gp.marginals(p, X, y, X_new, spec))(params)


class GPPosterior(Posterior):
    """A Posterior of a GP method: `samples` hold the fitted hyperparameters (one
    "draw" per fit: they are point estimates), `params` the fitted variational
    parameters, and `predict(X_new)` the latent function's mean and variance."""

    def __init__(self, samples, diagnostics, *, gp, spec, params, X, y, **kwargs):
        super().__init__(samples, diagnostics, **kwargs)
        self._gp, self._spec, self._params, self._X, self._y = gp, spec, params, X, y
        self.params = {k: np.asarray(v) for k, v in gp.constrained(params).items()}

    def predict(self, X_new):
        """(mean, variance) of f(X_new), each (n,). With several fits (chains) it is
        the equal mixture of their Gaussians: mean of means, mean variance plus the
        variance of the means."""
        X_new = finite_2d(X_new, "predict: X_new")
        D = self._X.shape[1]
        if X_new.shape[1] != D:
            raise DataError(
                f"predict: X_new must be (n, {D}) like the training X, got {X_new.shape}"
            )
        X_new = jnp.asarray(X_new, self._X.dtype)
        n = X_new.shape[0]
        if n == 0:
            return np.zeros(0, X_new.dtype), np.zeros(0, X_new.dtype)
        # blocks padded to a power of two (≥ 256): few shapes, so few compilations
        size = min(PREDICT_BLOCK, max(256, 1 << max(n - 1, 1).bit_length()))
        means, variances = [], []
        for lo in range(0, n, size):
            block = X_new[lo : lo + size]
            rows = block.shape[0]
            block = jnp.pad(block, ((0, size - rows), (0, 0)), mode="edge")
            m, v = _predict(self._gp, self._spec, self._params, self._X, self._y, block)
            means.append(np.asarray(m)[:, :rows])
            variances.append(np.asarray(v)[:, :rows])
        m, v = np.concatenate(means, axis=1), np.concatenate(variances, axis=1)
        mean = m.mean(axis=0)
        return mean, v.mean(axis=0) + m.var(axis=0)
