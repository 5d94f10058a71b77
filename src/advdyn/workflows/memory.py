"""Memory estimate of a run, and refusal of runs that cannot fit.

`estimate_memory` adds up the arrays a run holds at its peak (methods run one after
the other, so the peak is the instance plus the largest method). The parts and their
constants follow XLA's own buffer accounting of the executables a run compiles
(``compiled.memory_analysis()``: arguments, outputs and temporaries per device;
``benchmarks/bench_memory.py``, table in ``docs/benchmarks.md``):

* **instance** (float64, when drawn): eigenvalues and means ``C d``, teacher and ``theta_0``
  ``d`` each; the draw's temporaries (``3 d``) are freed before any method runs, so they
  only count when no method holds more;
* **ODE per direction** (float64): the state ``(2 + C) d`` held 13 times by the Tsit5
  stages, error control and the interval carry (XLA's temporaries are exactly ``13 (2 + C)
  d`` at ``d = 10^4 .. 10^6``; records are scalars: no saved states), and the optimum's
  ``alpha``, ``beta`` (``(1 + C) d``) that ``dist_to_opt`` reads; with ``run.bins`` the same
  for ``B`` bins (negligible);
* **SGD / HSGD** (``run.dtype``): the iterates of all replicates, the input and the output of
  a recording interval (2 copies; the carry is updated in place); replicates run one after
  the other on each device (`advdyn.simulate.sgd`), so only ``P = min(replicates,
  devices)`` replicates hold a sampling block at once: per such replicate a block of ``block
  x d`` Philox words (uint32) and the samples built from them (one copy in ``run.dtype``: the
  Gaussian transform is fused into ``x = mu + sqrt(lambda) z``; XLA's temporaries are 8 bytes
  per entry in float32 and 12 in float64) and about 16 bytes per direction of working
  vectors (the instance cast to the simulation dtype, the carried iterate); and on every
  device but the first a copy of the float64 arrays a step reads (eigenvalues, means,
  teacher: ``(2 C + 1) d``). The recorded statistics run in a separate, smaller executable;
* **data** (a ``[problem.data]`` problem, float64): the table as read, standardised and in
  the eigenbasis (``3 n d``, ``n`` from the header, or for a ``.csv`` an upper bound from its
  size) and, while the surrogate is built, the ``d x d`` covariances (per class and pooled),
  eigenvectors and ``eigh`` work (``(C + 3) d^2``); on the binned path (``spectrum_method``)
  the table twice (``2 n d``) and the block Lanczos (`lanczos_arrays`: the Krylov basis,
  its products and their Rayleigh-Ritz stacks, ``5 m b d + 3 b d + 4 n b`` for ``m`` steps
  and blocks of ``b = k + C + 2`` columns, ``k`` probes); ``data_sgd`` holds the rows once more
  on the device, in the table's own dtype whatever ``run.dtype`` (``n d``; 4 bytes an entry
  for a float32 table, 8 otherwise, as the table itself), and its iterates as SGD's. A
  refusal then names ``problem.data.path``.

The estimate is an upper bound of the arrays' sizes, not of XLA's exact allocation; it is
meant to catch runs that are off by factors (e.g. ``d = 10^7`` with many replicates or the
per-direction ODE), not to pack memory to the last percent. `check_memory` compares it
with the memory available -- on a GPU the device's free memory (JAX's memory statistics),
on the CPU ``MemAvailable`` of ``/proc/meminfo`` (or ``sysconf`` physical pages) -- or with
``run.memory_limit_gb`` when set, and raises a [`ConfigError`][advdyn.errors.ConfigError] naming the
fields to change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from advdyn.config.schema import Config
from advdyn.errors import ConfigError

# Constants from XLA's memory_analysis() of the compiled executables (bench_memory.py):
_ODE_STAGE_COPIES = 13  # Tsit5: 7 stages, y0, y1, error estimate, interval carry (temp = 13 x)
_SGD_ITERATE_COPIES = 2  # the interval's input and output iterates (the carry is in place)
_SGD_WORD_BYTES = 4  # per sample entry: the block's Philox words (uint32) ...
_SGD_SAMPLE_COPIES = 1  # ... and x = mu + sqrt(lambda) z (the Gaussian transform is fused)
_SGD_WORK_BYTES = 16  # per device and direction: instance cast to run.dtype, the carry
_DRAW_TEMPORARIES = 3  # float64 vectors of d while the instance is drawn (freed after)
_SAFETY = 0.9  # use at most this fraction of the available memory


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory of a run, by part.

    Attributes
    ----------
    parts : dict of str to int
        Bytes of each part (``"instance"``, ``"ode"``, ``"sgd: iterates"``, ...).
    peak : int
        Estimated peak in bytes: the instance plus the largest method.
    available : int
        Bytes the run may use (``run.memory_limit_gb`` or the measured free memory).
    source : str
        Where ``available`` comes from.
    """

    parts: dict = field(default_factory=dict)
    peak: int = 0
    available: int = 0
    source: str = ""

    @property
    def fits(self) -> bool:
        """Whether ``peak <= 0.9 * available`` (a margin for XLA's own buffers)."""
        return self.peak <= _SAFETY * self.available

    def describe(self) -> str:
        """One line: the parts in GB, the peak and the available memory."""
        parts = ", ".join(f"{k} {_gb(v)}" for k, v in self.parts.items() if v)
        return f"estimated peak {_gb(self.peak)} ({parts}); available {_gb(self.available)} " \
               f"({self.source})"


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def available_memory() -> tuple[int, str]:
    """Memory a run can use on the default JAX device.

    Returns
    -------
    bytes : int
        On a GPU/TPU: ``bytes_limit - bytes_in_use`` from the device's memory statistics. On
        the CPU: ``MemAvailable`` from ``/proc/meminfo``, else free physical pages from
        ``os.sysconf``, else total physical pages.
    source : str
        Which of these was used.
    """
    try:
        import jax

        dev = jax.devices()[0]
        if dev.platform != "cpu":
            stats = dev.memory_stats() or {}
            if "bytes_limit" in stats:
                free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
                return free, f"{dev.platform} device memory"
    except Exception:  # pragma: no cover - no usable device statistics
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"
    except OSError:  # pragma: no cover - not Linux
        pass
    page = os.sysconf("SC_PAGE_SIZE")
    for name in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):  # pragma: no cover - not Linux
        try:
            return int(os.sysconf(name)) * page, f"sysconf {name}"
        except (ValueError, OSError):
            continue
    return 1 << 62, "unknown (not checked)"  # pragma: no cover


def estimate_memory(config: Config, available: tuple[int, str] | None = None) -> MemoryEstimate:
    """Estimate the peak memory of ``pipeline.run(config)``.

    Parameters
    ----------
    config : Config
        A validated configuration.
    available : (int, str), optional
        Bytes available and their source; default: ``run.memory_limit_gb`` when set, else
        `available_memory`.

    Returns
    -------
    MemoryEstimate
        Parts in bytes (see the module docstring for what each counts), peak and available.
    """
    from advdyn.config.build import config_path_applies

    p, rc = config.problem, config.run
    d, n_comp = p.d, len(p.resolved_components())
    f64 = 8
    item = 4 if rc.dtype == "float32" else 8
    parts: dict[str, int] = {}
    drawn = not config_path_applies(config)
    # eigenvalues + means (C d), teacher, theta_0; the draw's temporaries are freed before
    # any method runs
    parts["instance"] = (2 * n_comp + 2) * d * f64 if drawn else 0
    draw = _DRAW_TEMPORARIES * d * f64 if drawn else 0
    if p.spectrum.kind == "covariance_file":
        draw += 3 * d * d * f64  # dense covariance, its eigenvectors, eigh work
    if p.data is not None:
        n = _data_rows(p.data)
        # the table as read, standardised and rotated (kept for data_sgd), and the d x d
        # covariances (per class, pooled), eigenvectors and eigh work
        table = p.data.itemsize  # the table's entries: float32 kept, else float64
        if p.data.spectrum_method == "binned":
            # the table as read and standardised, and the block Lanczos of
            # `lanczos_arrays` (held at its Rayleigh-Ritz step)
            parts["data"] = 2 * n * d * table
            draw += lanczos_arrays(n, d, p.data.probes + n_comp + 2,
                                   p.data.lanczos_steps) * f64
        else:
            parts["data"] = 3 * n * d * table
            draw += (n_comp + 3) * d * d * f64
        if "data_sgd" in rc.methods:
            parts["data_sgd: rows"] = n * d * table  # on the device in the table's dtype

    method_parts: dict[str, dict[str, int]] = {}
    if "ode" in rc.methods:
        n = min(rc.bins, d) if rc.bins is not None else d
        state = (2 + n_comp) * n * f64
        optimum = (1 + n_comp) * n * f64  # alpha, beta of the optimum (dist_to_opt)
        method_parts["ode"] = {"ode": _ODE_STAGE_COPIES * state + optimum}
    for m in ("sgd", "hsgd"):
        if m in rc.methods:
            from advdyn.simulate.sgd import time_grid

            R = rc.replicates
            P = _concurrent_replicates(R)
            block = time_grid(d, rc.t_max, rc.n_times, rc.block_size).block
            method_parts[m] = {
                f"{m}: iterates": _SGD_ITERATE_COPIES * R * d * item,
                f"{m}: samples": P * block * d * (_SGD_SAMPLE_COPIES * item + _SGD_WORD_BYTES),
                f"{m}: per device": P * _SGD_WORK_BYTES * d
                + (P - 1) * (2 * n_comp + 1) * d * f64,
            }
    if "data_sgd" in rc.methods:  # its iterates and blocks as SGD's, with rows not samples
        R, P = rc.replicates, _concurrent_replicates(rc.replicates)
        method_parts["data_sgd"] = {
            "data_sgd: iterates": _SGD_ITERATE_COPIES * R * d * item,
            "data_sgd: per device": P * _SGD_WORK_BYTES * d,
        }
    largest = max(method_parts.values(), key=lambda x: sum(x.values()), default={})
    for mp in method_parts.values():
        parts.update(mp)
    parts["instance: draw temporaries"] = draw
    peak = (parts["instance"] + parts.get("data", 0) + parts.get("data_sgd: rows", 0)
            + max(sum(largest.values()), draw))
    if available is None:
        if rc.memory_limit_gb is not None:
            available = (int(rc.memory_limit_gb * 1e9), "run.memory_limit_gb")
        else:
            available = available_memory()
    return MemoryEstimate(parts, int(peak), int(available[0]), available[1])


def lanczos_arrays(n: int, d: int, block: int, steps: int) -> int:
    """Float64 entries the block Lanczos of a binned data spectrum
    ([`spectral_statistics`][advdyn.problem.data.spectral_statistics]) holds at its peak,
    the Rayleigh-Ritz step on every block: ``5 m b d + 3 b d + (m + 3) n b + 12 n`` for
    ``m = steps`` blocks of ``b = block`` columns.

    Counted: the blocks and their products with the covariance (``2 m b d``); the
    reorthogonalisation's stacked basis, still held (``(m - 1) b d``, counted as
    ``m b d``); the Rayleigh-Ritz stacks of every block and product (``2 m b d``; the
    check's, one block fewer, are built after these are freed, so the full step bounds
    them); the working blocks (probes, start block, residual: ``3 b d``); the rows'
    products with every block, kept for the diagnostics (``m n b``), a pass's working
    ones and, for classification, the per-class ones (``3 n b``); the diagnostics'
    projections and their product (``2 (TOP_DIRECTIONS + 1) n``); and a block of rows
    converted or centred, with its class indicators (``2 ROW_BLOCK_BYTES / 8``).
    """
    from advdyn.checks import ROW_BLOCK_BYTES
    from advdyn.problem.data import TOP_DIRECTIONS

    return (5 * steps * block * d + 3 * block * d + (steps + 3) * n * block
            + 2 * (TOP_DIRECTIONS + 1) * n + 2 * ROW_BLOCK_BYTES // 8)


def _data_rows(data) -> int:
    """Rows of a data set: from its header, or for a ``.csv`` an upper bound from its size
    (every value takes at least two characters, a digit and a separator)."""
    if data.n_rows is not None:
        return int(data.n_rows)
    return int(data.path.stat().st_size // (2 * (data.n_features + 1)) + 1)


def _concurrent_replicates(replicates: int) -> int:
    """Replicates advanced at the same time: one per device of the replicate mesh."""
    try:
        import jax

        n = min(len(jax.local_devices()), replicates)
    except Exception:  # pragma: no cover - no usable JAX backend
        return 1
    while n > 1 and replicates % n:
        n -= 1
    return max(n, 1)


def check_memory(config: Config, available: tuple[int, str] | None = None) -> MemoryEstimate:
    """Refuse a run whose estimated peak memory exceeds 90% of the available memory.

    Parameters
    ----------
    config : Config
        A validated configuration.
    available : (int, str), optional
        Override of the available memory (see `estimate_memory`).

    Returns
    -------
    MemoryEstimate
        The estimate, when the run fits.

    Raises
    ------
    ConfigError
        Naming the field whose reduction helps most (``run.block_size`` when the SGD sampling
        blocks dominate, ``run.replicates`` for the iterates, ``run.bins`` for a
        per-direction ODE, else ``problem.d``), with the estimate's breakdown and the other
        fields to change (``problem.d``, ``run.replicates``, ``run.block_size``,
        ``run.memory_limit_gb``).
    """
    est = estimate_memory(config, available)
    if est.fits:
        return est
    rc = config.run
    biggest = max(est.parts, key=lambda k: est.parts[k])
    if config.problem.data is not None and biggest in (
            "data", "data_sgd: rows", "instance: draw temporaries"):
        field_ = "problem.data.path"
    elif biggest.endswith("samples"):
        field_ = "run.block_size"
    elif biggest.endswith(("iterates", "per device")):
        field_ = "run.replicates"
    elif biggest == "ode" and rc.bins is None:
        field_ = "run.bins"
    else:
        field_ = "problem.d"
    raise ConfigError(
        field_,
        f"the run does not fit in memory: {est.describe()}, with problem.d = "
        f"{config.problem.d}, run.replicates = {rc.replicates}, run.block_size = "
        f"{rc.block_size}, run.dtype = {rc.dtype}. Reduce problem.d, run.replicates or "
        f"run.block_size, use run.bins (spectral quadrature) for an ODE-only run, or set "
        f"run.memory_limit_gb to override the limit",
    )


def check_size(nbytes: float, field: str, what: str,
               available: tuple[int, str] | None = None) -> None:
    """Refuse a computation whose arrays alone need more than 90% of the available memory.

    For the commands without a full estimate (`estimate_memory` is ``advdyn run``'s):
    ``nbytes`` is a lower bound (the largest arrays the computation holds at once), so a
    refusal is certain to be right.

    Parameters
    ----------
    nbytes : float
        Lower bound of the bytes needed.
    field : str
        The config field to lower, named in the message.
    what : str
        What needs the memory (e.g. ``"the SGD runs of risks"``).
    available : (int, str), optional
        Override of `available_memory`.

    Raises
    ------
    ConfigError
        ``field``, when ``nbytes`` exceeds 90% of the available memory.
    """
    limit, source = available if available is not None else available_memory()
    if nbytes > 0.9 * limit:
        raise ConfigError(field, f"{what} need at least {_gb(nbytes)} of memory, more than "
                          f"90% of the {_gb(limit)} available ({source}); lower {field}")
