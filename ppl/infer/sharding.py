"""Chains laid over devices: `infer(..., chain_method="sharded")`.

`chain_method="vectorized"` (the default) runs all chains as one `vmap` on the
default device. `"sharded"` splits the chain axis evenly over every device
`jax.devices()` reports: state and chain keys are `jax.Array`s with a
`NamedSharding` over a 1-D mesh with axis "chains", and each chunk of steps is
one SPMD program (`shard_map`) in which every device runs its block of chains
with the same vmapped step. Devices share nothing inside a chunk (a NUTS chain
on one device never waits for a long trajectory on another); they meet between
chunks, when draws go to the host. One program is compiled for all devices.

Same draws? Chain `c` uses the keys of chain `c` in both layouts, so both runs
are the same Markov chains, and each layout is bit-for-bit reproducible. But
XLA optimises a partitioned program, and a vmap over a different number of
chains, a little differently (it may reorder a product or a sum), so values can
differ in the last bit. On a Gaussian target rounding does not grow and the
layouts agree to float tolerance; on a curved one, MCMC amplifies a one-ulp
difference until, after tens of steps, a chain takes a different path: the
draws are then equally valid but not equal. Resume a checkpoint with the layout
that wrote it (the checkpoint checks this).

Several hosts: start one Python process per host and call
`jax.distributed.initialize()` in each before any other JAX work (on SLURM or
Cloud TPU it finds its peers by itself; elsewhere pass
`coordinator_address="host0:1234", num_processes=N, process_id=i`). Then
`jax.devices()` spans every host, and every process runs the same script with
the same seed: `ppl.infer(m, num_chains=..., chain_method="sharded")`. Each
process starts every chain (cheap) and keeps its own devices' blocks
(`make_array_from_callback`); the draws are gathered to every process between
chunks (`process_allgather`), so each gets the whole Posterior. With
`checkpoint=`, process 0 writes the file; put it on a file system every host
sees so a resumed run finds it. This multi-host path follows JAX's documented
recipe but is untested here: the tests run one host with several simulated CPU
devices.
"""

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ppl.errors import OptionError

__all__ = [
    "AXIS", "CHAIN_METHODS", "chain_mesh", "chains", "replicated", "put", "to_host", "gather",
]  # fmt: skip

AXIS = "chains"
CHAIN_METHODS = ("vectorized", "sharded")


def chain_mesh(num_chains, devices=None):
    """A 1-D mesh over all devices for `num_chains` chains; OptionError unless they divide evenly."""
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    if num_chains % n:
        fit = -(-num_chains // n) * n
        raise OptionError(
            f"chain_method='sharded' splits chains evenly over the {n} devices of "
            f"jax.devices(), but num_chains={num_chains} is not a multiple of {n}: "
            f"use num_chains={fit} (or another multiple of {n})"
        )
    return Mesh(np.array(devices), (AXIS,))


def chains(mesh):
    """The chain (leading) axis split over the mesh."""
    return NamedSharding(mesh, PartitionSpec(AXIS))


def replicated(mesh):
    return NamedSharding(mesh, PartitionSpec())


def _is_key(x):
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _put_array(x, sharding):
    if sharding.is_fully_addressable:
        return jax.device_put(x, sharding)
    host = np.asarray(x)  # every process holds the whole value; keep this process's blocks
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def put(tree, sharding):
    """Every leaf of `tree` laid out by `sharding` (typed PRNG keys included)."""

    def leaf(x):
        if _is_key(x):
            data = _put_array(jax.random.key_data(x), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        return _put_array(x, sharding)

    return jax.tree.map(leaf, tree)


def to_host(x):
    """A numpy copy of an array, gathered from every process when it spans several hosts."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def gather(tree):
    """`tree` with arrays that span several hosts replaced by full host copies (keys kept typed)."""

    def leaf(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return x
        if _is_key(x):
            data = to_host(jax.random.key_data(x))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        return to_host(x)

    return jax.tree.map(leaf, tree)
