"""What Hydra's composition lets through, refused; what it refuses, said in one line (exit 2).

`composed` refuses what OmegaConf accepts although the schemas do not: a key forced in
with ``+``/``++`` (the schemas are the whole config), a boolean given as a number or a word
(``trainer.deterministic=2`` reads as true), a group option's ``name`` changed by hand (it picks
the class).

Hydra reports a bad command line (an unknown group option, a key the schema lacks, a value of
the wrong type, an override it cannot parse) in several lines, with advice that does not hold
here ("To append to your config use +key=..." — nnexp refuses unknown keys), and exits 1 like a
crash. `nnexp.__main__` lets Hydra raise instead (``HYDRA_FULL_ERROR``) and asks `one_line`
for the line; anything it does not recognize is a genuine bug and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, cast

from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from nnexp.config import Config, ConfigError
from nnexp.schema import check_value, default_of, unknown_keys

# Lines of Hydra's messages that are not about the user's mistake, or advise what nnexp refuses.
_NOISE = ("Config search path", "To append to your config use", "See https://hydra.cc")


NAMED = ("optimizer", "schedule", "dataset")  # groups whose option's schema fixes its name


def composed(cfg: DictConfig, overrides: Sequence[str]) -> Config:
    """The composed config as objects (`OmegaConf.to_object`: every schema's own rules run),
    or `ConfigError` for what composed but the schemas refuse (see the module). `overrides`:
    the job's command line (Hydra's ``overrides.task``), where a boolean's spelling is seen."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for override in OverridesParser.create().parse_overrides(list(overrides)):
        if override.is_delete() or override.is_sweep_override():
            continue  # a sweep's values are each checked in their own job
        value = override.value()
        current = OmegaConf.select(cfg, override.key_or_group, default=None)
        if isinstance(current, bool) and not isinstance(value, bool):
            raise ConfigError(f"{override.key_or_group}={value!r}: must be true or false")
    for f in dataclasses.fields(Config):  # the root's own keys (seed), before its nodes use them
        if f.metadata and f.name in cfg:
            check_value(f.name, OmegaConf.select(cfg, f.name), f.metadata, _fail)
    conf = cast(Config, OmegaConf.to_object(cfg))  # a structured config: a Config instance
    for key in unknown_keys(conf)[:1]:
        owner = key.rpartition(".")[0]
        known = ", ".join(sorted(f.name for f in dataclasses.fields(_at(conf, owner))))
        value = OmegaConf.select(cfg, key, default=None)
        raise ConfigError(f"{key}={value!r}: unknown key; {owner or 'the config'} has: {known}")
    for group in NAMED:
        node = getattr(conf, group)
        own = default_of(type(node), "name")
        if node.name != own:
            raise ConfigError(
                f"{group}.name={node.name!r}: set by the group option ({group}={own}); "
                f"choose another with {group}=NAME"
            )
    return conf


def _fail(key: str, value: Any, rule: str) -> ConfigError:
    return ConfigError(f"{key}={value!r}: {rule}")


def _at(conf: Any, dotted: str) -> Any:
    for name in filter(None, dotted.split(".")):
        conf = getattr(conf, name)
    return conf


def is_composition_error(exc: BaseException) -> bool:
    """Raised while Hydra composed the command line, before the task ran: Hydra's and
    OmegaConf's errors, and the odd plain error from inside Hydra's own code (``=3``)."""
    if isinstance(exc, HydraException | OmegaConfBaseException):
        return True
    tb, module = exc.__traceback__, ""
    while tb is not None:  # the innermost frame: where the error was raised
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        tb = tb.tb_next
    return isinstance(exc, ValueError | KeyError | TypeError) and module.startswith(
        ("hydra.", "omegaconf.")
    )


def one_line(exc: BaseException, args: Sequence[str] = ()) -> str:
    """The error in one line naming the override (from `args`, the command line, when Hydra's
    message does not) and, for an unknown key, the keys its config has."""
    if isinstance(exc, OverrideParseException):
        bad = _unparsable(args) or exc.override
        return (
            f"{bad}: cannot parse this override ({_compact(exc.message)}); "
            "write key=value, +key=value or ~key (quote values with spaces or brackets)"
        )
    line = _compact(str(exc))
    cause = exc.__cause__
    if isinstance(cause, OmegaConfBaseException):
        detail = _compact(str(cause).split("full_key:")[0])
        if detail and detail not in line:
            line = f"{line.rstrip('.')}: {detail}"
        if isinstance(cause, ConfigKeyError | ConfigAttributeError):
            line += _allowed_keys(cause)
    if not line:
        line = type(exc).__name__
    tags = [a.split("=")[0] for a in args if a.startswith("tags.") and "=" in a]
    if tags and f"'{tags[0]}'" in line:  # tags (None by default) takes new names with +
        line += f"; add a tag with +{tags[0]}=VALUE (or tags={{NAME: VALUE}})"
    keys = [a.split("=")[0].lstrip("+~") for a in args if "=" in a]
    if not any(key and key in line for key in keys):
        overrides = " ".join(a for a in args if "=" in a or a.startswith("~"))
        line = f"{line} (overrides: {overrides})" if overrides else line
    return line


def _compact(message: str) -> str:
    """Hydra's lines joined: a header and its tab-indented options become ``header: a, b``."""
    parts: list[str] = []
    for raw in message.splitlines():
        text = raw.strip()
        if not text or text.startswith("Set the environment variable HYDRA_FULL_ERROR"):
            continue
        if text.startswith(_NOISE):
            if text.startswith("Config search path"):
                break
            continue
        if raw.startswith("\t") and parts:
            parts[-1] += (", " if not parts[-1].endswith(":") else " ") + text
        else:
            parts.append(text)
    return "; ".join(part.rstrip(".") for part in parts)


def _allowed_keys(cause: OmegaConfBaseException) -> str:
    schema = getattr(cause, "object_type", None)
    if isinstance(schema, type) and dataclasses.is_dataclass(schema):
        names = sorted(f.name for f in dataclasses.fields(schema))
        return f"; {schema.__name__} has: {', '.join(names)}"
    return ""


def _unparsable(args: Sequence[str]) -> str | None:
    """The first argument Hydra's override grammar refuses (its exception does not say)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for arg in args:
        if arg.startswith("-"):
            continue
        try:
            parser.parse_override(arg)
        except HydraException:  # (one override: its syntax error, not the list's)
            return arg
    return None
