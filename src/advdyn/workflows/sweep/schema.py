"""The sweep file: its schema, validated before any point runs, and its loading."""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from advdyn.config.schema import (
    Config,
    format_validation_error,
    load_config,
    read_toml,
    validate_config,
)
from advdyn.errors import ConfigError
from advdyn.workflows.sweep.kinds import point_kinds

_SECTIONS = ("problem", "lr", "run")


class SweepConfig(BaseModel):
    """A validated sweep file (frozen, unknown keys refused).

    Not a subclass of the config's ``_Model``: its ``kind`` default (``"run"``) would be taken
    for a union tag by the config's error formatting and dropped from field locations.

    Attributes
    ----------
    base : Path or dict
        The base run config: a TOML file (relative to the sweep file) or an inline table
        with ``problem``, ``lr`` and ``run`` sections.
    kind : str
        Registered point kind (``"run"`` by default).
    grid : dict of str to list
        Dotted config fields (``problem.epsilon``, ``lr.gamma``, ``problem.spectrum.exponent``,
        ``problem.d``, ``problem.seed``, ``run.methods``, ...) and their values; at least one
        field, each with at least one value, no value repeated.
    overrides : dict of str to value
        Dotted fields set on every point before the grid values.
    out : Path, optional
        Result folder (relative to the sweep file).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    base: Path | dict[str, Any]
    kind: str = "run"
    grid: dict[str, list[Any]] = Field(min_length=1)
    overrides: dict[str, Any] = Field(default_factory=dict)
    out: Path | None = None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value):
        if value not in point_kinds():
            raise ValueError(f"unknown point kind {value!r} (known: {', '.join(point_kinds())})")
        return value

    @field_validator("grid", "overrides")
    @classmethod
    def _dotted(cls, value, info):
        for key, values in value.items():
            parts = key.split(".")
            if len(parts) < 2 or parts[0] not in _SECTIONS or not all(parts):
                raise ValueError(
                    f"{key!r}: a dotted config field starting with problem., lr. or run."
                )
            unknown = unknown_field(key)
            if unknown is not None:
                raise ValueError(f"{key!r}: {unknown}")
            if info.field_name == "grid":
                if len(values) == 0:
                    raise ValueError(f"{key!r}: needs at least one value")
                canon = [canonical(v) for v in values]
                if len(set(canon)) != len(canon):
                    raise ValueError(f"{key!r}: repeated values")
        return value


@dataclass(frozen=True)
class SweepSpec:
    """A sweep ready to run: the validated file, the base config and the folder.

    Attributes
    ----------
    sweep : SweepConfig
        The validated sweep file.
    base : Config
        The validated base run config.
    out : Path or None
        Result folder from the file (resolved), if any.
    """

    sweep: SweepConfig
    base: Config
    out: Path | None = None


def canonical(value: Any) -> str:
    """Canonical JSON text of ``value`` (sorted keys, no spaces): what ids and hashes use."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Pydantic models a field annotation may hold (through unions and ``Annotated``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (list, dict, tuple):
        return []
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def unknown_field(key: str) -> str | None:
    """Why the dotted ``key`` names no field of [`Config`][advdyn.config.Config], or ``None``.

    The check follows the schema (tagged unions: a field of any member counts), so a grid
    over ``problem.foo`` is refused when the sweep is read, before any point runs.

    Parameters
    ----------
    key : str
        Dotted field, e.g. ``"problem.spectrum.exponent"``.

    Returns
    -------
    str or None
        A message naming the first unknown part, or ``None`` when the field exists.
    """
    models: list[type[BaseModel]] = [Config]
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = {name: f for m in models for name, f in m.model_fields.items()}
        if part not in fields:
            where = ".".join(parts[:i]) or "the config"
            known = ", ".join(sorted(fields))
            return f"no field {part!r} in {where} (fields: {known})"
        models = [m for m in _models_in(fields[part].annotation)]
        for meta in fields[part].metadata:  # Annotated[..., Discriminator] unions
            models += _models_in(meta)
        if not models and i < len(parts) - 1:
            return f"{'.'.join(parts[: i + 1])} has no sub-fields"
    return None


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file and its base config.

    Parameters
    ----------
    path : str or Path
        The sweep TOML file.

    Returns
    -------
    SweepSpec

    Raises
    ------
    ConfigError
        If the file is missing or invalid, or the base config is (naming the field).
    """
    path = Path(path)
    return sweep_from_dict(read_toml(path, "sweep"), base_dir=path.resolve().parent)


def sweep_from_dict(data: dict, base_dir: str | Path | None = None) -> SweepSpec:
    """Validate a sweep given as a mapping (the contents of a sweep file).

    Parameters
    ----------
    data : dict
        ``base``, ``grid`` and optionally ``kind``, ``overrides``, ``out``.
    base_dir : path, optional
        Folder against which ``base`` and ``out`` (and relative paths inside an inline base)
        are resolved; the current folder when omitted.

    Returns
    -------
    SweepSpec

    Raises
    ------
    ConfigError
        Naming the offending field (``sweep.<field>`` or the base config's field).
    """
    base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
    try:
        sweep = SweepConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError("sweep", f"invalid sweep: {format_validation_error(err)}") from None
    if isinstance(sweep.base, dict):
        base = validate_config(sweep.base, base_dir=base_dir)
    else:
        base_path = sweep.base if sweep.base.is_absolute() else base_dir / sweep.base
        base = load_config(base_path)
    out = None
    if sweep.out is not None:
        out = sweep.out if sweep.out.is_absolute() else base_dir / sweep.out
    return SweepSpec(sweep, base, out)
