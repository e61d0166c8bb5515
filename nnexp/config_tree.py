"""``extras.print_config=true``: the composed config, resolved, as a tree (rich) at the start
of a run — one branch per top-level node, its YAML inside — and the same text kept beside the
run as ``config_tree.txt``."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

# The order a reader looks for things in; any other top-level node follows.
ORDER = ("model", "optimizer", "schedule", "dataset", "regularization", "trainer", "tracking")


def render(resolved: Mapping[str, Any], *, color: bool = False) -> str:
    """The tree as text (ANSI colors with `color`)."""
    from rich.console import Console
    from rich.syntax import Syntax
    from rich.tree import Tree

    tree = Tree("config", style="bold", guide_style="dim")
    keys = [k for k in ORDER if k in resolved] + [k for k in resolved if k not in ORDER]
    for key in keys:
        value = resolved[key]
        branch = tree.add(f"[bold]{key}[/bold]")
        text = OmegaConf.to_yaml(value).rstrip() if isinstance(value, dict | list) else str(value)
        branch.add(Syntax(text, "yaml", theme="ansi_dark", background_color="default"))
    out = io.StringIO()
    console = Console(
        file=out, force_terminal=color, color_system="standard" if color else None, width=100
    )
    console.print(tree)
    return out.getvalue()


def print_config_tree(resolved: Mapping[str, Any], run_dir: Path, *, color: bool) -> None:
    print(render(resolved, color=color), end="", flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config_tree.txt").write_text(render(resolved))
