"""JAX's persistent compilation cache, on by default for jaxreplica's programs.

A solve compiles one program per chain structure (a few seconds on a CPU); the cache
keeps the compiled programs on disk, so a new process loads them instead of compiling
again. The directory is ``$JAXREPLICA_CACHE_DIR`` if set, else
``$XDG_CACHE_HOME/jaxreplica`` (``~/.cache/jaxreplica``). ``JAXREPLICA_CACHE_DIR=off``
(or ``0``, ``none``, an empty value) leaves JAX's cache settings alone, as does a cache
directory you configured for JAX yourself (``JAX_COMPILATION_CACHE_DIR`` or
``jax.config``).
"""

from __future__ import annotations

import os
import pathlib

import jax

OFF = ("", "0", "off", "none", "false", "no")


def cache_directory() -> pathlib.Path | None:
    """Where compiled programs are kept, or None when the cache is switched off."""
    value = os.environ.get("JAXREPLICA_CACHE_DIR")
    if value is not None:
        return None if value.strip().lower() in OFF else pathlib.Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "jaxreplica"


def configure() -> pathlib.Path | None:
    """Point JAX's persistent cache at :func:`cache_directory` unless it is off or the
    user chose a directory already; return the directory in use (None if none)."""
    own = jax.config.jax_compilation_cache_dir
    if own:
        return pathlib.Path(own)
    path = cache_directory()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: run without the cache rather than fail
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    # Keep every program (JAX's default keeps only those above one second): building a
    # network or a dataset runs dozens of small eager operations, each compiled for its
    # shapes in 0.05-0.1 s, which together cost seconds in every new process.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return path
