"""JAX's persistent compilation cache, on by default for jaxreplica's programs.

A solve compiles one program per chain structure (a few seconds on a CPU); the cache
keeps the compiled programs on disk, so a new process loads them instead of compiling
again. The directory is ``$JAXREPLICA_CACHE_DIR`` if set, else
``$XDG_CACHE_HOME/jaxreplica`` (``~/.cache/jaxreplica``). ``JAXREPLICA_CACHE_DIR=off``
(or ``0``, ``none``, an empty value) leaves JAX's cache settings alone, as does a cache
directory you configured for JAX yourself (``JAX_COMPILATION_CACHE_DIR`` or
``jax.config``).

It also watches the memory mappings of the process, which compiled programs fill (see
:func:`release_if_crowded`).
"""

from __future__ import annotations

import os
import pathlib
import warnings

import jax
import jax.monitoring

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


# -- compiled programs held in memory ---------------------------------------------------
# A compiled CPU program keeps its kernels' code in memory mappings, about a thousand
# for a two-layer solver program. Linux limits the mappings of a process
# (vm.max_map_count, 65530 by default) and a process at the limit fails inside LLVM
# ("LLVM compilation error: Cannot allocate memory"), after some sixty chain structures:
# a long-running notebook kernel can get there. jax.clear_caches() gives the mappings back.
CROWDED = 0.75  # share of the limit at which the in-memory programs are released
_EVENTS = ("/jax/core/compile/backend_compile_duration", "/jax/compilation_cache/cache_retrieval_time_sec")
_new_programs = False  # a program was compiled or loaded since the last look
_RELEASE_HOOKS = []  # other holders of compiled programs, emptied with JAX's caches


def on_release(hook) -> None:
    """Call ``hook()`` whenever :func:`release_if_crowded` clears JAX's caches."""
    _RELEASE_HOOKS.append(hook)


def _note_program(event, duration, **kwargs):
    global _new_programs
    if event in _EVENTS:
        _new_programs = True


def mappings() -> tuple[int, int] | None:
    """``(in use, limit)`` of this process's memory mappings; None where the system does
    not say (not Linux)."""
    try:
        limit = int(pathlib.Path("/proc/sys/vm/max_map_count").read_text())
        with open("/proc/self/maps", "rb") as maps:
            used = sum(1 for _ in maps)
    except (OSError, ValueError):
        return None
    return used, limit


def release_if_crowded(tree) -> bool:
    """Where programs were compiled or loaded since the last call, ``tree`` holds no
    tracer (no transformation is being traced) and the process uses more than
    ``CROWDED`` of its memory-mapping limit: clear JAX's in-memory caches (programs then
    come back from the persistent cache, or compile again) and warn. True if it did."""
    global _new_programs
    if not _new_programs or any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(tree)):
        return False
    _new_programs = False
    use = mappings()
    if use is None or use[0] < CROWDED * use[1]:
        return False
    jax.clear_caches()
    for hook in _RELEASE_HOOKS:
        hook()
    warnings.warn(
        f"jaxreplica: this process held {use[0]} memory mappings, near the system's limit of {use[1]} "
        "(vm.max_map_count), most of them compiled programs (about a thousand per chain structure); "
        "JAX's in-memory caches were cleared so that it does not fail. Programs load again from the "
        "persistent cache. Raising the limit (sysctl -w vm.max_map_count=262144) avoids this.",
        RuntimeWarning, stacklevel=3)
    return True


jax.monitoring.register_event_duration_secs_listener(_note_program)
