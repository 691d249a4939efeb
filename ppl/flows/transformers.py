"""Elementwise monotone maps whose parameters a conditioner computes ("transformers"):
`forward(raw, x) -> (y, log dy/dx)` and `inverse(raw, y) -> (x, log dx/dy)`, elementwise
over x of shape (n,), with raw of shape (num_params, n).

- `AffineTransformer`: y = exp(s) x + t, raw = (t, s); s clipped to [-5, 3] as in
  numpyro's InverseAutoregressiveTransform, for stable training.
- `SplineTransformer`: the monotone rational-quadratic spline of Durkan et al. (2019),
  K bins on [-bound, bound] with the identity outside (linear tails, unit slopes at the
  ends); raw = (K unnormalised widths, K heights, K-1 interior slopes). raw = 0 is the
  identity (equal bins, unit slopes).
"""

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ppl.errors import OptionError
from ppl.flows.bijector import check_positive_int, check_positive_number

__all__ = ["AffineTransformer", "SplineTransformer"]

LOG_SCALE_MIN, LOG_SCALE_MAX = -5.0, 3.0


def _slope(s, d0, d1, xi, t, den):
    """dy/dx of the rational-quadratic segment (bin slope s, knot derivatives d0, d1) at
    relative position xi, with t = xi (1 - xi) and den its denominator."""
    return s**2 * (d1 * xi**2 + 2 * s * t + d0 * (1 - xi) ** 2) / den**2


@dataclass(frozen=True)
class AffineTransformer:
    """The elementwise affine map y = exp(s)·x + t inside an `Autoregressive` or
    `Coupling` layer (as in IAF, MAF, RealNVP): a conditioner computes raw = (t, s), and
    s is clipped to [-5, 3] for stable training. Cheap and exactly invertible;
    `SplineTransformer` is more flexible per layer.

    >>> import jax.numpy as jnp, ppl
    >>> t = ppl.flows.AffineTransformer()
    >>> y, log_slope = t.forward(jnp.array([[1.0, 0.0], [0.0, 0.5]]), jnp.ones(2))  # raw: (t, s)
    """

    num_params = 2

    def forward(self, raw, x):
        shift, s = raw[0], jnp.clip(raw[1], LOG_SCALE_MIN, LOG_SCALE_MAX)
        return jnp.exp(s) * x + shift, s

    def inverse(self, raw, y):
        shift, s = raw[0], jnp.clip(raw[1], LOG_SCALE_MIN, LOG_SCALE_MAX)
        return (y - shift) * jnp.exp(-s), -s


MIN_BIN, MIN_SLOPE = 1e-3, 1e-3
_SLOPE_OFFSET = math.log(math.expm1(1.0 - MIN_SLOPE))  # softplus(offset) + MIN_SLOPE = 1
MAX_BINS = round(1 / MIN_BIN) - 1  # bins of width >= MIN_BIN (of the interval) must fit


def check_spline_options(owner, bins, bound):
    """(bins, bound) as (int, float); OptionError unless `bins` is an integer in
    1..MAX_BINS and `bound` a positive finite number (Python, NumPy or JAX scalars)."""
    check_positive_int(owner, "bins", bins)
    if bins > MAX_BINS:
        raise OptionError(
            f"{owner}: bins={bins} is too many: every bin is at least {MIN_BIN} of "
            f"[-bound, bound] wide, so bins must be <= {MAX_BINS}"
        )
    return int(bins), check_positive_number(owner, "bound", bound)


@dataclass(frozen=True)
class SplineTransformer:
    """The monotone rational-quadratic spline of neural spline flows (Durkan et al. 2019),
    elementwise, inside an `Autoregressive` or `Coupling` layer: `bins` bins on
    [-bound, bound] and the identity outside; a conditioner computes its 3·bins − 1 raw
    parameters (bin widths, heights, interior slopes), and raw = 0 is the identity. More
    flexible than `AffineTransformer` (a few layers can make multimodal marginals), with
    an exact inverse.

    >>> import ppl
    >>> layer = ppl.flows.Coupling(ppl.flows.SplineTransformer(bins=8, bound=3.0))
    """

    bins: int = 8
    bound: float = 3.0

    def __post_init__(self):
        bins, bound = check_spline_options("SplineTransformer", self.bins, self.bound)
        object.__setattr__(self, "bins", bins)
        object.__setattr__(self, "bound", bound)

    @property
    def num_params(self):
        return 3 * self.bins - 1

    def _knots(self, raw):
        """Knot positions (K+1,), heights (K+1,), slopes (K+1,) of one dimension."""
        k, b = self.bins, self.bound

        def edges(r):
            size = MIN_BIN + (1 - MIN_BIN * k) * jax.nn.softmax(r)
            cum = jnp.concatenate([jnp.zeros(1), jnp.cumsum(size)])
            return 2 * b * cum - b

        inner = MIN_SLOPE + jax.nn.softplus(raw[2 * k :] + _SLOPE_OFFSET)
        slopes = jnp.concatenate([jnp.ones(1), inner, jnp.ones(1)])
        xs, ys = edges(raw[:k]), edges(raw[k : 2 * k])
        return xs.at[-1].set(b), ys.at[-1].set(b), slopes

    def _bin(self, edges, v):
        return jnp.clip(jnp.searchsorted(edges, v, side="right") - 1, 0, self.bins - 1)

    def _segment(self, raw, v, edges_of):
        """Knots (xs, ys, d), whether v is inside the bound, v clipped to it, and its bin i
        with width w, height h and slope s, the bin found on the edges `edges_of` picks
        (0: the xs, for a forward pass; 1: the ys, for an inverse)."""
        knots = self._knots(raw)
        xs, ys, _ = knots
        vc = jnp.clip(v, -self.bound, self.bound)
        i = self._bin(knots[edges_of], vc)
        w, h = xs[i + 1] - xs[i], ys[i + 1] - ys[i]
        return knots, jnp.abs(v) < self.bound, vc, i, w, h, h / w

    def _forward1(self, raw, x):
        (xs, ys, d), inside, xc, i, w, h, s = self._segment(raw, x, 0)
        xi = (xc - xs[i]) / w
        t = xi * (1 - xi)
        den = s + (d[i + 1] + d[i] - 2 * s) * t
        y = ys[i] + h * (s * xi**2 + d[i] * t) / den
        slope = _slope(s, d[i], d[i + 1], xi, t, den)
        return jnp.where(inside, y, x), jnp.where(inside, jnp.log(slope), 0.0)

    def _inverse1(self, raw, y):
        (xs, ys, d), inside, yc, i, w, h, s = self._segment(raw, y, 1)
        dy = yc - ys[i]
        c2 = d[i + 1] + d[i] - 2 * s
        a = h * (s - d[i]) + dy * c2
        b = h * d[i] - dy * c2
        c = -s * dy
        disc = jnp.maximum(b**2 - 4 * a * c, 0.0)
        xi = 2 * c / (-b - jnp.sqrt(disc))
        t = xi * (1 - xi)
        den = s + c2 * t
        slope = _slope(s, d[i], d[i + 1], xi, t, den)
        x = xs[i] + xi * w
        return jnp.where(inside, x, y), jnp.where(inside, -jnp.log(slope), 0.0)

    def forward(self, raw, x):
        return jax.vmap(self._forward1, (1, 0))(raw, x)

    def inverse(self, raw, y):
        return jax.vmap(self._inverse1, (1, 0))(raw, y)
