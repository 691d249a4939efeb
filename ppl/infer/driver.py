"""The driver: runs any algorithm's step for many steps over many chains.

Steps run inside a jit-compiled `lax.scan` over a chunk of steps, vmapped over
chains; Python only runs between chunks, to move kept draws to the host, to
advance the progress bar and, when asked, to write a checkpoint. One compiled
chunk serves every phase of a run (warmup and sampling alike), and the key of
step `i` of chain `c` is `fold_in(chain_keys[c], i)`, so draws do not depend on
how steps are chunked, where a run was resumed, or how chains are laid over
devices (`ppl.infer.sharding`).
"""

import importlib.util
import itertools
import math
import sys
import time
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from ppl.core import draws
from ppl.errors import OptionError
from ppl.infer import sharding
from ppl.infer.checkpoint import Checkpoint

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


def progress_bar(**kwargs):
    """tqdm's notebook widget where ipywidgets is installed, its text bar elsewhere."""
    if "ipykernel" in sys.modules and importlib.util.find_spec("ipywidgets"):
        from tqdm.notebook import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm(**kwargs)


#: Up to this many (step, chain) pairs a chunk derives all its keys before its loop.
KEY_TABLE_MAX = 2**20


def _step_keys(chain_keys, i):
    """The keys of step `i`, one per chain."""
    return jax.vmap(jax.random.fold_in, (0, None))(chain_keys, i)


def _key_table(chain_keys, steps):
    """`_step_keys` of every step in `steps`: (steps, chains) keys. For threefry keys,
    the same bits as `fold_in` from one hash per chain over all the steps: vmapped
    `fold_in` hashes (steps, chains, 1) arrays, whose size-1 last axis XLA's CPU code
    cannot vectorise (~20% of a small model's MCMC chunk program)."""
    if str(jax.random.key_impl(chain_keys)) != "threefry2x32":
        return jax.vmap(_step_keys, (None, 0))(chain_keys, steps)
    n, m = steps.shape[0], draws.padded(steps.shape[0])  # hashed: m steps, n kept
    counts = (steps[0] + jnp.arange(m, dtype=steps.dtype)).astype(jnp.uint32)  # fold_in's
    data = jax.random.key_data(chain_keys)[:, None, :]  # (chains, 1, 2)
    pairs = draws.threefry2x32(data[..., 0], data[..., 1], jnp.zeros_like(counts), counts)
    pairs = jnp.stack(pairs, axis=-1)[:, :n]  # (chains, steps, 2)
    return jax.random.wrap_key_data(jnp.swapaxes(pairs, 0, 1), impl="threefry2x32")


def _live(program, data, state, keys, i):
    # `i` is the step index shared by all chains: a program that asks for it can branch
    # on it (e.g. warmup or not) without vmap turning the branch into "compute both".
    step_index = getattr(program, "uses_step_index", False)
    step, collect = program(data, i) if step_index else program(data)
    if keys.shape[0] == 1:
        s, info = step(keys[0], jax.tree.map(lambda x: x[0], state))
        return jax.tree.map(lambda x: x[None], (s, collect(s, info)))
    state, info = jax.vmap(step)(keys, state)
    return state, jax.vmap(collect)(state, info)


@partial(jax.jit, static_argnums=(0, 1, 2))
def _chunk(program, chunk_len, partial_chunk, data, state, chain_keys, start, stop):
    """`chunk_len` steps from `start`; a `partial_chunk` idles at the steps from `stop` on
    (a per-step branch that full chunks, the common case, do without)."""
    live = partial(_live, program, data)
    steps = start + jnp.arange(chunk_len)
    # one vectorised hash for the chunk's keys (on CPU a hash inside the loop is a loop
    # of its own at every step), unless the table would be large
    table = chunk_len * chain_keys.shape[0] <= KEY_TABLE_MAX
    xs = (steps, _key_table(chain_keys, steps)) if table else steps

    def unpack(x):
        return x if table else (x, _step_keys(chain_keys, x))

    if not partial_chunk:

        def full(state, x):
            i, keys = unpack(x)
            return live(state, keys, i)

        return jax.lax.scan(full, state, xs)
    out_shape = jax.eval_shape(live, state, _step_keys(chain_keys, start), start)[1]

    def idle(state, keys, i):
        return state, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), out_shape)

    def body(state, x):
        i, keys = unpack(x)
        return jax.lax.cond(i < stop, live, idle, state, keys, i)

    return jax.lax.scan(body, state, xs)


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _sharded_chunk(program, chunk_len, partial_chunk, mesh, data, state, chain_keys, start, stop):
    """`_chunk` on each device's block of chains, as one SPMD program (see `sharding`)."""
    chains, whole = PartitionSpec(sharding.AXIS), PartitionSpec()
    blocks = jax.shard_map(
        partial(_chunk, program, chunk_len, partial_chunk),
        mesh=mesh,
        in_specs=(whole, chains, chains, whole, whole),
        out_specs=(chains, PartitionSpec(None, sharding.AXIS)),  # draws: (steps, chains, ...)
        check_vma=False,
    )
    return blocks(data, state, chain_keys, start, stop)


def _strongly_typed(x):
    """A chunk returns no weakly typed arrays (e.g. from `jnp.full(d, 0.1)`): one in the
    initial state would make the second chunk compile again, for the new types."""
    if isinstance(x, jax.Array) and jax.typeof(x).weak_type:
        # through the host: an eager convert is a program to compile (~10 ms cold); placed
        # as it was (a committed array, unlike the chunk's outputs, would compile it again)
        return jax.device_put(np.asarray(x), x.sharding if x.committed else None)
    return x


def _default_chunk_len(phases, pieces=20):
    """About a `pieces`-th of the run (at most 1000 steps), preferring a length that
    divides every phase, so no chunk is partial and only one chunk is compiled."""
    total = sum(p.num_steps for p in phases)
    target = min(max(1, -(-total // pieces)), 1000)
    common = math.gcd(*(p.num_steps for p in phases))
    fits = [d for d in range(max(1, target // 2), 2 * target + 1) if common % d == 0]
    return min(fits, key=lambda d: (abs(d - target), -d)) if fits else target


def _concat(chunks):
    """Kept chunks (steps, chains, ...) -> one pytree of host arrays, or None."""
    if not chunks:
        return None
    return jax.tree.map(lambda *xs: np.concatenate(xs), *chunks) if len(chunks) > 1 else chunks[0]


def run(
    program, data, state, chain_keys, phases, *, progress=None, chunk_len=None,
    chain_method="vectorized", checkpoint=None, monitor=None,
):  # fmt: skip
    """Run a program's step over the chains in `state` (leading axis = chain) through `phases`.

    `program(data) -> (step, collect)` (or `program(data, i)`, given the step index
    shared by all chains, when `program.uses_step_index` is true): `step(key, state) ->
    (state, info)` is the
    algorithm's step, `collect(state, info)` picks what to record per chain and
    step. `program` must be hashable (e.g. a frozen dataclass) and `data` a pytree
    (e.g. a LogDensity): the compiled chunk is then reused by every run with an
    equal program and data of the same shapes. Returns
    `(state, kept, timings)`: `kept` holds the collected output of the phases
    marked `keep`, as arrays of shape (chains, steps, ...), and `timings` the
    wall time of each phase in seconds.

    chain_method: "vectorized" runs the chains as one vmap on the default device;
        "sharded" splits them over `jax.devices()` (see `ppl.infer.sharding`), and
        the returned state stays sharded. Chain c gets the keys of chain c either way.
    checkpoint: a file path (see `ppl.infer.checkpoint`). After every chunk the
        run's state is written there; if the file exists when the run starts, the
        run resumes from it (after checking it belongs to this very run) and returns
        exactly what an uninterrupted run returns. The file is kept when the run
        ends, so running again returns the same result without sampling; delete it
        to sample afresh. `timings` then add up the time of every attempt.
    monitor: called between chunks as `monitor(state, out, done)`, with `out` the
        chunk's collected output on the host ((steps, chains, ...); None in a phase
        not kept) and `done` the steps run so far; it returns `(postfix, stop)`: a
        string shown after the bar (or None), and whether to end the run there (the
        remaining steps of every phase are skipped; `kept` then ends at `done`).

    A program may run a fast step that only flags trouble (e.g. a non-finite value)
    instead of guarding against it at every step: it then has `safe_variant()` (the
    guarded program) and `needs_safe(state, out) -> bool`, checked on the host after each
    chunk; a flagged chunk is run again from its start with the safe program. Steps
    depend only on their keys, so the result is exactly the safe program's.
    """
    if chain_method not in sharding.CHAIN_METHODS:
        raise OptionError(
            f"chain_method must be one of {', '.join(map(repr, sharding.CHAIN_METHODS))}, "
            f"got {chain_method!r}"
        )
    phases = [Phase(*p) for p in phases]
    total = sum(p.num_steps for p in phases)
    # Python runs between chunks: twenty of them for a lively bar, checkpoint or monitor;
    # else four (still overlapping the host's copies with the device), ~0.7 ms less a call.
    watched = progress_enabled(progress) or checkpoint is not None or monitor is not None
    chunk_len = chunk_len or _default_chunk_len(phases, 20 if watched else 4)
    mesh = sharding.chain_mesh(np.shape(chain_keys)[0]) if chain_method == "sharded" else None
    state = jax.tree.map(_strongly_typed, state)
    done, kept, timings, saver = 0, [], {}, None
    if checkpoint is not None:
        saver = _checkpoint(checkpoint, program, data, state, chain_keys, phases, mesh)
        resumed = saver.load(lambda: _kept_shape(program, data, state, chain_keys))
        if resumed is not None:
            state, done, saved, timings = resumed
            kept = [saved] if saved is not None else []
    safe = program.safe_variant() if hasattr(program, "safe_variant") else None
    if mesh is None:

        def chunk(program, partial_chunk, *args):
            return _chunk(program, chunk_len, partial_chunk, *args)
    else:

        def chunk(program, partial_chunk, *args):
            return _sharded_chunk(program, chunk_len, partial_chunk, mesh, *args)

        data = sharding.put(data, sharding.replicated(mesh))
        state, chain_keys = sharding.put((state, chain_keys), sharding.chains(mesh))
    starts = itertools.accumulate((p.num_steps for p in phases), initial=0)
    stop_all = False
    with progress_bar(total=total, initial=done, disable=not progress_enabled(progress)) as bar:
        for phase, start in zip(phases, starts):
            stop = start + phase.num_steps
            timings.setdefault(phase.label, 0.0)
            if done >= stop or stop_all:
                continue  # empty, run by an earlier attempt, or stopped by the monitor
            t0 = time.perf_counter()
            los = range(max(start, done), stop, chunk_len)

            def launch(k, state, program=program, stop=stop, los=los):
                """Chunk k of the phase from `state`, queued on the device (or None)."""
                if k == len(los):
                    return None
                n = min(chunk_len, stop - los[k])
                return chunk(program, n < chunk_len, data, state, chain_keys, los[k], stop)

            ahead = _timed_launch(bar, phase.label, launch, state)
            for k, lo in enumerate(los):
                before, n = state, min(chunk_len, stop - lo)
                state, out = ahead
                # Queue the next chunk before looking at this one: the device keeps
                # stepping while the host checks, copies and reports.
                ahead = launch(k + 1, state)
                if safe is not None and program.needs_safe(state, out):
                    state, out = launch(k, before, program=safe)
                    ahead = launch(k + 1, state)  # the queued one began from a flagged state
                if phase.keep:
                    # (sliced on the host: a device op would wait for the queued chunk)
                    out = jax.tree.map(lambda x, n=n: sharding.to_host(x)[:n], out)
                    kept.append(out)
                else:
                    out = None
                    jax.block_until_ready(state)
                if monitor is not None:
                    postfix, stop_all = monitor(state, out, lo + n)
                    if postfix:
                        bar.set_postfix_str(postfix, refresh=False)
                bar.update(n)
                done = lo + n
                if saver is not None:
                    kept = [_concat(kept)] if kept else []
                    spent = {
                        **timings,
                        phase.label: timings[phase.label] + time.perf_counter() - t0,
                    }
                    saver.save(done, phase.label, state, _concat(kept), spent)
                if stop_all:
                    break
            timings[phase.label] += time.perf_counter() - t0
    kept = _concat(kept)
    if kept is not None:
        kept = jax.tree.map(lambda x: np.swapaxes(x, 0, 1), kept)
    return sharding.gather(state), kept, timings


def _timed_launch(bar, label, launch, state):
    """A phase's first chunk, which may compile first: the bar says so meanwhile, and
    its rate and time left leave the compilation out (a queued chunk returns at once)."""
    if bar.disable:
        return launch(0, state)
    bar.set_description(f"{label} (compiling)")
    t0 = time.perf_counter()
    out = launch(0, state)
    spent = time.perf_counter() - t0
    if spent > 0.05:
        bar.start_t += spent
        bar.last_print_t += spent
    bar.set_description(label)
    return out


def _checkpoint(path, program, data, state, chain_keys, phases, mesh):
    platform = jax.devices()[0].platform
    layout = f"sharded over {mesh.size} {platform} devices" if mesh else f"vectorized on {platform}"
    return Checkpoint(path, program, data, state, chain_keys, phases, layout)


def _kept_shape(program, data, state, chain_keys):
    """Shapes of what one step collects: (1, chains, ...) per leaf."""
    return jax.eval_shape(partial(_chunk, program, 1, False), data, state, chain_keys, 0, 1)[1]
