"""Covariance functions, written as the formulas; `+` and `*` combine them.

A kernel is a pytree whose leaves are its (positive) hyperparameters, so the GP
methods learn them on the log scale (`to_unconstrained` / `from_unconstrained`) and
a kernel built from `ppl.sample` values inside a model is an ordinary argument.
`k(X1, X2)` is the (n1, n2) covariance matrix of inputs X1 (n1, D) and X2 (n2, D)
(1-D inputs are one feature); `k.diag(X)` its diagonal, without the matrix.
Stationary kernels take `lengthscale` as a scalar or one per feature (ARD) and
`amplitude` a with k(x, x) = a². Hyperparameters given as values (not traced inside a
model) are checked when the kernel is built: each must be finite and positive.
"""

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from ppl.errors import DataError, OptionError

__all__ = [
    "Kernel", "RBF", "Matern12", "Matern32", "Matern52", "RationalQuadratic", "Periodic",
    "Linear", "Sum", "Product", "to_unconstrained", "from_unconstrained",
]  # fmt: skip


def _as_2d(X, what="GP inputs X"):
    X = jnp.asarray(X)
    if X.ndim not in (1, 2):
        raise DataError(f"{what} must be (N,) or (N, D), got shape {X.shape}")
    return X[:, None] if X.ndim == 1 else X


def _show(v):
    """A numeric array as its values (`-1.0`, `[1.0, -1.0]`), at most six of them."""
    if v.ndim == 0:
        return str(v[()])
    values = ", ".join(map(str, v.ravel()[:6]))
    return f"[{values}{', ...' if v.size > 6 else ''}]"


def check_positive(label, value, requirement="finite and positive", scalar=False):
    """`value` (a number or array; traced values pass) or an OptionError saying
    "{label}={value} must be {requirement}" unless it is finite and > 0 everywhere."""
    if isinstance(value, jax.core.Tracer):
        return value
    v = np.asarray(value)
    ok = v.dtype.kind in "iuf" and v.size > 0 and not (scalar and v.ndim)
    if not (ok and np.all(np.isfinite(v) & (v > 0))):
        shown = repr(value) if v.dtype.kind not in "iuf" else _show(v)
        raise OptionError(f"{label}={shown} must be {requirement}")
    return value


def _safe_sqrt(r2):
    """sqrt with a finite gradient at 0 (the double-where trick)."""
    positive = r2 > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, r2, 1.0)), 0.0)


class Kernel:
    """Base class: subclasses list their hyperparameters in `params` and define `__call__`."""

    params = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_node(cls, cls._flatten, cls._unflatten)

    def _flatten(self):
        return [getattr(self, p) for p in self.params], None

    @classmethod
    def _unflatten(cls, aux, leaves):
        obj = object.__new__(cls)
        for p, v in zip(cls.params, leaves):
            setattr(obj, p, v)
        return obj

    def diag(self, X):
        X = _as_2d(X)
        return jax.vmap(lambda x: self(x[None], x[None])[0, 0])(X)

    def __add__(self, other):
        return Sum(self, other)

    def __mul__(self, other):
        return Product(self, other)

    def __radd__(self, other):  # sum(kernels) starts from 0
        return self if isinstance(other, numbers.Number) and other == 0 else Sum(other, self)

    def __rmul__(self, other):
        return Product(other, self)

    def __repr__(self):
        args = ", ".join(f"{p}={getattr(self, p)!r}" for p in self.params)
        return f"{type(self).__name__}({args})"

    def _set(self, **hyperparameters):
        """Set positive hyperparameters, checked."""
        for name, value in hyperparameters.items():
            setattr(self, name, check_positive(f"{type(self).__name__}: {name}", value))

    def _per_feature(self, name, X):
        """Hyperparameter `name` as an array: one value, or one per column of X (n, D)."""
        value = jnp.asarray(getattr(self, name))
        D = X.shape[-1]
        if value.ndim > 1 or value.size not in (1, D):
            raise OptionError(
                f"{type(self).__name__}: {name} has shape {value.shape} but the inputs X have "
                f"{D} feature(s); give one {name} or one per feature ({D})"
            )
        return value


class Stationary(Kernel):
    """a² g(r) with r the distance scaled by the length scale(s)."""

    params = ("lengthscale", "amplitude")

    def __init__(self, lengthscale=1.0, amplitude=1.0):
        self._set(lengthscale=lengthscale, amplitude=amplitude)

    def scaled_sq_dist(self, X1, X2):
        X1, X2 = _as_2d(X1), _as_2d(X2)
        ell = self._per_feature("lengthscale", X1)
        d = X1[:, None, :] / ell - X2[None, :, :] / ell
        return jnp.sum(d * d, axis=-1)

    def __call__(self, X1, X2):
        return jnp.square(self.amplitude) * self.shape(self.scaled_sq_dist(X1, X2))

    def diag(self, X):
        return jnp.full(_as_2d(X).shape[:1], jnp.square(self.amplitude))


class RBF(Stationary):
    """Squared exponential: a² exp(−r²/2)."""

    def shape(self, r2):
        return jnp.exp(-0.5 * r2)


class Matern12(Stationary):
    """a² exp(−r)."""

    def shape(self, r2):
        return jnp.exp(-_safe_sqrt(r2))


class Matern32(Stationary):
    """a² (1 + √3 r) exp(−√3 r)."""

    def shape(self, r2):
        s = math.sqrt(3.0) * _safe_sqrt(r2)
        return (1.0 + s) * jnp.exp(-s)


class Matern52(Stationary):
    """a² (1 + √5 r + 5r²/3) exp(−√5 r)."""

    def shape(self, r2):
        s = math.sqrt(5.0) * _safe_sqrt(r2)
        return (1.0 + s + s * s / 3.0) * jnp.exp(-s)


class RationalQuadratic(Stationary):
    """a² (1 + r²/(2α))^(−α): a scale mixture of RBFs (α → ∞ gives the RBF)."""

    params = ("lengthscale", "amplitude", "alpha")

    def __init__(self, lengthscale=1.0, amplitude=1.0, alpha=1.0):
        super().__init__(lengthscale, amplitude)
        self._set(alpha=alpha)

    def shape(self, r2):
        return jnp.power(1.0 + r2 / (2.0 * self.alpha), -self.alpha)


class Periodic(Stationary):
    """a² exp(−2 Σ_d sin²(π |x_d − x'_d| / p) / ℓ_d²), period p."""

    params = ("lengthscale", "amplitude", "period")

    def __init__(self, lengthscale=1.0, amplitude=1.0, period=1.0):
        super().__init__(lengthscale, amplitude)
        self._set(period=period)

    def __call__(self, X1, X2):
        X1, X2 = _as_2d(X1), _as_2d(X2)
        d = X1[:, None, :] - X2[None, :, :]
        period, ell = self._per_feature("period", X1), self._per_feature("lengthscale", X1)
        s = jnp.sin(jnp.pi * d / period) / ell
        return jnp.square(self.amplitude) * jnp.exp(-2.0 * jnp.sum(s * s, axis=-1))


class Linear(Kernel):
    """a² x·x' + b²: Bayesian linear regression with slope scale a and offset scale b."""

    params = ("amplitude", "bias")

    def __init__(self, amplitude=1.0, bias=1.0):
        self._set(amplitude=amplitude, bias=bias)

    def __call__(self, X1, X2):
        return jnp.square(self.amplitude) * (_as_2d(X1) @ _as_2d(X2).T) + jnp.square(self.bias)

    def diag(self, X):
        X = _as_2d(X)
        return jnp.square(self.amplitude) * jnp.sum(X * X, axis=-1) + jnp.square(self.bias)


class Sum(Kernel):
    params = ("left", "right")

    def __init__(self, left, right):
        for name, k in (("left", left), ("right", right)):
            if not isinstance(k, Kernel):
                raise OptionError(
                    f"{type(self).__name__}: {name}={k!r} is not a kernel; kernels combine "
                    "with kernels (to scale one, set its amplitude)"
                )
        self.left, self.right = left, right

    def __call__(self, X1, X2):
        return self.left(X1, X2) + self.right(X1, X2)

    def diag(self, X):
        return self.left.diag(X) + self.right.diag(X)

    def __repr__(self):
        return f"({self.left!r} + {self.right!r})"


class Product(Sum):
    def __call__(self, X1, X2):
        return self.left(X1, X2) * self.right(X1, X2)

    def diag(self, X):
        return self.left.diag(X) * self.right.diag(X)

    def __repr__(self):
        return f"({self.left!r} * {self.right!r})"


def to_unconstrained(tree):
    """Hyperparameters (all positive) -> their logs, as float arrays."""
    return jax.tree.map(lambda v: jnp.log(jnp.asarray(v, jnp.result_type(float))), tree)


def from_unconstrained(tree):
    return jax.tree.map(jnp.exp, tree)
