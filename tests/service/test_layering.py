"""The package layering README's "Architecture" draws, checked on the source: every
`import` of every module under src/ptftpd (at any depth: lazy imports inside functions
and TYPE_CHECKING blocks count) names only packages its layer may use."""

from __future__ import annotations

import ast
from pathlib import Path

import ptftpd

SRC = Path(ptftpd.__file__).parent
TOP = "top"  # the modules directly under ptftpd/: errors, log, netif, paths, values...

# What each package may import (besides itself). Nothing but cli/ imports cli/.
MAY_IMPORT: dict[str, set[str]] = {
    TOP: {TOP},
    "tftp": {TOP},
    "dhcp": {TOP},
    "http": {TOP},
    "dhcp6": {TOP, "dhcp"},
    "pxe": {TOP, "tftp", "dhcp", "dhcp6", "http"},
    "service": {TOP, "tftp", "dhcp", "dhcp6", "http", "pxe"},
    "cli": {TOP, "tftp", "dhcp", "dhcp6", "http", "pxe", "service"},
}
# `python -m ptftpd.http` and `python -m ptftpd.dhcp6` run their server as a service
ENTRY_POINT_EXTRA = {"service"}


def layer_of(module: str) -> str:
    """`ptftpd.tftp.server` -> "tftp"; `ptftpd.errors` (a top-level module) -> TOP."""
    parts = module.split(".")
    if len(parts) >= 2 and (SRC / parts[1]).is_dir():
        return parts[1]
    return TOP


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in the file that names a ptftpd module."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            assert node.module is not None
            found.append((node.lineno, node.module))
            if node.module == "ptftpd":  # from ptftpd import config, cli...
                found += [(node.lineno, f"ptftpd.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] == "ptftpd"]


def violations() -> list[str]:
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        layer = layer_of(".".join(rel.parts)) if len(rel.parts) > 2 else TOP
        allowed = {layer} | MAY_IMPORT[layer]
        if path.name == "__main__.py" and layer != TOP:
            allowed |= ENTRY_POINT_EXTRA
        for line, module in imported_modules(path):
            if module == "ptftpd":
                continue
            target = layer_of(module)
            if target not in allowed:
                problems.append(f"{path.relative_to(SRC)}:{line}: {layer} imports {module}")
    return problems


def test_every_package_imports_only_its_lower_layers() -> None:
    assert violations() == []


def test_nothing_outside_cli_imports_cli() -> None:
    """The measure of issue 17, on its own: cli/ is the top, only itself imports it."""
    offenders = [
        f"{path.relative_to(SRC)}:{line}"
        for path in SRC.rglob("*.py")
        if "cli" not in path.relative_to(SRC).parts[:1]
        for line, module in imported_modules(path)
        if module == "ptftpd.cli" or module.startswith("ptftpd.cli.")
    ]
    assert offenders == []


def test_the_check_sees_a_lazy_import(tmp_path: Path) -> None:
    """An import inside a function (as service/runtime.py once hid `ptftpd.cli.common`)
    is found like one at the top."""
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    from ptftpd.cli.common import fail\n    return fail\n")
    assert imported_modules(module) == [(2, "ptftpd.cli.common")]
