"""JAX's persistent compilation cache, on by default for ppl users.

A second run of the same script then loads compiled programs from disk instead
of compiling them again. Set PPL_COMPILATION_CACHE=0 to switch it off, or
PPL_CACHE_DIR to move it; a cache directory the user configured in JAX wins.
"""

import os
from pathlib import Path

import jax


def default_cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ppl" / "jax"


def enable_compilation_cache(path=None):
    """Point JAX's persistent compilation cache at `path` (default: the user's cache dir)."""
    if os.environ.get("PPL_COMPILATION_CACHE", "1").lower() in ("0", "false", "off", "no"):
        return None
    if jax.config.jax_compilation_cache_dir and path is None:
        return jax.config.jax_compilation_cache_dir
    path = Path(path or os.environ.get("PPL_CACHE_DIR") or default_cache_dir())
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    return str(path)
