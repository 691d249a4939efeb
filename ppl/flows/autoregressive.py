"""Masked autoregressive and coupling bijectors around an elementwise transformer.

`Autoregressive`: y_i = τ(x_i; c_i) with c_i from a MADE conditioner. In the "iaf"
direction (inverse autoregressive flow, Kingma et al. 2016) c_i reads the INPUT x_<i:
the forward pass (sampling, in a guide) is one network evaluation, the inverse takes dim
sequential ones. In the "maf" direction (masked autoregressive flow, Papamakarios et al.
2017) c_i reads the OUTPUT y_<i: the inverse (density evaluation) is one pass, the
forward dim passes. Either way the Jacobian is triangular: log|det| = Σ log τ'(x_i).

`Coupling` (RealNVP, Dinh et al. 2017): the first `split` coordinates pass unchanged and
condition an MLP that gives the transformer's parameters of the others.

A context vector (`context_size` > 0) enters every conditioner: conditional flows.
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ppl.errors import OptionError
from ppl.flows.bijector import Bijector, check_positive_int
from ppl.flows.nets import made_apply, made_init, mlp_apply, mlp_init
from ppl.flows.transformers import AffineTransformer, SplineTransformer

__all__ = [
    "Autoregressive", "Coupling", "iaf", "maf", "real_nvp", "spline_coupling",
    "spline_autoregressive",
]  # fmt: skip


def check_hidden(owner, hidden):
    """`hidden` (a tuple or list of hidden layer sizes) as a tuple; OptionError otherwise."""
    if not isinstance(hidden, (tuple, list)):
        example = f"({hidden},) for one layer" if isinstance(hidden, int) else "(32, 32)"
        raise OptionError(
            f"{owner}: hidden={hidden!r} must be a tuple of hidden layer sizes, e.g. "
            f"hidden={example}"
        )
    for h in hidden:
        check_positive_int(owner, "hidden sizes", h)
    return tuple(hidden)


def _check_common(owner, hidden, context_size):
    hidden = check_hidden(owner, hidden)
    check_positive_int(owner, "context_size", context_size, minimum=0)
    return hidden


def _check_context(owner, context_size, context):
    got = 0 if context is None else context.shape[-1]
    if got != context_size:
        raise OptionError(
            f"{owner}: expects a context vector of size {context_size}, got "
            f"{'none' if context is None else f'size {got}'}"
        )


@dataclass(frozen=True)
class Autoregressive(Bijector):
    """A masked autoregressive bijector: y_i = τ(x_i; c_i), with τ the elementwise
    `transformer` (`AffineTransformer` or `SplineTransformer`) and its parameters c_i from
    a MADE network (`hidden` layer sizes). direction="iaf": c_i reads x_<i, so sampling
    (a guide's forward pass) is one pass; "maf": c_i reads y_<i, so density evaluation
    (the inverse) is one pass; the other direction takes dim passes. The Jacobian is
    triangular, so log|det| is a cheap sum. `context_size` > 0 makes it conditional on a
    context vector. `iaf`, `maf` and `spline_autoregressive` build the usual ones.

    >>> import jax, jax.numpy as jnp, ppl
    >>> layer = ppl.flows.Autoregressive(ppl.flows.SplineTransformer(), hidden=(8,))
    >>> params = layer.init(jax.random.key(0), 3)
    >>> y, log_det = layer.forward_and_log_det(params, jnp.array([0.3, -1.2, 0.5]))
    """

    transformer: object = AffineTransformer()
    hidden: tuple = (32, 32)
    direction: str = "iaf"
    context_size: int = 0
    has_inverse = True

    def __post_init__(self):
        object.__setattr__(self, "hidden", _check_common("Autoregressive", self.hidden,
                                                         self.context_size))  # fmt: skip
        if self.direction not in ("iaf", "maf"):
            raise OptionError(
                f"Autoregressive: direction={self.direction!r} must be 'iaf' (fast "
                "sampling) or 'maf' (fast density)"
            )

    def init(self, key, dim):
        self.check_size(dim)
        return made_init(key, dim, self.hidden, self.transformer.num_params, self.context_size)

    def _raw(self, params, v, context):
        _check_context("Autoregressive", self.context_size, context)
        return made_apply(params, v, self.hidden, self.transformer.num_params, context)

    def _one_pass_forward(self, params, x, context):  # conditioner reads the input
        y, log_det = self.transformer.forward(self._raw(params, x, context), x)
        return y, jnp.sum(log_det)

    def _one_pass_inverse(self, params, y, context):  # conditioner reads the output
        x, log_det = self.transformer.inverse(self._raw(params, y, context), y)
        return x, jnp.sum(log_det)

    def _sequential(self, step, params, target, context):
        """Solve v = step(raw(v)) for v: dim fixed-point passes, each fixing one more
        coordinate (the conditioner's autoregressive structure)."""

        def body(_, v):
            return step(self._raw(params, v, context), target)[0]

        return jax.lax.fori_loop(0, target.shape[-1], body, jnp.zeros_like(target))

    def forward_and_log_det(self, params, x, context=None):
        if self.direction == "iaf":
            return self._one_pass_forward(params, x, context)
        y = self._sequential(self.transformer.forward, params, x, context)
        return y, -self._one_pass_inverse(params, y, context)[1]

    def inverse_and_log_det(self, params, y, context=None):
        if self.direction == "maf":
            return self._one_pass_inverse(params, y, context)
        x = self._sequential(self.transformer.inverse, params, y, context)
        return x, -self._one_pass_forward(params, x, context)[1]


@dataclass(frozen=True)
class Coupling(Bijector):
    """A coupling bijector (RealNVP, Dinh et al. 2017): the first `split` coordinates
    (default dim // 2) pass unchanged, and an MLP (`hidden` layer sizes) of them gives the
    elementwise `transformer`'s parameters for the others. Both directions are one pass and
    it has the fast path gradient (`has_fast_score`); alternate it with
    `ppl.flows.Reverse()` or `Permutation` so every coordinate gets transformed.
    `real_nvp` and `spline_coupling` build the usual ones.

    >>> import jax, jax.numpy as jnp, ppl
    >>> layer = ppl.flows.Coupling(ppl.flows.AffineTransformer(), hidden=(8,))
    >>> params = layer.init(jax.random.key(0), 2)
    >>> x, log_det = layer.inverse_and_log_det(params, jnp.array([0.3, -1.2]))
    """

    transformer: object = AffineTransformer()
    hidden: tuple = (32, 32)
    split: int | None = None  # default dim // 2
    context_size: int = 0
    has_inverse = True

    def __post_init__(self):
        object.__setattr__(self, "hidden", _check_common("Coupling", self.hidden,
                                                         self.context_size))  # fmt: skip
        if self.split is not None:
            check_positive_int("Coupling", "split", self.split)

    def _split(self, dim):
        split = dim // 2 if self.split is None else self.split
        if not 1 <= split < dim:
            raise OptionError(
                f"Coupling: split={split} on events of size {dim} leaves "
                f"{'nothing to condition on' if split < 1 else 'nothing to transform'}; a "
                "coupling layer needs 1 <= split < event size (so event size >= 2): use an "
                "autoregressive layer for 1-D events"
            )
        return split

    def init(self, key, dim):
        self.check_size(dim)
        split = self._split(dim)
        p = self.transformer.num_params
        return mlp_init(key, split + self.context_size, self.hidden, dim - split, p)

    def _raw(self, params, a, context):
        """The transformer's parameters from the unchanged part `a` (and the context)."""
        h = a if context is None else jnp.concatenate([context, a])
        return mlp_apply(params, h, self.transformer.num_params)

    def _apply(self, fn, params, v, context):
        _check_context("Coupling", self.context_size, context)
        split = self._split(v.shape[-1])
        a, b = v[:split], v[split:]
        out, log_det = fn(self._raw(params, a, context), b)
        return jnp.concatenate([a, out]), jnp.sum(log_det)

    def forward_and_log_det(self, params, x, context=None):
        return self._apply(self.transformer.forward, params, x, context)

    has_fast_score = True

    def forward_and_score(self, params, x, score, context=None):
        # J = [[I, 0], [B, D]] with B = ∂y_b/∂x_a, D = diag(τ'): J⁻ᵀ v = (v_a - Bᵀ w_b, w_b)
        # with w_b = v_b / τ', v = score - ∇ log|det J|: one forward pass through the
        # conditioner, pulled back twice (for ∇ log|det J| and for Bᵀ w_b)
        _check_context("Coupling", self.context_size, context)
        split = self._split(x.shape[-1])
        a, b = x[:split], x[split:]

        def transformed(a, b):
            return self.transformer.forward(self._raw(params, a, context), b)

        (out, log_slope), pullback = jax.vjp(transformed, a, b)
        zeros_out, zeros_slope = jnp.zeros_like(out), jnp.zeros_like(log_slope)
        det_a, det_b = pullback((zeros_out, jnp.ones_like(log_slope)))
        w_b = (score[split:] - det_b) * jnp.exp(-log_slope)
        w_a = score[:split] - det_a - pullback((w_b, zeros_slope))[0]
        return jnp.concatenate([a, out]), jnp.concatenate([w_a, w_b])

    def inverse_and_log_det(self, params, y, context=None):
        return self._apply(self.transformer.inverse, params, y, context)


def iaf(hidden=(32, 32), context_size=0):
    """Affine inverse autoregressive layer: one pass to sample."""
    return Autoregressive(AffineTransformer(), hidden, "iaf", context_size)


def maf(hidden=(32, 32), context_size=0):
    """Affine masked autoregressive layer: one pass to evaluate the density."""
    return Autoregressive(AffineTransformer(), hidden, "maf", context_size)


def real_nvp(hidden=(32, 32), split=None, context_size=0):
    """Affine coupling layer (RealNVP)."""
    return Coupling(AffineTransformer(), hidden, split, context_size)


def spline_coupling(bins=8, bound=3.0, hidden=(32, 32), split=None, context_size=0):
    """Rational-quadratic spline coupling layer (neural spline flow)."""
    return Coupling(SplineTransformer(bins, bound), hidden, split, context_size)


def spline_autoregressive(bins=8, bound=3.0, hidden=(32, 32), direction="iaf", context_size=0):
    """Rational-quadratic spline autoregressive layer."""
    return Autoregressive(SplineTransformer(bins, bound), hidden, direction, context_size)
