"""Checkpoint files: a run's whole state between chunks, so a killed run resumes exactly.

With `infer(..., checkpoint="run.ckpt")` the driver rewrites the file after
every chunk of steps (about 20 per run): the chain state, the chain keys, the
step reached and its phase, the draws kept so far and the time spent per phase.
A later call with the same path picks up at that step, provided it is the same
run: same method and settings, num_warmup/num_samples/num_chains, seed, model
(its latent sites, a digest of its code and of its data, its other arguments by
value), chain layout (chain_method, device
count and kind), ppl and jax versions. Draws depend only on the seed and the
step index, never on where a run stopped, so the result equals an uninterrupted
run's bit for bit. The chunk length is free to change between attempts.

When the run finishes the file is kept, holding the whole run: calling again
returns the same Posterior without sampling. Delete the file (or pass another
path) to sample afresh. Each write holds every draw kept so far, so over a run
the writes add up to several times (at most about ten times) the size of its draws.

The file is a numpy `.npz` (a zip of `.npy` arrays, read with
`allow_pickle=False`), written to a temporary file and renamed over the old one,
so a kill mid-write leaves the previous checkpoint intact: `meta` holds JSON
(format, fingerprint, step, phase, timings), `state_<i>` and `kept_<i>` the
leaves of the state and of the kept draws, `keys` the chain keys (typed PRNG
keys are stored as their key data). Tree structures are not stored: they are
rebuilt from the run's fresh start state, whose layout is part of the
fingerprint. A file that cannot be read, or whose fingerprint differs from the
run asking for it, raises `CheckpointError` naming the path and what differs:
a run never restarts silently.
"""

import glob
import hashlib
import inspect
import json
import numbers
import os
import re
import types

import jax
import jax.numpy as jnp
import numpy as np

from ppl.errors import CheckpointError
from ppl.infer.sharding import to_host

__all__ = ["Checkpoint", "CheckpointError", "fingerprint"]

FORMAT = "ppl.checkpoint/1"

_LABELS = {
    "method": "method and its settings",
    "phases": "steps per phase (num_warmup, num_samples)",
    "num_chains": "num_chains",
    "layout": "chain layout (chain_method and devices)",
    "seed": "seed (digest of the chain keys)",
    "model": "model",
    "data": "model data (digest of its arrays)",
    "arguments": "model arguments other than arrays",
    "state": "sampler state layout",
    "ppl": "ppl version",
    "jax": "jax version",
}


def _is_key(x):
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _host(x):
    """A numpy copy of a leaf; PRNG keys as their key data."""
    return to_host(jax.random.key_data(x) if _is_key(x) else x)


def _clean(text):
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)  # object addresses change between processes


def _digest(leaves):
    h = hashlib.sha256()
    for x in leaves:
        a = np.ascontiguousarray(_host(x))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _density(data):
    """The LogDensity a program runs on (itself, or a stochastic-gradient Target's)."""
    return (
        data if isinstance(getattr(data, "sites", None), dict) else getattr(data, "density", None)
    )


def _model(data):
    density = _density(data)
    if density is None:
        return None
    model = density.model
    return {
        "name": model.name,
        "code": _code_digest(model.fn),
        "sites": {
            n: f"{s.distribution}{tuple(s.shape)} {s.dtype}" for n, s in density.sites.items()
        },
    }


def _code_digest(fn):
    """A digest of a function's bytecode and constants (nested functions included) and
    of the numbers, strings and arrays it reads from its module's globals or closure, so
    an edited model body (not its comments or layout) or constant is a different run.
    (Functions it calls are not followed.)"""
    fn = inspect.unwrap(fn)
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    h = hashlib.sha256()
    names = set()

    def add(c):
        h.update(c.co_code + repr(c.co_names).encode())
        names.update(c.co_names)
        for const in c.co_consts:
            add(const) if isinstance(const, types.CodeType) else h.update(repr(const).encode())

    add(code)
    scope = getattr(fn, "__globals__", {})
    values = [scope[n] for n in sorted(names) if n in scope]
    values += [cell.cell_contents for cell in getattr(fn, "__closure__", None) or ()]
    for v in values:
        if isinstance(v, (numbers.Number, str)):
            h.update(repr(v).encode())
        elif isinstance(v, (np.ndarray, jax.Array)) and not _is_key(v):
            h.update(_digest([v]).encode())
    return h.hexdigest()[:16]


def _arguments(data):
    """The model's arrays kept out of the pytree (`BoundModel.use_static_data`), and its
    other arguments by value."""
    density = _density(data)
    if density is None:
        return [], []
    model = density.model
    leaves = jax.tree.leaves((model.args, model.kwargs))
    arrays = [x for x in leaves if isinstance(x, (np.ndarray, jax.Array))]
    others = [_clean(repr(x)) for x in leaves if not isinstance(x, (np.ndarray, jax.Array))]
    return (arrays if model.static_data else []), others


def _spec(x):
    return f"{np.dtype(x.dtype) if not _is_key(x) else x.dtype}{tuple(np.shape(x))}"


def fingerprint(program, data, state, chain_keys, phases, layout):
    """What must match for a checkpoint to resume this run, as JSON-ready values."""
    from ppl import __version__

    kept = [p.label for p in phases if p.keep]
    static_arrays, arguments = _arguments(data)
    fp = {
        "method": _clean(repr(program)),
        "phases": ", ".join(f"{p.label}={p.num_steps}" for p in phases) + f" (kept: {kept})",
        "num_chains": int(np.shape(chain_keys)[0]),
        "layout": layout,
        "seed": _digest([chain_keys]),
        "model": _model(data),
        "data": _digest(jax.tree.leaves(data) + static_arrays),
        "arguments": arguments,
        "state": {
            "structure": _clean(str(jax.tree.structure(state))),
            "leaves": [_spec(x) for x in jax.tree.leaves(state)],
        },
        "ppl": __version__,
        "jax": jax.__version__,
    }
    return json.loads(json.dumps(fp))


def _diff(old, new, path=""):
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in dict.fromkeys([*old, *new]):
            sub = f"{path}.{k}" if path else _LABELS.get(k, k)
            out += _diff(old.get(k, "<absent>"), new.get(k, "<absent>"), sub)
        return out
    return [] if old == new else [f"{path}: {old!r} in the file, {new!r} now"]


def _kept_steps(phases, step):
    total, start = 0, 0
    for p in phases:
        if p.keep:
            total += min(max(step - start, 0), p.num_steps)
        start += p.num_steps
    return total


def _remove_orphans(path):
    """Delete the temporary files of saves cut short (the process that wrote one was
    killed before its rename): `path.tmp<pid>` with no such process running."""
    for tmp in glob.glob(glob.escape(path) + ".tmp*"):
        pid = tmp[len(path) + 4 :]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)  # raises if no such process
        except ProcessLookupError:
            try:
                os.remove(tmp)
            except OSError:
                pass
        except OSError:
            pass  # alive (another user's process): leave it


class Checkpoint:
    """The checkpoint file of one run: `load()` before the first chunk, `save()` after each."""

    def __init__(self, path, program, data, state, chain_keys, phases, layout):
        self.path = os.fspath(path)
        self.phases = list(phases)
        self.fingerprint = fingerprint(program, data, state, chain_keys, phases, layout)
        self.state_tree = jax.tree.structure(state)
        self.state_leaves = jax.tree.leaves(state)
        self.chain_keys = chain_keys

    def _corrupt(self, why):
        return CheckpointError(
            f"checkpoint file {self.path!r} is corrupt or truncated ({why}); delete it to "
            "start the run afresh"
        )

    def _read(self):
        try:
            with np.load(self.path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
            meta = arrays.pop("meta", None)
            meta = {} if meta is None else json.loads(meta.tobytes().decode())
        except Exception as e:  # any failure to parse the file means it is damaged
            raise self._corrupt(f"{type(e).__name__}: {e}") from e
        if not isinstance(meta, dict):
            raise self._corrupt("its metadata is not a JSON object")
        if meta.get("format") != FORMAT:
            raise CheckpointError(
                f"{self.path!r} is not a ppl checkpoint (format {meta.get('format')!r}, "
                f"expected {FORMAT!r}); pass another checkpoint path"
            )
        return meta, arrays

    def load(self, kept_template):
        """None when there is no file; else `(state, step, kept, timings)` to resume from.

        `kept_template()` gives the collected output of one step (shape (1, chains, ...)),
        to check and rebuild the kept draws; `kept` is None when none were kept yet.
        """
        _remove_orphans(self.path)
        if not os.path.exists(self.path):
            return None
        meta, arrays = self._read()
        diffs = _diff(meta.get("fingerprint", {}), self.fingerprint)
        if diffs:
            raise CheckpointError(
                f"checkpoint file {self.path!r} was written by a different run; it differs "
                "from this one in:\n  - " + "\n  - ".join(diffs) + "\nRun with the same "
                "settings to resume it, or pass another checkpoint path (or delete the file) "
                "to start afresh."
            )
        total = sum(p.num_steps for p in self.phases)
        step = meta.get("step")
        if not isinstance(step, int) or not 0 <= step <= total:
            raise self._corrupt(f"step {step!r} outside 0..{total}")
        state = [self._array(arrays, f"state_{i}", t) for i, t in enumerate(self.state_leaves)]
        state = jax.tree.unflatten(self.state_tree, state)
        kept = None
        steps = _kept_steps(self.phases, step)
        if steps:
            template = kept_template()
            leaves = [
                self._array(arrays, f"kept_{i}", t, steps)
                for i, t in enumerate(jax.tree.leaves(template))
            ]
            kept = jax.tree.unflatten(jax.tree.structure(template), leaves)
        return state, step, kept, dict(meta.get("timings", {}))

    def _array(self, arrays, name, template, steps=None):
        if name not in arrays:
            raise self._corrupt(f"array {name} missing")
        a = arrays[name]
        want = jax.eval_shape(jax.random.key_data, template) if _is_key(template) else template
        shape = tuple(want.shape) if steps is None else (steps, *want.shape[1:])
        if a.shape != shape or a.dtype != np.dtype(want.dtype):
            raise self._corrupt(f"{name} is {a.dtype}{a.shape}, expected {want.dtype}{shape}")
        if steps is not None:
            return a
        if _is_key(template):
            return jax.random.wrap_key_data(jnp.asarray(a), impl=jax.random.key_impl(template))
        if jax.typeof(template).weak_type:  # keep the type the compiled chunk was traced with
            return template.at[...].set(a)
        return jnp.asarray(a)

    def save(self, step, phase, state, kept, timings):
        """Write the file atomically (temporary file, then rename); process 0 writes.

        `kept` is a pytree of host arrays (steps, chains, ...) or None.
        """
        arrays = {f"state_{i}": _host(x) for i, x in enumerate(jax.tree.leaves(state))}
        arrays["keys"] = _host(self.chain_keys)
        if kept is not None:
            arrays.update({f"kept_{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(kept))})
        if jax.process_index() != 0:
            return
        meta = {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "step": int(step),
            "phase": phase,
            "timings": timings,
        }
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        tmp = f"{self.path}.tmp{os.getpid()}"
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as e:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise CheckpointError(f"cannot write checkpoint file {self.path!r}: {e}") from e
