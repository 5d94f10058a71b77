"""What every command's config shares: frozen sections, JSON, dotted overrides, validation.

``advdyn critical-eps``, ``advdyn posterior`` and ``advdyn sme`` each define a
`CommandConfig` of `Section` tables; reading, validating, overriding and the
embedded default are the same for all of them and live here once, and so is the
mapping of renamed keys (a `Section`'s ``renamed_keys``: the old key keeps working for one
release, with a ``DeprecationWarning`` naming the new one).
"""

from __future__ import annotations

import json
import tomllib
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from advdyn.config.schema import (
    Config,
    ConstantLR,
    LearningRateConfig,
    ProblemConfig,
    RunConfig,
    format_validation_error,
    read_toml,
    set_dotted,
)
from advdyn.deprecation import REMOVED_IN, warn_deprecated
from advdyn.errors import ConfigError

C = TypeVar("C", bound="CommandConfig")


class Section(BaseModel):
    """A table of a command config: unknown keys, NaN and infinities refused; immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    #: old key -> its new name in this table (served, with a ``DeprecationWarning``, by
    #: [`validate_command`][advdyn.config.command.validate_command] until ``REMOVED_IN``)
    renamed_keys: ClassVar[Mapping[str, str]] = {}


class StepDropSGD(Section):
    """The optimiser fields a training table shares: SGD with heavy-ball ``momentum`` and
    ``weight_decay``, its learning rate dropped at the fractions ``drops`` of the epochs
    (``critical-eps``'s ``train`` and ``posterior``'s ``robust`` tables)."""

    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=5e-4, ge=0)
    drops: tuple[float, ...] = (0.5, 0.75)

    @field_validator("drops")
    @classmethod
    def _fractions(cls, v):
        if any(not 0 < f < 1 for f in v):
            raise ValueError("drop points are fractions of the epochs in (0, 1)")
        return v


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
            set_dotted(data, canonical_key(type(self), key), value, create_sections=False)
        return validate_command(type(self), data)


class RunCommandConfig(CommandConfig):
    """A command config that holds a run config (``[problem]``, ``[lr]``, ``[run]``, as for
    ``advdyn run``) and its own tables (``advdyn phase``, ``advdyn critical-exact``)."""

    problem: ProblemConfig
    lr: LearningRateConfig = ConstantLR(gamma=0.5)
    run: RunConfig = RunConfig()

    def run_config(self) -> Config:
        """The run config every solve of the command starts from (subclasses narrow
        ``run``)."""
        return Config(problem=self.problem, lr=self.lr, run=self.run)

    @model_validator(mode="after")
    def _run_config_valid(self):
        # the run config's own checks (the horizon, a binned spectrum's refusals), which
        # the tables above cannot see one by one, named by field like any other error
        try:
            self.run_config()
        except ValidationError as err:
            raise ValueError(format_validation_error(err)) from None
        return self


def _sections(cls: type[Section]) -> dict[str, type[Section]]:
    """The fields of ``cls`` that are tables (`Section` subclasses, also inside a union)."""
    out = {}
    for name, field in cls.model_fields.items():
        for t in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(t, type) and issubclass(t, Section):
                out[name] = t
    return out


def _warn_renamed(old: str, new: str) -> None:
    warn_deprecated(f"config key {old} is deprecated and will be removed in advdyn "
                    f"{REMOVED_IN}: use {new}")


def canonical_key(cls: type[Section], key: str) -> str:
    """The dotted ``key`` of a ``cls`` config with each renamed part replaced by its new
    name (after a ``DeprecationWarning`` naming both)."""
    parts = key.split(".")
    node: type[Section] | None = cls
    for i, part in enumerate(parts):
        if node is None:
            break
        if part in node.renamed_keys:
            parts[i] = node.renamed_keys[part]
            _warn_renamed(".".join([*parts[:i], part]), ".".join(parts[:i + 1]))
        node = _sections(node).get(parts[i])
    return ".".join(parts)


def _rename_keys(cls: type[Section], data: Any, prefix: str = "") -> Any:
    """``data`` (a config as nested mappings) with the renamed keys of ``cls`` and of its
    tables under their new names, after a ``DeprecationWarning`` each; the input is not
    modified.

    Raises
    ------
    ConfigError
        Naming both keys when a table holds an old key and its new name.
    """
    if not isinstance(data, Mapping):
        return data  # validation names what is wrong with it
    out = dict(data)
    for old, new in cls.renamed_keys.items():
        if old in out:
            if new in out:
                raise ConfigError(f"{prefix}{old}", f"deprecated name of {prefix}{new}, "
                                  "which is also given: keep only the latter")
            _warn_renamed(prefix + old, prefix + new)
            out[new] = out.pop(old)
    for name, section in _sections(cls).items():
        if name in out:
            out[name] = _rename_keys(section, out[name], f"{prefix}{name}.")
    return out


def validate_command(cls: type[C], data: dict, base_dir: Path | None = None) -> C:
    """Validate a mapping into ``cls``; relative file paths of its problem (data set, init,
    spectrum files) are resolved against ``base_dir`` when given, as in ``advdyn run``.

    A renamed key (a `Section`'s ``renamed_keys``) is read under its new name, after a
    ``DeprecationWarning``.

    Raises
    ------
    ConfigError
        Naming every offending field (e.g. ``scratch.eps: radii must be positive``), or an
        old key given with its new name.
    """
    data = _rename_keys(cls, data)
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
