"""A phase grid too large for one machine: blocks of it solved on a Dask cluster.

[`distributed_phase_diagram`][advdyn.workflows.phase_chunks.distributed_phase_diagram] cuts
the grid along its first field into contiguous blocks; each block is one task, a whole
[`phase_diagram`][advdyn.workflows.phase.phase_diagram] (one compiled, batched solve, itself
chunked to fit the worker's memory), sent to the same Dask cluster that ``advdyn sweep``
uses (a running scheduler by address, or a local cluster of worker processes). The blocks'
datasets are joined along that field into the dataset a single `phase_diagram` of the
whole grid writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from advdyn import checks
from advdyn.config.schema import Config
from advdyn.workflows.phase import PhaseResult, check_phase, phase_diagram


def _block_diagram(config: Config, axes: dict[str, list[float]], factor: float,
                   chunk: int | None) -> PhaseResult:
    """One task: `phase_diagram` of one block (module-level, so Dask sends it by reference)."""
    return phase_diagram(config, axes, factor=factor, chunk=chunk)


def distributed_phase_diagram(
    config: Config,
    axes: Mapping[str, Sequence[float]],
    *,
    blocks: int,
    factor: float = 1.1,
    chunk: int | None = None,
    client=None,
    scheduler: str | None = None,
    workers: int | None = None,
) -> PhaseResult:
    """[`phase_diagram`][advdyn.workflows.phase.phase_diagram] in blocks on a Dask cluster.

    Parameters
    ----------
    config, axes, factor, chunk
        As [`phase_diagram`][advdyn.workflows.phase.phase_diagram] (``chunk``: points per
        batched solve within a block).
    blocks : int
        Number of tasks: the first field's values are cut into this many contiguous
        blocks (at most one value each), each one batched solve on one worker.
    client : dask.distributed.Client, optional
        A client to submit to (it stays open).
    scheduler : str, optional
        Address of a running Dask scheduler, as ``advdyn sweep --scheduler``; with neither
        ``client`` nor ``scheduler`` a local cluster of ``workers`` processes is started
        and closed.
    workers : int, optional
        Worker processes of that local cluster (default: CPUs, at most ``blocks``).

    Returns
    -------
    PhaseResult
        The dataset of the whole grid (as one `phase_diagram` would write it, with
        ``attrs["blocks"]``; attributes merged by `merge_attrs`: those that differ between
        blocks are lists, named in ``attrs["per_block"]``); every timing of the blocks
        (``compile_s``, ``solve_s``, ``points``, the stochastic methods' ...) summed over
        the blocks (worker seconds).

    Raises
    ------
    ConfigError
        As `phase_diagram` (checked here, before any task is sent), ``blocks`` not a
        positive integer, or no scheduler at ``scheduler``.
    """
    from advdyn.workflows.sweep.execute import dask_client

    grids = check_phase(config, axes, factor)
    blocks = checks.integer(blocks, "blocks", minimum=1)
    names = list(grids)
    cuts = np.array_split(grids[names[0]], min(blocks, grids[names[0]].size))
    parts = [{names[0]: [float(v) for v in cut],
              **{n: [float(v) for v in grids[n]] for n in names[1:]}} for cut in cuts]
    if scheduler is not None:
        checks.scheduler_address(scheduler, "scheduler")
    with dask_client(client, scheduler, workers, len(parts)) as pool:
        futures = pool.map(_block_diagram, [config] * len(parts), parts,
                           [factor] * len(parts), [chunk] * len(parts), pure=False)
        results = pool.gather(futures)
    dataset = xr.concat([r.dataset for r in results], dim=names[0],
                        data_vars="minimal", coords="minimal", compat="override",
                        combine_attrs="drop")
    dataset.attrs.update(merge_attrs([r.dataset.attrs for r in results]))
    dataset.attrs["blocks"] = len(parts)
    # every timing (the ODE's, the optimum's, each stochastic method's), summed
    timings = {k: float(sum(r.timings.get(k, 0.0) for r in results))
               for k in dict.fromkeys(k for r in results for k in r.timings)}
    return PhaseResult(dataset, timings)


def merge_attrs(blocks: Sequence[Mapping]) -> dict:
    """The attributes of the blocks' datasets as one dataset's: a value every block has
    alike as it is, any other (e.g. ``solver``, which ``run.solver = "auto"`` chooses per
    block, or ``chunk``) as the list of the blocks' values, in block order, those keys
    named in ``per_block`` (comma-separated; empty when all agree)."""
    merged: dict = {}
    per_block = []
    for key in dict.fromkeys(k for attrs in blocks for k in attrs):
        values = [attrs.get(key) for attrs in blocks]
        if all(np.array_equal(np.asarray(v, dtype=object), np.asarray(values[0], dtype=object))
               for v in values[1:]):
            merged[key] = values[0]
        else:
            merged[key] = values
            per_block.append(key)
    merged["per_block"] = ",".join(per_block)
    return merged
