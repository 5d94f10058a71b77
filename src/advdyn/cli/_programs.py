"""The command line's program store: a rerun skips tracing and lowering the solvers.

JAX's persistent compilation cache (`advdyn.workflows.cache`) saves the XLA
compilation of a rerun, but every process still traces and lowers each jitted function
before it can look that cache up (why this matters: ``advdyn/cli/README.md``).
`cached_jit` is ``equinox.filter_jit`` plus a *store*: a call looks its program up by a
key computed from the arguments alone, without tracing. The store holds the function's
exported StableHLO (`jax.export`, a serialization format with compatibility
guarantees) and a template of its output pytree; compiling the loaded program is then a hit
of JAX's persistent compilation cache. On a miss the function is exported once (one trace)
and stored.

The rooms know nothing of this: their solvers are plain ``equinox.filter_jit`` functions.
`install` (called by `advdyn.cli.configure` when the caches are on) sets the
store and replaces each function named in `PROGRAMS`, in its module, by the
`cached_jit` of the function it wraps; the rooms call them through their module's
globals, so a command's solves go through the store, and a process that never installs it
(the Python API, the tests) runs the plain ``filter_jit`` functions.

On the CPU the stored programs are compiled with `CPU_COMPILER_OPTIONS` (XLA's loop
emitters rather than its MLIR fusion emitters; measurements in ``docs/benchmarks.md``,
"Start-up").

The key is safe by construction: it is computed only when every Python object that shapes
the program comes from code whose version the key records, i.e. the pytree node types and
static values of the arguments are advdyn's own classes, builtins, or those of JAX,
equinox, diffrax, optimistix, lineax or NumPy, and functions among the static values are
advdyn module-level functions. The key then holds the hash of advdyn's source files, the
versions of those libraries, the backend, the device count, the x64 flag, the default
matmul precision and ``EQX_ON_ERROR``, the argument
structure with every static value, and every array's shape and dtype. Anything else (a
user's loss function or learning-rate class, whose code may change between runs under the
same name) bypasses the store and compiles as usual, and so does a function that cannot be
exported (e.g. one with a host callback), and a call inside a transformation (``vmap``,
``grad``, an outer ``jit``). An entry that cannot be read back or run is recompiled and
replaced. Calls from several threads are safe: a call that needs a program another thread
is making waits for it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import inspect
import os
import pickle
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import equinox as eqx
import jax
import numpy as np

__all__ = ["PROGRAMS", "ExecutableFolder", "ExecutableStore", "cached_jit", "executable_key",
           "install", "set_store", "store"]

#: the rooms' jitted solvers that `install` routes through the store, as
#: ``"module:name"`` (each an ``equinox.filter_jit`` function of its module)
PROGRAMS = (
    "advdyn.theory.ode:_solve",
    "advdyn.theory.stationary:_optimum",
    "advdyn.theory.stationary:_limit",
)

#: libraries whose classes and functions may shape a stored program (their versions are in the key)
_PINNED = ("jax", "jaxlib", "equinox", "diffrax", "optimistix", "lineax", "numpy")
_TRUSTED_MODULES = ("builtins", "collections", "advdyn", "jax", "jaxlib", "equinox", "diffrax",
                    "optimistix", "lineax", "numpy")


class ExecutableStore(Protocol):
    """Where compiled executables live between processes (e.g. a folder)."""

    def get(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or ``None``."""
        ...

    def put(self, key: str, blob: bytes) -> None:
        """Store ``blob`` under ``key`` (atomically; failures may be ignored)."""
        ...


class _InProcess:
    """The store when none is set: nothing is kept beyond the process (its programs are
    still exported, compiled with `CPU_COMPILER_OPTIONS` and reused, as with a store)."""

    def get(self, key: str) -> bytes | None:
        return None

    def put(self, key: str, blob: bytes) -> None:
        pass


_IN_PROCESS = _InProcess()
_STORE: ExecutableStore | None = None
_LOADED: dict[str, Any] = {}  # executables of this process, by key
_PENDING: dict[str, threading.Event] = {}  # keys a thread is loading or compiling
_UNEXPORTABLE: set[str] = set()  # keys whose function cannot be exported: plain jit
_LOCK = threading.Lock()


def set_store(new: ExecutableStore | None) -> ExecutableStore | None:
    """Set (or with ``None`` remove) the process's executable store.

    Parameters
    ----------
    new : ExecutableStore or None

    Returns
    -------
    ExecutableStore or None
        The previous store.
    """
    global _STORE
    with _LOCK:
        old, _STORE = _STORE, new
        _LOADED.clear()
        _UNEXPORTABLE.clear()
    return old


def store() -> ExecutableStore | None:
    """The current executable store (``None``: executables are not kept).

    Returns
    -------
    ExecutableStore or None
    """
    return _STORE


@functools.cache
def _environment() -> str:
    """advdyn's source hash and the pinned libraries' versions (once per process)."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]  # the advdyn package
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    versions = []
    for name in _PINNED:
        try:
            versions.append(f"{name}={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name}=?")
    return digest.hexdigest() + ";" + ",".join(versions)


def _trusted_module(module: str | None) -> bool:
    top = (module or "").split(".")[0]
    return top in _TRUSTED_MODULES


def _static_token(value: Any) -> str | None:
    """A process-independent text for a static value or a pytree node's auxiliary data
    (dict keys, equinox field names and static fields), or ``None`` when it has none."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return repr(value)
    if isinstance(value, np.dtype):
        return f"dtype:{value.str}"
    if isinstance(value, types.FunctionType):
        if (value.__module__ or "").startswith("advdyn") and value.__closure__ is None \
                and "<" not in value.__qualname__:
            return f"fn:{value.__module__}.{value.__qualname__}"
        return None
    if isinstance(value, type):
        return f"type:{value.__module__}.{value.__qualname__}" if _trusted_module(
            value.__module__) else None
    if isinstance(value, (tuple, list)):
        parts = [_static_token(v) for v in value]
        if any(p is None for p in parts):
            return None
        return f"{type(value).__name__}({','.join(parts)})"  # type: ignore[arg-type]
    if (type(value).__module__ or "").startswith("equinox"):
        text = repr(value)  # equinox's sentinels (e.g. MISSING): a fixed text
        return None if " at 0x" in text else f"eqx:{text}"
    return None


def _structure_token(treedef) -> str | None:
    """The structure of a pytree: node types (all trusted) and their static data."""
    out = []
    stack = [treedef]
    while stack:
        node = stack.pop()
        data = node.node_data()
        if data is not None:
            kind, aux = data
            if not _trusted_module(getattr(kind, "__module__", None)):
                return None
            aux_token = _static_token(aux)
            if aux_token is None:
                return None
            out.append(f"{kind.__module__}.{kind.__qualname__}[{aux_token}]")
        else:
            out.append("*" if node.num_leaves == 1 else "()")
        stack.extend(reversed(node.children()))
    return ";".join(out)


def _is_traced(x: Any) -> bool:
    """Whether a leaf is traced: an array, or an abstract one (``jax.ShapeDtypeStruct``)."""
    return eqx.is_array(x) or isinstance(x, jax.ShapeDtypeStruct)


def executable_key(name: str, args: tuple) -> str | None:
    """The store key of calling function ``name`` on ``args``, or ``None`` (not storable).

    Parameters
    ----------
    name : str
        The function's qualified name.
    args : tuple
        Its positional arguments (arrays, or ``jax.ShapeDtypeStruct`` in their place, are
        traced, everything else static, as in ``equinox.filter_jit``).

    Returns
    -------
    str or None
        A hex digest, or ``None`` when something in ``args`` is not covered by the key.
    """
    leaves, treedef = jax.tree.flatten(args, is_leaf=lambda x: x is None)
    structure = _structure_token(treedef)
    if structure is None:
        return None
    if getattr(jax.config, "jax_default_device", None) is not None:
        return None  # executables are compiled for, and loaded onto, the first device
    parts = [name, _environment(), jax.default_backend(), str(jax.device_count()),
             str(jax.dtypes.canonicalize_dtype(np.float64)), structure,
             # settings that change the traced program: matmul precision, equinox's errors
             str(getattr(jax.config, "jax_default_matmul_precision", None)),
             os.environ.get("EQX_ON_ERROR", "")]
    for leaf in leaves:
        if _is_traced(leaf):
            parts.append(f"a:{np.dtype(leaf.dtype).str}{tuple(leaf.shape)}"
                         f"{'w' if getattr(leaf, 'weak_type', False) else ''}")
        else:
            token = _static_token(leaf)
            if token is None:
                return None
            parts.append(f"s:{token}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


#: XLA options for the stored programs on the CPU: XLA's older loop emitters instead of its
#: MLIR fusion emitters compile the ODE and the optimum's fixed point with 27% and 22% less
#: CPU time (23% and 16% less wall time), and they run as fast (``docs/benchmarks.md``,
#: "Start-up", sixth round)
CPU_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}


def _compile(lowered):
    """Compile with `CPU_COMPILER_OPTIONS` on the CPU (without them where this XLA
    does not know them)."""
    if jax.default_backend() == "cpu":
        try:
            return lowered.compile(CPU_COMPILER_OPTIONS)
        except Exception:  # (an XLA without the option)
            pass
    return lowered.compile()


def _spec(leaf) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                weak_type=bool(getattr(leaf, "weak_type", False)))


def _runner(exported, out_tree) -> Callable:
    """Compile an exported program now (a hit of JAX's persistent cache where it has run
    before); call it on flat array leaves and return the output pytree."""
    compiled = _compile(jax.jit(exported.call).lower(*map(_spec, exported.in_avals)))

    def run(*leaves):
        out = compiled(*leaves)
        if jax.device_count() > 1:
            # an exported program's outputs are committed to its one device; jit's are not.
            # Uncommitted, they combine with arrays sharded over several devices (the
            # command line's SGD replicates), as the same function under jit would
            out = [jax.device_put(np.asarray(x)) for x in out]
        return jax.tree.unflatten(out_tree, out)

    return run


def _load(blob: bytes) -> Callable:
    """A stored program: its exported StableHLO and its output template."""
    payload, template = pickle.loads(blob)
    # the output structure travels as a template pytree (integers for leaves), not as a
    # pickled treedef: equinox's node data holds sentinels that must keep their identity
    return _runner(jax.export.deserialize(payload), jax.tree.structure(template))


def _export(flat, avals) -> tuple[Callable, bytes]:
    """Export ``flat`` at ``avals`` (tracing it once); the runner and the stored bytes."""
    out_tree = None

    def flat_out(*arrays):
        nonlocal out_tree
        out, out_tree = jax.tree.flatten(flat(*arrays))
        return out

    exported = jax.export.export(jax.jit(flat_out))(*avals)
    assert out_tree is not None  # set while exporting
    template = jax.tree.unflatten(out_tree, range(out_tree.num_leaves))
    return _runner(exported, out_tree), pickle.dumps((exported.serialize(), template))


def _current() -> ExecutableStore:
    return _STORE if _STORE is not None else _IN_PROCESS


def _obtain(key: str, store: ExecutableStore, make: Callable[[bool], Callable | None]):
    """The runner of ``key``: loaded in this process, prepared by another thread (waited
    for), read from the store, or made. ``make(use_store)`` returns ``None`` when the
    program cannot be exported; then so does this."""
    while True:
        with _LOCK:
            runner = _LOADED.get(key)
            if runner is not None or key in _UNEXPORTABLE:
                return runner
            event = _PENDING.get(key)
            if event is None:  # this thread makes it
                event = _PENDING[key] = threading.Event()
                break
        event.wait()  # another thread is making it: use what it made (or make it here)
    try:
        runner = make(True)
        with _LOCK:
            if _current() is store:  # (not for a store set meanwhile)
                if runner is None:
                    _UNEXPORTABLE.add(key)
                else:
                    _LOADED[key] = runner
        return runner
    finally:
        with _LOCK:
            _PENDING.pop(key, None)
        event.set()


def cached_jit(fun: Callable) -> Callable:
    """``equinox.filter_jit(fun)``, with its executables kept in the store when one is set.

    Parameters
    ----------
    fun : callable
        A pure function of positional arguments (arrays traced, the rest static).

    Returns
    -------
    callable
        Same results as ``equinox.filter_jit(fun)``; ``.lower`` (ahead-of-time lowering) and
        ``.jitted`` (the plain ``filter_jit``) are those of ``equinox.filter_jit(fun)``.
    """
    jitted = eqx.filter_jit(fun)
    name = f"{fun.__module__}.{fun.__qualname__}"

    def entry(args, store):
        """``(key, leaves, make)`` of a call on ``args``, or ``None`` (not storable)."""
        dynamic, static = eqx.partition(args, _is_traced)
        leaves, treedef = jax.tree.flatten(dynamic)
        if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            return None  # called inside a transformation: nothing to keep
        key = executable_key(name, args)
        if key is None:
            return None

        def flat(*arrays):
            return fun(*eqx.combine(jax.tree.unflatten(treedef, arrays), static))

        def make(use_store: bool) -> Callable | None:
            blob = store.get(key) if use_store else None
            if blob is not None:
                try:  # an entry that cannot be read back is recompiled and replaced
                    runner = _load(blob)
                    runner.stored = True  # type: ignore[attr-defined]
                    return runner
                except Exception:  # unreadable or stale: recompile
                    pass
            try:
                runner, blob = _export(flat, [_spec(leaf) for leaf in leaves])
            except Exception:  # (not exportable, e.g. a host callback: plain jit)
                return None
            try:
                store.put(key, blob)
            except Exception:  # (a store that cannot write costs speed only)
                pass
            return runner

        return key, leaves, make

    @functools.wraps(fun)
    def call(*args):
        store = _current()
        found = entry(args, store)
        if found is None:
            return jitted(*args)
        key, leaves, make = found
        runner = _obtain(key, store, make)
        if runner is None:
            return jitted(*args)
        try:
            return runner(*leaves)
        except Exception:  # handled below
            pass
        if getattr(runner, "stored", False):  # a stored program that does not run: made
            runner = make(False)               # afresh (and stored again), once
            try:
                out = runner(*leaves) if runner is not None else None
            except Exception:
                runner = None
            if runner is not None:
                with _LOCK:
                    if _current() is store:
                        _LOADED[key] = runner
                return out
        # a program made here that does not run on these arguments (e.g. they are committed
        # to another device than the one it was compiled for): plain jit, from now on
        with _LOCK:
            if _current() is store:
                _LOADED.pop(key, None)
                _UNEXPORTABLE.add(key)
        return jitted(*args)

    call.jitted = jitted  # type: ignore[attr-defined]
    call.lower = jitted.lower  # type: ignore[attr-defined]  # ahead-of-time use, as filter_jit
    call.stored_programs = True  # type: ignore[attr-defined]  # (install's mark)
    return call


def install(new: ExecutableStore | None) -> None:
    """Set the store and route the rooms' solvers (`PROGRAMS`) through it.

    Each ``module:name`` of `PROGRAMS` is replaced, in its module, by the
    `cached_jit` of the function its ``filter_jit`` wraps (once: installing again only
    sets the store). With ``None`` the solvers still run their exported programs, kept for
    the process only.

    Parameters
    ----------
    new : ExecutableStore or None
    """
    set_store(new)
    for entry in PROGRAMS:
        module_name, name = entry.split(":")
        module = importlib.import_module(module_name)
        current = getattr(module, name)
        if not getattr(current, "stored_programs", False):
            setattr(module, name, cached_jit(inspect.unwrap(current)))


class ExecutableFolder:
    """An `ExecutableStore` in a folder: one file per key.

    Files are written atomically ([`advdyn.io.atomic_path`][advdyn.io.atomic_path]), so a reader
    sees a whole
    entry or none; an entry that cannot be read back is recompiled and replaced by
    `cached_jit`. Failures to read or write cost speed only.

    Parameters
    ----------
    folder : Path
        Created on the first write.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def get(self, key: str) -> bytes | None:
        """The entry ``key``, or ``None``."""
        try:
            return (self.folder / f"{key}.bin").read_bytes()
        except OSError:
            return None

    def put(self, key: str, blob: bytes) -> None:
        """Write the entry ``key`` atomically (errors are ignored)."""
        from advdyn.io.files import atomic_path

        try:
            with atomic_path(self.folder / f"{key}.bin") as tmp:
                tmp.write_bytes(blob)
        except OSError:
            pass
