"""The driver: runs any algorithm's step for many steps over many chains.

Steps run inside a jit-compiled `lax.scan` over a chunk of steps, vmapped over
chains; Python only runs between chunks, to move kept draws to the host and to
advance the progress bar. One compiled chunk serves every phase of a run
(warmup and sampling alike), and the key of step `i` of chain `c` is
`fold_in(chain_keys[c], i)`, so draws do not depend on how steps are chunked.
"""

import importlib.util
import sys
import time
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Phase", "run", "progress_enabled"]


class Phase(NamedTuple):
    """A named stretch of steps; `keep` says whether its collected output is returned."""

    label: str
    num_steps: int
    keep: bool


def progress_enabled(progress):
    """`None` means: show a bar in a terminal or a Jupyter notebook."""
    if progress is None:
        return sys.stderr.isatty() or "ipykernel" in sys.modules
    return bool(progress)


def _progress_bar(**kwargs):
    """tqdm's notebook widget where ipywidgets is installed, its text bar elsewhere."""
    if "ipykernel" in sys.modules and importlib.util.find_spec("ipywidgets"):
        from tqdm.notebook import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm(**kwargs)


def _live(step, collect, state, chain_keys, i):
    keys = jax.vmap(jax.random.fold_in, (0, None))(chain_keys, i)
    state, info = jax.vmap(step)(keys, state)
    return state, jax.vmap(collect)(state, info)


@partial(jax.jit, static_argnums=(0, 1))
def _chunk(program, chunk_len, data, state, chain_keys, start, stop):
    step, collect = program(data)
    live = partial(_live, step, collect)
    out_shape = jax.eval_shape(live, state, chain_keys, start)[1]

    def idle(state, chain_keys, i):
        return state, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), out_shape)

    def body(state, i):
        return jax.lax.cond(i < stop, live, idle, state, chain_keys, i)

    return jax.lax.scan(body, state, start + jnp.arange(chunk_len))


def _default_chunk_len(total):
    return int(min(max(1, -(-total // 20)), 1000))


def run(program, data, state, chain_keys, phases, *, progress=None, chunk_len=None):
    """Run a program's step over the chains in `state` (leading axis = chain) through `phases`.

    `program(data) -> (step, collect)`: `step(key, state) -> (state, info)` is the
    algorithm's step, `collect(state, info)` picks what to record per chain and
    step. `program` must be hashable (e.g. a frozen dataclass) and `data` a pytree
    (e.g. a LogDensity): the compiled chunk is then reused by every run with an
    equal program and data of the same shapes. Returns
    `(state, kept, timings)`: `kept` holds the collected output of the phases
    marked `keep`, as arrays of shape (chains, steps, ...), and `timings` the
    wall time of each phase in seconds.
    """
    total = sum(p.num_steps for p in phases)
    chunk_len = chunk_len or _default_chunk_len(total)
    kept, timings, start = [], {}, 0
    with _progress_bar(total=total, disable=not progress_enabled(progress), leave=True) as bar:
        for phase in phases:
            bar.set_description(phase.label)
            t0 = time.perf_counter()
            stop = start + phase.num_steps
            for lo in range(start, stop, chunk_len):
                state, out = _chunk(program, chunk_len, data, state, chain_keys, lo, stop)
                n = min(chunk_len, stop - lo)
                if phase.keep:
                    kept.append(jax.tree.map(lambda x, n=n: np.asarray(x[:n]), out))
                else:
                    jax.block_until_ready(state)
                bar.update(n)
            timings[phase.label] = time.perf_counter() - t0
            start = stop
    if kept:
        kept = jax.tree.map(lambda *xs: np.swapaxes(np.concatenate(xs), 0, 1), *kept)
    else:
        kept = None
    return state, kept, timings
