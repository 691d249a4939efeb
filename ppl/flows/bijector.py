"""The bijector contract, and the bijectors with no conditioner network.

A bijector is a frozen dataclass (hashable configuration, so compiled code is shared)
whose parameters are a separate pytree made by `init(key, dim)`. Each one implements
`forward_and_log_det(params, x, context=None) -> (y, log|det dy/dx|)` on ONE event
x of shape (dim,) (vmap for batches), and `inverse_and_log_det` where the inverse is
available in closed form or by structure; `forward`, `inverse` and the log-dets alone
are derived. `Chain` is a plain loop that sums the log-determinants.

Every subclass's `forward_and_log_det`, `inverse_and_log_det` and `forward_and_score`
first check that x is one event (shape (dim,), dim the bijector's `event_size` where it
has one): on static shapes, so under jit the check runs once, while tracing.
"""

import functools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ppl.core.checks import check_count
from ppl.errors import OptionError

__all__ = ["Bijector", "Chain", "Affine", "Permutation", "Reverse"]


def _on_one_event(method):
    """`method(self, params, x, ...)` after `self.check_event(x)` (and, for
    `forward_and_score`, a check that the score has x's shape)."""

    @functools.wraps(method)
    def checked(self, params, x, *args, **kwargs):
        self.check_event(x)
        if method.__name__ == "forward_and_score":
            score = args[0] if args else kwargs.get("score")
            if jnp.shape(score) != jnp.shape(x):
                raise OptionError(
                    f"{type(self).__name__}.forward_and_score: score has shape "
                    f"{jnp.shape(score)}, but x has shape {jnp.shape(x)}; give the score "
                    "∇ log p(x) at x, of x's shape"
                )
        return method(self, params, x, *args, **kwargs)

    return checked


class Bijector:
    """Base class: override `forward_and_log_det` (and `inverse_and_log_det`)."""

    #: The one event size the bijector works on, or None if it adapts to any.
    event_size = None
    #: Length of the context vector a conditional bijector's conditioner reads (0: none).
    context_size = 0
    #: Whether `inverse_and_log_det` is implemented.
    has_inverse = False
    #: Whether `forward_and_score` is implemented (the fast path gradient).
    has_fast_score = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in ("forward_and_log_det", "inverse_and_log_det", "forward_and_score"):
            if name in vars(cls):
                setattr(cls, name, _on_one_event(vars(cls)[name]))

    def init(self, key, dim):
        """Initial parameters (a pytree) for events of size `dim`."""
        self.check_size(dim)
        return ()

    def check_event(self, x):
        """OptionError unless x is one event: shape (event_size,), or (d,) for any d."""
        shape = jnp.shape(x)
        if len(shape) == 1 and self.event_size in (None, shape[0]):
            return
        size = self.event_size
        if size is None:
            size = shape[-1] if shape else "d"
        if len(shape) > 1:
            fix = "apply it to a batch with jax.vmap"
        elif shape:
            fix = f"it works on events of size {size} only"
        else:
            fix = "give x as a vector (jnp.atleast_1d(x) for a 1-D event)"
        raise OptionError(
            f"{type(self).__name__}: expects one event of shape ({size},), got shape {shape}; {fix}"
        )

    def check_size(self, dim):
        if self.event_size is not None and dim != self.event_size:
            raise OptionError(
                f"{type(self).__name__}: works on events of size {self.event_size}, got size {dim}"
            )

    def forward_and_log_det(self, params, x, context=None):
        raise NotImplementedError

    def inverse_and_log_det(self, params, y, context=None):
        raise OptionError(f"{type(self).__name__} has no inverse in closed form")

    def forward_and_score(self, params, x, score, context=None):
        """(y, ∇_y log q(y)) for y = f(x), given `score` = ∇_x log p(x) of the density p
        that x follows and q its pushforward: ∇_y log q = J⁻ᵀ (score - ∇_x log|det J|).
        The fast form of the path gradient (Vaitl et al. 2022): layer by layer, along the
        forward pass, with no Jacobian built; layers give J⁻ᵀ by their structure."""
        raise OptionError(f"{type(self).__name__} has no fast path gradient")

    def forward(self, params, x, context=None):
        return self.forward_and_log_det(params, x, context)[0]

    def inverse(self, params, y, context=None):
        return self.inverse_and_log_det(params, y, context)[0]

    def log_det_gradient(self, params, x, context=None):
        """∇_x log|det J(x)|, by differentiating the layer's log-determinant."""
        return jax.grad(lambda v: self.forward_and_log_det(params, v, context)[1])(x)

    def forward_log_det_jacobian(self, params, x, context=None):
        return self.forward_and_log_det(params, x, context)[1]

    def inverse_log_det_jacobian(self, params, y, context=None):
        return self.inverse_and_log_det(params, y, context)[1]


@dataclass(frozen=True)
class Chain(Bijector):
    """y = f_n(... f_2(f_1(x))): `layers[0]` is applied first."""

    layers: tuple

    def __post_init__(self):
        layers = tuple(self.layers)
        if not layers or not all(isinstance(b, Bijector) for b in layers):
            raise OptionError(
                f"Chain: layers={self.layers!r} must be a non-empty list of bijectors"
            )
        sizes = {b.event_size for b in layers} - {None}
        if len(sizes) > 1:
            raise OptionError(f"Chain: its layers work on different event sizes {sorted(sizes)}")
        contexts = {b.context_size for b in layers} - {0}
        if len(contexts) > 1:
            raise OptionError(
                f"Chain: its conditional layers read contexts of different sizes "
                f"{sorted(contexts)}; give them all one context_size"
            )
        object.__setattr__(self, "layers", layers)

    @property
    def event_size(self):
        sizes = {b.event_size for b in self.layers} - {None}
        return sizes.pop() if sizes else None

    @property
    def context_size(self):
        return max(b.context_size for b in self.layers)

    @property
    def has_inverse(self):
        return all(b.has_inverse for b in self.layers)

    @property
    def has_fast_score(self):
        return all(b.has_fast_score for b in self.layers)

    def init(self, key, dim):
        self.check_size(dim)
        keys = jax.random.split(key, len(self.layers))
        return tuple(b.init(k, dim) for b, k in zip(self.layers, keys))

    @staticmethod
    def _context_for(layer, context):
        """The chain's context goes to its conditional layers only."""
        return context if layer.context_size else None

    def forward_and_log_det(self, params, x, context=None):
        total = jnp.zeros(())
        for b, p in zip(self.layers, params):
            x, log_det = b.forward_and_log_det(p, x, self._context_for(b, context))
            total = total + log_det
        return x, total

    def forward_and_score(self, params, x, score, context=None):
        for b, p in zip(self.layers, params):
            x, score = b.forward_and_score(p, x, score, self._context_for(b, context))
        return x, score

    def inverse_and_log_det(self, params, y, context=None):
        total = jnp.zeros(())
        for b, p in zip(reversed(self.layers), reversed(params)):
            y, log_det = b.inverse_and_log_det(p, y, self._context_for(b, context))
            total = total + log_det
        return y, total


@dataclass(frozen=True)
class Affine(Bijector):
    """Elementwise scale and shift y = exp(log_scale) * x + shift."""

    has_inverse = True

    def init(self, key, dim):
        self.check_size(dim)
        return {"shift": jnp.zeros(dim), "log_scale": jnp.zeros(dim)}

    has_fast_score = True

    def forward_and_log_det(self, params, x, context=None):
        s = params["log_scale"]
        return jnp.exp(s) * x + params["shift"], jnp.sum(s)

    def forward_and_score(self, params, x, score, context=None):
        return self.forward(params, x), jnp.exp(-params["log_scale"]) * score

    def inverse_and_log_det(self, params, y, context=None):
        s = params["log_scale"]
        return (y - params["shift"]) * jnp.exp(-s), -jnp.sum(s)


@dataclass(frozen=True)
class Permutation(Bijector):
    """y = x[perm]: a fixed reordering (log-det 0)."""

    perm: tuple
    has_inverse = True

    def __post_init__(self):
        perm = tuple(int(i) for i in np.asarray(self.perm).reshape(-1))
        if sorted(perm) != list(range(len(perm))):
            raise OptionError(
                f"Permutation: perm={list(perm)} is not a permutation of 0..{len(perm) - 1} "
                f"(size {len(perm)}), so the map would not be invertible"
            )
        object.__setattr__(self, "perm", perm)

    @property
    def event_size(self):
        return len(self.perm)

    has_fast_score = True

    def forward_and_log_det(self, params, x, context=None):
        return x[jnp.asarray(self.perm)], jnp.zeros(())

    def forward_and_score(self, params, x, score, context=None):
        return self.forward(params, x), score[jnp.asarray(self.perm)]

    def inverse_and_log_det(self, params, y, context=None):
        return y[jnp.asarray(np.argsort(self.perm))], jnp.zeros(())


@dataclass(frozen=True)
class Reverse(Bijector):
    """y = x[::-1] (between autoregressive layers, so each sees another order)."""

    has_inverse = True

    has_fast_score = True

    def forward_and_log_det(self, params, x, context=None):
        return x[::-1], jnp.zeros(())

    def forward_and_score(self, params, x, score, context=None):
        return x[::-1], score[::-1]

    def inverse_and_log_det(self, params, y, context=None):
        return y[::-1], jnp.zeros(())


def check_positive_int(owner, name, value, minimum=1):
    check_count(owner, name, value, minimum)


def check_positive_number(owner, name, value):
    """`value` as a float; OptionError unless it is a positive finite real number (a
    Python, NumPy or JAX scalar; not a bool)."""
    is_real = np.ndim(value) == 0 and np.asarray(value).dtype.kind in "iuf"
    if not (is_real and 0 < float(value) < math.inf):
        raise OptionError(f"{owner}: {name}={value!r} must be a positive finite number")
    return float(value)
