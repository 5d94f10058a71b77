"""What every command's config shares: frozen sections, JSON, dotted overrides, validation.

``advdyn critical-eps``, ``advdyn posterior`` and ``advdyn sme`` each define a
`CommandConfig` of `Section` tables; reading, validating, overriding and the
embedded default are the same for all of them and live here once.
"""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from advdyn.config.schema import format_validation_error, read_toml, set_dotted
from advdyn.errors import ConfigError

C = TypeVar("C", bound="CommandConfig")


class Section(BaseModel):
    """A table of a command config: unknown keys, NaN and infinities refused; immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class CommandConfig(Section):
    """A complete command config (a `Section` of sections)."""

    def to_json(self) -> str:
        """Serialise to JSON (sorted keys)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    def with_overrides(self: C, **dotted: Any) -> C:
        """Copy with dotted fields replaced (``{"model.width": 128}``), re-validated.

        Raises
        ------
        ConfigError
            Naming the key when a section does not exist, or any invalid field.
        """
        data = self.model_dump()
        for key, value in dotted.items():
            set_dotted(data, key, value, create_sections=False)
        return validate_command(type(self), data)


def validate_command(cls: type[C], data: dict, base_dir: Path | None = None) -> C:
    """Validate a mapping into ``cls``; relative file paths of its problem (data set, init,
    spectrum files) are resolved against ``base_dir`` when given, as in ``advdyn run``.

    Raises
    ------
    ConfigError
        Naming every offending field (e.g. ``scratch.eps: radii must be positive``).
    """
    try:
        return cls.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as err:
        raise ConfigError("", f"invalid config: {format_validation_error(err)}") from None


def load_command(cls: type[C], path: str | Path) -> C:
    """Read (as bytes, UTF-8) and validate a TOML file into ``cls``; relative file paths of
    its problem are resolved against the file's folder.

    Raises
    ------
    ConfigError
        If the file is missing, not UTF-8, not TOML, or invalid.
    """
    return validate_command(cls, read_toml(path), base_dir=Path(path).resolve().parent)


def default_command(cls: type[C], name: str) -> C:
    """The embedded default ``advdyn/defaults/<name>`` validated into ``cls``."""
    text = resources.files("advdyn").joinpath(f"defaults/{name}").read_text()
    return validate_command(cls, tomllib.loads(text))
