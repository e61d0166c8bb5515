"""The architecture, checked: imports point down the layers (lazy imports inside functions
included), no module cycle, no private name imported from another module, and every name a
registry knows has its config file and its schema (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import ClassVar

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nnexp"

# Lower layers never import higher ones. Leaves import nothing of nnexp.
LAYERS = {
    "leaf": 0,  # nnexp.names, nnexp.objective, nnexp.timing, nnexp.schema
    "serving": 0,  # shipped with each logged model, where nnexp is not installed: imports none
    "nn": 1,
    "data": 2,
    "train": 3,
    "tracking": 4,
    "report": 5,
    "app": 6,  # config, build, cli, resume, hydra callbacks, bench, __main__ and the entry
    # modules of report/ (compare, experiments: their documented `python -m` names)
}
LEAVES = {"nnexp.names", "nnexp.objective", "nnexp.timing", "nnexp.schema", "nnexp"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str:
    if module in LEAVES:
        return "leaf"
    part = module.split(".")[1]
    return part if part in LAYERS else "app"


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), str(p)) for p in PACKAGE.rglob("*.py")}


MODULES = _modules()


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Line numbers of imports under ``if TYPE_CHECKING:`` (annotations only: never run)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    lines.add(inner.lineno)
    return lines


def _of_nnexp(module: str) -> bool:
    """nnexp or one of its modules (not ``nnexp_serving``, the name a logged model's copy of
    nnexp.serving goes by)."""
    return module == "nnexp" or module.startswith("nnexp.")


def _imports(name: str, tree: ast.Module) -> list[tuple[str, str | None, int]]:
    """(imported nnexp module, imported name or None, line) for every import in the module,
    at any depth. ``from nnexp import train`` is an import of the module ``nnexp.train``."""
    skip = _type_checking_only(tree)
    out = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if _of_nnexp(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not _of_nnexp(node.module):
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in MODULES:
                    out.append((sub, None, node.lineno))
                else:
                    out.append((node.module, alias.name, node.lineno))
    return out


def test_imports_point_down_the_layers():
    upward = []
    for name, tree in MODULES.items():
        for target, _, line in _imports(name, tree):
            if target == "nnexp" or target == name:
                continue
            mine, theirs = LAYERS[_layer(name)], LAYERS[_layer(target)]
            if theirs > mine:
                upward.append(f"{name}:{line} imports {target} ({_layer(name)} → {_layer(target)})")
    assert upward == []


def test_no_import_cycle_between_modules():
    """Lazy imports count: a cycle hidden inside a function is still a cycle."""
    graph = {
        name: {t for t, _, _ in _imports(name, tree) if t in MODULES and t not in (name, "nnexp")}
        for name, tree in MODULES.items()
    }
    # Importing a package runs its __init__, so a module importing a package sibling's module
    # reaches the package; a package's __init__ reaching back into its own modules is normal.
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + "."):  # a package's own module
                continue
            if state.get(nxt) == 1:
                cycles.append(" → ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_no_private_name_is_imported_from_another_module():
    private = [
        f"{name}:{line} imports {what} from {target}"
        for name, tree in MODULES.items()
        for target, what, line in _imports(name, tree)
        if what and what.startswith("_") and target != name
    ]
    assert private == []


def test_the_served_package_imports_nothing_of_nnexp_and_only_relatively():
    """nnexp.serving is copied into each logged model as ``nnexp_serving``: an import of nnexp
    (absolute, or relative beyond the package) would fail where the model is served."""
    serving = {name: tree for name, tree in MODULES.items() if name.startswith("nnexp.serving")}
    assert len(serving) >= 3
    for name, tree in serving.items():
        assert [t for t, _, _ in _imports(name, tree)] == [], name
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.level <= 1, f"{name}:{node.lineno} imports beyond its package"


def test_leaf_modules_import_nothing_of_nnexp():
    for leaf in sorted(LEAVES - {"nnexp"}):
        if leaf in MODULES:
            assert [t for t, _, _ in _imports(leaf, MODULES[leaf])] == [], leaf


# --- registries: a name without its config file or schema cannot be selected -------------------


@pytest.mark.parametrize(
    ("group", "registry"),
    [("optimizer", "OPTIMIZERS"), ("schedule", "SCHEDULES"), ("dataset", "DATASETS")],
)
def test_every_registered_name_has_a_config_file_and_a_schema(group, registry):
    import nnexp.data
    import nnexp.nn
    from nnexp.config import SCHEMAS

    names = set(getattr(nnexp.data if group == "dataset" else nnexp.nn, registry))
    configs = {p.stem for p in (ROOT / "conf" / group).glob("*.yaml")}
    # A config file may select a registered name under another name (momentum → sgd).
    assert names <= set(SCHEMAS[group]), f"{group}: no schema for {names - set(SCHEMAS[group])}"
    selected = set()
    for path in (ROOT / "conf" / group).glob("*.yaml"):
        text = path.read_text()
        selected |= {n for n in names if f"/schema/{group}/{n}@" in text}
    assert names <= selected, f"{group}: no config file selects {names - selected}"
    assert configs, group


def test_an_optimizer_class_states_its_schema():
    """Adding an optimizer touches its class and one config file: its schema is derived from
    the class (``limits`` beside it, defaults from ``__init__``, its bases' keys first)."""
    from dataclasses import fields

    from nnexp.config import ConfigError, OptimizerConfig, nn_schema
    from nnexp.nn.optim import SGD

    class Lookahead(SGD):  # a made-up optimizer: SGD's keys and one of its own
        limits: ClassVar[dict] = {"alpha": {"gt": 0, "le": 1}}

        def __init__(self, params, lr: float = 0.2, alpha: float = 0.5, **sgd) -> None:
            super().__init__(params, lr, **sgd)
            self.alpha = alpha

    schema = nn_schema(Lookahead, "lookahead", OptimizerConfig, "LookaheadConfig")
    assert [f.name for f in fields(schema)] == ["name", "lr", "momentum", "nesterov", "alpha"]
    made = schema()
    assert (made.name, made.lr, made.momentum, made.nesterov, made.alpha) == (
        "lookahead",
        0.2,
        0.0,
        False,
        0.5,
    )
    with pytest.raises(ConfigError, match=r"^optimizer\.alpha=0\.0: must be in \(0, 1\]$"):
        schema(alpha=0.0)
    with pytest.raises(ConfigError, match=r"^optimizer\.momentum=1\.0: must be in \[0, 1\)$"):
        schema(momentum=1.0)
