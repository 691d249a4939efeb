"""Minibatch log densities and their gradients, plain or with control variates.

A model whose data plate is `ppl.plate("data", N, subsample_size=B)` already
gives an unbiased minibatch estimate of its log likelihood: NumPyro's plate
scales the log density of the sites inside by N/B, and `LogDensity(z, key)`
draws the B indices from `key`. The sampler passes a fresh key at every step,
so minibatches are drawn inside the compiled loop from data held on the device.

Control variates (Baker, Fearnhead, Fox & Nemeth 2019): with a centring point
ẑ (e.g. the posterior mode) and the full-data gradient there,

    ∇̂ log p(z) = ∇ log p(ẑ) + [∇̂_B log p(z) − ∇̂_B log p(ẑ)],

both minibatch terms on the same minibatch. It is unbiased for any ẑ, and its
variance shrinks as z nears ẑ: near the mode it is orders of magnitude smaller
than the plain estimator's, at the cost of a second minibatch gradient.

>>> @ppl.model
... def mean(y):
...     mu = ppl.sample("mu", dist.Normal(0, 10))
...     with ppl.plate("data", len(y), subsample_size=10) as idx:
...         ppl.sample("y", dist.Normal(mu, 1), obs=y[idx])
>>> ld = mean(jnp.arange(100.0)).log_density()
>>> value, grad = estimate(Target(ld), jnp.zeros(1), jax.random.key(0))  # 10 of 100 points

Data parallel (`estimate(..., data_parallel=True)`): every device draws the same B
indices, takes its own B/D of them and evaluates the log density with its plate scaled
by N/(B/D); the mean over devices (one `pmean`) is prior + N/B · Σ over all B points,
the single-device estimate, summed in another order.
"""

from typing import Any, NamedTuple

import jax
import optax
from jax.sharding import Mesh, PartitionSpec
from numpyro.primitives import Messenger

from ppl.core.handlers import full_data
from ppl.errors import OptionError

__all__ = [
    "Target", "estimate", "minibatches", "subsampled_plates", "check_data_parallel", "full_data",
    "full_log_density", "find_center",
]  # fmt: skip


class Target(NamedTuple):
    """What a stochastic-gradient step needs: the density and, for control variates, the
    centring point and the full-data gradient there (both None without them)."""

    density: Any
    center: Any = None
    center_grad: Any = None


DATA = "data"  # the mesh axis a data-parallel minibatch is split over


def estimate(target, z, key, replace=True, data_parallel=False):
    """(minibatch log-density estimate, gradient estimate) at `z`; `key` draws the minibatch
    (see `minibatches` for `replace`). `data_parallel`: split the minibatch over
    `jax.devices()` (see the module docstring; `check_data_parallel` first)."""
    value_and_grad = _data_parallel if data_parallel else _value_and_grad
    value, grad = value_and_grad(target.density, z, key, replace)
    if target.center is not None:
        grad = grad - value_and_grad(target.density, target.center, key, replace)[1]
        grad = grad + target.center_grad
    return value, grad


def _value_and_grad(density, z, key, replace, part=None):
    def log_density(z):
        with minibatches(key, replace, part):
            return density(z, key)

    return jax.value_and_grad(log_density)(z)


def _data_parallel(density, z, key, replace):
    mesh = Mesh(jax.devices(), (DATA,))

    def local(density, z, key):
        part = (jax.lax.axis_index(DATA), mesh.size)
        return jax.lax.pmean(_value_and_grad(density, z, key, replace, part), DATA)

    whole = PartitionSpec()
    return jax.shard_map(
        local, mesh=mesh, in_specs=(whole, whole, whole), out_specs=whole, check_vma=False
    )(density, z, key)


def check_data_parallel(density, label):
    """OptionError unless the model has a subsampled plate and every such plate's batch
    splits evenly over the devices of `jax.devices()`."""
    n, plates = len(jax.devices()), subsampled_plates(density)
    if not plates:
        raise OptionError(
            f"{label}: data_parallel=True splits each step's minibatch over the devices, but "
            f"{density.model.name} has no subsampled plate; write its data plate as "
            "ppl.plate('data', N, subsample_size=B)"
        )
    for name, (_, batch) in plates.items():
        if batch % n:
            fit = -(-batch // n) * n
            raise OptionError(
                f"{label}: data_parallel=True splits each minibatch evenly over the {n} "
                f"devices of jax.devices(), but plate '{name}' has subsample_size={batch}, "
                f"not a multiple of {n}: use subsample_size={fit} (or another multiple of {n})"
            )


class minibatches(Messenger):
    """Handler: each subsampled plate draws its B of N indices from `key`, uniformly with
    replacement (`replace=True`: one `randint`, the cheapest draw) or without (the B
    smallest of N uniform numbers). Both keep the N/B scaling unbiased. NumPyro's own
    draw (a sequential Fisher–Yates shuffle on CPU) costs ~30x the randint per step.

    `part=(d, D)`: keep only the d-th of D equal slices of the B indices (d may be traced);
    the plate then scales by N/(B/D) (NumPyro takes the scale from the number of indices;
    `args` is updated to match). The mean over d of those estimates is the full one.
    """

    def __init__(self, key, replace=True, part=None):
        self.key, self.replace, self.part, self.count = key, replace, part, 0
        super().__init__()

    def process_message(self, msg):
        if msg["type"] != "plate" or msg["value"] is not None:
            return
        size, subsample_size = msg["args"][:2]
        # the first plate uses the key itself: a hash less per step (a loop on CPU)
        key = jax.random.fold_in(self.key, self.count) if self.count else self.key
        self.count += 1
        if self.replace:
            idx = jax.random.randint(key, (subsample_size,), 0, size)
        else:
            idx = jax.lax.top_k(jax.random.uniform(key, (size,)), subsample_size)[1]
        if self.part is not None:
            d, n = self.part
            local = subsample_size // n
            idx = jax.lax.dynamic_slice_in_dim(idx, d * local, local)
            msg["args"] = (size, local)
        msg["value"] = idx


def subsampled_plates(density):
    """name -> (size, subsample_size) of the model's plates that draw minibatches."""
    return density.subsampled_plates


def full_log_density(density):
    """z -> the log joint with every data point (subsampled plates see all indices)."""

    def log_density(z):
        with full_data():
            return density(z)

    return log_density


def find_center(density, z, num_steps, learning_rate=0.01):
    """A centring point for control variates: `num_steps` of Adam on the full-data log
    density from `z`; returns (ẑ, full-data gradient at ẑ). Compiled as one scan."""
    log_density = full_log_density(density)
    optimizer = optax.adam(learning_rate)

    def body(carry, _):
        z, opt_state = carry
        grad = jax.grad(log_density)(z)
        updates, opt_state = optimizer.update(-grad, opt_state, z)
        return (optax.apply_updates(z, updates), opt_state), None

    (z, _), _ = jax.lax.scan(body, (z, optimizer.init(z)), None, length=num_steps)
    return z, jax.grad(log_density)(z)
