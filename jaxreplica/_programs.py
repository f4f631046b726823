"""Solver programs found on disk before tracing.

JAX's persistent cache keys a compiled program by its lowered text, so every new process
still traces and lowers each solver program (0.3-0.8 s of Python apiece for a two-layer
chain) before it can look the program up. :func:`call` keys a program by what decides it
before any tracing (this package's source, JAX's version and settings, the device, the
structure of the arguments and the shapes of their numbers, the static options) and keeps
the program, exported as StableHLO (:mod:`jax.export`), in ``<cache directory>/programs``.
A later process reads it and compiles it through JAX's persistent cache, which holds the
executable: neither tracing nor lowering of the solver runs again.

It serves the calls that are not being traced: an eager ``solve(chain)``, a ``solve``
inside an eager ``jax.vmap`` (the lanes are laid out in one batched program, the one
``jax.vmap`` of the jitted solver compiles), and callers that compile one program ahead
of many calls (:func:`compiled`: the Figure-2 sweep). Under ``jit``, ``grad`` or any other
transformation, with the cache switched off, and wherever the key cannot be written
down exactly (a user's Python function inside the chain, arrays placed on other
devices), :func:`call` returns None and the caller takes the ordinary jitted path: that
path is also the only one where derivatives are taken.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import importlib.util
import os
import pathlib
import pickle
import platform
import threading

import jax
import jax.extend
import jaxlib
import numpy as np
from jax import export
from jax.interpreters import batching

from jaxreplica._cache import configure, on_release

try:  # how an eager jax.vmap hands its values to a function; without it, no batched path
    from jax._src.interpreters.batching import BatchTracer as _BatchTracer
except ImportError:  # pragma: no cover - a JAX that moved it
    _BatchTracer = None

FORMAT = 1  # bump when what is written changes
_PACKAGE = pathlib.Path(__file__).resolve().parent
_held: dict = {}  # in-memory programs of this process: key -> _Program
_lock = threading.Lock()


class _Unkeyable(Exception):
    """A value whose effect on the program cannot be written down exactly."""


@dataclasses.dataclass(frozen=True)
class _Program:
    run: object  # jax.jit of the exported program: the flat leaves in, the output's leaves out
    out_tree: object


# -- keys ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _source_digest() -> str:
    """Digest of every Python file of the package (a changed solver is a new program)."""
    h = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        h.update(str(path.relative_to(_PACKAGE)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _cpu_flags() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return ""


@functools.lru_cache(maxsize=None)
def _machine() -> tuple:
    """What compiles a program here: the versions of JAX and NumPy (which builds the
    rules' constants), XLA's flags, the device, the CPU."""
    device = jax.devices()[0]
    return (FORMAT, jax.__version__, jaxlib.__version__, np.__version__, os.environ.get("XLA_FLAGS", ""),
            device.platform, device.device_kind, device.client.platform_version, jax.device_count(),
            jax.process_count(), platform.machine(), _cpu_flags())


def _settings() -> tuple:
    """JAX's settings at this call (a program traced under others may differ); about
    35 us, read at every call since a process may change them."""
    return tuple(sorted((k, repr(v)) for k, v in jax.config.values.items() if "cache" not in k and "log" not in k))


def _encode(value):
    """An exact, process-independent text for a static value, or ``_Unkeyable``."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return repr(value)
    if isinstance(value, enum.Enum):
        return f"{type(value).__module__}.{type(value).__qualname__}.{value.name}"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__}({','.join(_encode(v) for v in value)})"
    if isinstance(value, dict):
        return "dict(" + ",".join(f"{_encode(k)}:{_encode(v)}" for k, v in sorted(value.items(), key=repr)) + ")"
    if isinstance(value, np.ndarray):
        return f"ndarray({value.dtype},{value.shape},{hashlib.sha256(value.tobytes()).hexdigest()})"
    if isinstance(value, np.generic):
        return f"{value.dtype}({value.item()!r})"
    if isinstance(value, type):
        return _own_type(value)
    if dataclasses.is_dataclass(value):
        fields = ",".join(f"{f.name}={_encode(getattr(value, f.name))}" for f in dataclasses.fields(value))
        return f"{_own_type(type(value))}({fields})"
    raise _Unkeyable(type(value).__name__)


def _own_type(cls) -> str:
    """A class's name, if this package or Python defines it (another one of the same name
    could compute something else)."""
    module = cls.__module__
    if module == "builtins" or module == "jaxreplica" or module.startswith("jaxreplica."):
        return f"{module}.{cls.__qualname__}"
    raise _Unkeyable(f"{module}.{cls.__qualname__}")


def _encode_tree(treedef) -> str:
    """The structure of a pytree, node types and their static data, as exact text."""
    if treedef.num_nodes == 1 and treedef.num_leaves == 1:
        return "*"
    kind, aux = treedef.node_data()
    children = ",".join(_encode_tree(c) for c in treedef.children())
    return f"{_own_type(kind)}[{_encode(aux)}]({children})"


def _aval(x):
    a = jax.typeof(x)
    return (tuple(a.shape), str(a.dtype), bool(getattr(a, "weak_type", False)))


# -- what a call hands over -----------------------------------------------------------


def _on_device(x, device) -> bool:
    if not isinstance(x, jax.Array):
        return True
    try:
        devices = x.devices()
    except Exception:  # noqa: BLE001 - not a placed array
        return False
    return devices == {device} and not getattr(x, "is_deleted", lambda: False)()


def _unpack(leaves):
    """``(values, batch dimensions, batch size)`` when no leaf is being traced except by
    one eager ``jax.vmap`` (dimensions None when none is), else None."""
    values, dims, trace = [], [], None
    for x in leaves:
        if isinstance(x, jax.core.Tracer):
            if _BatchTracer is None or type(x) is not _BatchTracer:
                return None
            val, dim = getattr(x, "val", None), getattr(x, "batch_dim", None)
            if isinstance(val, jax.core.Tracer) or not isinstance(dim, int) or (trace is not None and x._trace is not trace):
                return None
            trace = x._trace
            values.append(val)
            dims.append(dim)
        else:
            values.append(x)
            dims.append(None)
    device = jax.devices()[0]
    if not all(_on_device(v, device) for v in values):
        return None
    if trace is None:
        return values, None, None
    sizes = {np.shape(v)[d] for v, d in zip(values, dims) if d is not None}
    if len(sizes) != 1:
        return None
    return values, tuple(dims), sizes.pop()


# -- compiling, keeping, loading ------------------------------------------------------


def _compile(fn, tree, values, dims, statics):
    """``fn(*args, **statics)`` for flat ``values`` (batched along ``dims``), exported
    (traced and lowered once, as StableHLO) and compiled through JAX's own cache."""
    out_tree = []

    def flat(*leaves):
        out = fn(*jax.tree_util.tree_unflatten(tree, leaves), **statics)
        out_leaves, structure = jax.tree_util.tree_flatten(out)
        out_tree.append(structure)
        return out_leaves

    program = flat if dims is None else jax.vmap(flat, in_axes=dims)
    program.__name__ = f"jaxreplica_{fn.__name__.strip('_')}"
    exported = export.export(jax.jit(program))(*values)
    return _loaded(exported, out_tree[-1]), exported


def _loaded(exported, out_tree) -> _Program:
    return _Program(jax.jit(exported.call), out_tree)


@functools.lru_cache(maxsize=None)
def _can_write() -> bool:
    """Whether exported programs can be written (``flatbuffers``, a dependency of this
    package that JAX leaves optional, is installed); without it jit's path serves."""
    return importlib.util.find_spec("flatbuffers") is not None


def _skeleton(out_tree):
    return jax.tree_util.tree_unflatten(out_tree, [0] * out_tree.num_leaves)


def _write(path: pathlib.Path, exported, out_tree) -> None:
    data = pickle.dumps((FORMAT, bytes(exported.serialize()), _skeleton(out_tree)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _read(path: pathlib.Path) -> _Program | None:
    try:
        version, payload, skeleton = pickle.loads(path.read_bytes())
        if version != FORMAT:
            return None
        return _loaded(export.deserialize(bytearray(payload)), jax.tree_util.tree_structure(skeleton))
    except Exception:  # noqa: BLE001 - an unreadable entry is exported again
        return None


def _disk_path(fn, tree, values, dims, size, statics, settings) -> pathlib.Path | None:
    directory = configure()
    if directory is None:
        return None
    try:
        text = repr((fn.__module__, fn.__qualname__, _encode_tree(tree), [_aval(v) for v in values], dims, size,
                     _encode(statics), _source_digest(), _machine(), settings))
    except _Unkeyable:
        return None
    return pathlib.Path(directory) / "programs" / (hashlib.sha256(text.encode()).hexdigest() + ".bin")


def _exported(path, fn, tree, values, dims, statics) -> _Program | None:
    """The program exported now and written to ``path``; None where export cannot take
    it (jit's path then serves it, and raises whatever tracing raises)."""
    try:
        program, exported = _compile(fn, tree, values, dims, statics)
    except Exception:  # noqa: BLE001
        return None
    try:
        _write(path, exported, program.out_tree)
    except Exception:  # noqa: BLE001 - a full or read-only disk: keep it in memory
        pass
    return program


def _program_for(memory_key, fn, tree, values, dims, size, statics, settings) -> _Program | None:
    """The program for a call: held in memory, read from disk or exported and written
    there; None (remembered) where the call cannot be keyed exactly or exported, for
    jit's path."""
    if memory_key in _held:
        return _held[memory_key]
    with _lock:
        path = _disk_path(fn, tree, values, dims, size, statics, settings)
        program = None
        if path is not None:
            program = (_read(path) if path.exists() else None) or _exported(path, fn, tree, values, dims, statics)
        _held[memory_key] = program
    return program


_call_p = jax.extend.core.Primitive("jaxreplica_compiled_program")
_call_p.multiple_results = True


def _batched_rule(values, dims, *, program, expected):
    if tuple(None if d is None else int(d) for d in dims) != expected:  # pragma: no cover
        raise ValueError("jaxreplica: a compiled program was called with other batch dimensions")
    out = program.run(*values)
    return list(out), [0] * len(out)


batching.primitive_batchers[_call_p] = _batched_rule


def _find(fn, args: tuple, statics: dict):
    """``(program, leaves, values, dims)`` for ``fn(*args, **statics)``, or None where the
    store does not apply (see the module's docstring)."""
    if jax.config.jax_disable_jit or configure() is None or not _can_write():
        return None
    leaves, tree = jax.tree_util.tree_flatten(args)
    unpacked = _unpack(leaves)
    if unpacked is None:
        return None
    values, dims, size = unpacked
    settings = _settings()
    memory_key = (fn, tree, tuple(_aval(v) for v in values), dims, size, tuple(sorted(statics.items())), settings)
    try:
        hash(memory_key)
    except TypeError:  # static data JAX's own jit could not key either
        return None
    program = _program_for(memory_key, fn, tree, values, dims, size, statics, settings)
    return None if program is None else (program, leaves, values, dims)


def call(fn, args: tuple, statics: dict):
    """``fn(*args, **statics)`` from a compiled program found before tracing, or None
    where that does not apply (see the module's docstring)."""
    found = _find(fn, args, statics)
    if found is None:
        return None
    program, leaves, values, dims = found
    if dims is None:
        out = program.run(*values)
    else:
        out = _call_p.bind(*leaves, program=program, expected=dims)
    return jax.tree_util.tree_unflatten(program.out_tree, list(out))


def compiled(fn, args: tuple, statics: dict):
    """``fn(*a, **statics)`` compiled now for arguments ``a`` of the structure and shapes of
    the concrete ``args``, its program found before tracing (or exported and kept), or
    None where that does not apply: jit's ahead-of-time compilation for a caller that
    runs one program many times."""
    found = _find(fn, args, statics)
    if found is None or found[3] is not None:
        return None
    program, _, values, _ = found
    executable = program.run.lower(*values).compile()
    return lambda *a: jax.tree_util.tree_unflatten(program.out_tree, list(executable(*jax.tree_util.tree_leaves(a))))


def release() -> None:
    """Drop this process's programs (their memory goes back; disk entries stay)."""
    with _lock:
        _held.clear()


on_release(release)
