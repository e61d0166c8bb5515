"""``python -m nnexp --help``: the config groups a user picks from (not the schemas nnexp keeps
in the ``schema/`` group, nor Hydra's own) and a line per key with its value in the composed
config — the default, or what the overrides given with ``--help`` make it — and the values it
accepts (the schemas' field metadata). Hydra's help template (``conf/hydra/help/nnexp.yaml``)
calls `groups` and `keys` through the resolvers ``nnexp.help_groups`` and ``nnexp.help_keys``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from nnexp.schema import describe

INTERNAL_GROUPS = ("hydra", "schema")  # Hydra's own groups; nnexp's schemas (config.py)


def groups(_root_: DictConfig) -> str:
    """``model=shallow   options: deep, shallow, ...`` for each group, the chosen option first."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType

    # Not only for --help: OmegaConf resolves this template whenever Hydra merges its own
    # defaults over it, i.e. on every compose. The loader's get_group_options builds (and
    # deep-copies) a new repository per call, 0.35 s a run for a dozen groups; its repository,
    # read directly, lists the same options in milliseconds.
    loader = GlobalHydra.instance().config_loader()
    repo = getattr(loader, "repository", loader)
    chosen = OmegaConf.select(_root_, "hydra.runtime.choices", default={}) or {}
    lines = []
    for group in _groups(repo):
        options = ", ".join(sorted(repo.get_group_options(group, ObjectType.CONFIG)))
        lines.append((f"{group}={chosen.get(group) or 'null'}", f"options: {options}"))
    return _escaped(_aligned(lines))


def keys(_root_: DictConfig) -> str:
    """``optimizer.lr=0.1   > 0`` for every key of the composed config (``hydra`` aside)."""
    lines: list[tuple[str, str]] = []
    rules = _rules(_root_)
    for name in _root_:
        if name != "hydra":
            _walk(_root_._get_node(name), str(name), lines, rules.get(str(name), ""))
    return _escaped(_aligned(lines))


def _groups(repo: Any, parent: str = "") -> list[str]:
    """The groups under `parent` that hold configs, depth first, Hydra's and nnexp's own aside."""
    from hydra.core.object_type import ObjectType

    found = []
    for name in sorted(repo.get_group_options(parent, ObjectType.GROUP)):
        group = f"{parent}/{name}" if parent else name
        if group in INTERNAL_GROUPS:
            continue
        if repo.get_group_options(group, ObjectType.CONFIG):
            found.append(group)
        found += _groups(repo, group)
    return found


def _walk(node: Any, key: str, lines: list[tuple[str, str]], rule: str = "") -> None:
    if isinstance(node, DictConfig) and len(node):
        rules = _rules(node)
        for name in map(str, node):
            child = node._get_node(name)  # the raw value: an interpolation stays ${...}
            if isinstance(child, DictConfig) and len(child):
                _walk(child, f"{key}.{name}", lines)
            else:
                lines.append((f"{key}.{name}={_shown(child)}", rules.get(name, "")))
        return
    lines.append((f"{key}={_shown(node)}", rule))


def _rules(node: DictConfig) -> dict[str, str]:
    """What each field of `node`'s schema accepts, from its metadata (nnexp.schema)."""
    schema = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(schema):
        return {}
    rules = {}
    for field in dataclasses.fields(schema):
        meta = field.metadata
        if "choices" in meta:
            each = "each " if str(field.type).startswith("list") else ""
            rules[field.name] = f"{each}one of: " + ", ".join(sorted(map(str, meta["choices"])))
        elif any(op in meta for op in ("ge", "gt", "le", "lt")):
            rules[field.name] = describe(meta).removeprefix("must be ")
        elif "rule" in meta:
            rules[field.name] = str(meta["rule"])
        elif str(field.type).startswith("bool"):
            unset = " (null: unset)" if "None" in str(field.type) else ""
            rules[field.name] = f"true or false{unset}"
    return rules


def _shown(node: Any) -> str:
    """The value as an override writes it: ``[16]``, ``{team: x}``, ``null``, ``true``."""
    if isinstance(node, DictConfig | ListConfig):
        return _override(OmegaConf.to_container(node, resolve=False))
    return _override(node._value() if hasattr(node, "_value") else node)


def _override(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_override(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_override(v) for v in value) + "]"
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _aligned(lines: list[tuple[str, str]]) -> str:
    width = min(max((len(left) for left, _ in lines), default=0), 40)
    return "\n".join(f"  {left.ljust(width)}  {right}".rstrip() for left, right in lines)


def _escaped(text: str) -> str:
    """Hydra fills the template with `string.Template`: a ``$`` of ours must not read as one."""
    return text.replace("$", "$$")
