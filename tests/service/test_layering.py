"""The package layering README's "Architecture" draws, checked on the source: every
`import` of every module under src/ptftpd (at any depth: lazy imports inside functions
and TYPE_CHECKING blocks count) names only packages its layer may use."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
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
# No module has an import beyond its package's row (pxed's operator API lives in pxe/api/,
# beside the timeline it reads and the service that starts it).
MODULE_EXTRA: dict[str, set[str]] = {}


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
        allowed |= MODULE_EXTRA.get(str(path.relative_to(SRC)), set())
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


# -- a session's outputs come from one place (issue 17 item 5) ---------------------------

# Names under which drivers hold a protocol core's state: TFTP sessions and machines,
# HTTP connections (`http.protocol.ServerConnection`).
STATE_NAMES = {"session", "machine", "conn", "connection"}
# The cores themselves, which own that state (and pxe/bootlog.py, whose `session`s are
# its own boot records).
STATE_OWNERS = {"tftp/session.py", "tftp/machine.py", "http/protocol.py", "pxe/bootlog.py"}
MUTATORS = {"append", "extend", "clear", "add", "discard", "remove", "pop", "update", "insert"}


def _names_state(node: ast.expr) -> bool:
    """Whether `node` is, or reaches through, a session/machine object:
    `session.x`, `self.channel.session.x`, `runner.machine.y.z`..."""
    while isinstance(node, ast.Attribute | ast.Subscript):
        if isinstance(node, ast.Attribute) and node.attr in STATE_NAMES:
            return True
        node = node.value
    return isinstance(node, ast.Name) and node.id in STATE_NAMES


def state_writes(path: Path, root: Path = SRC) -> list[str]:
    """Every assignment to an attribute of a session/machine object in `path` (shown
    relative to `root`), and every mutating call on one (`session.stray.clear()`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in MUTATORS
            and isinstance(node.func.value, ast.Attribute | ast.Subscript)
            and _names_state(node.func.value)
        ):
            found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}")
        for target in targets:
            elements = target.elts if isinstance(target, ast.Tuple) else [target]
            for element in elements:
                if isinstance(element, ast.Attribute | ast.Subscript) and _names_state(
                    element.value
                ):
                    found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(element)}")
    return found


def test_no_driver_writes_session_state() -> None:
    """A session's outputs come from its returned steps and pull methods; drivers call
    its methods and never assign its (or its machine's) attributes."""
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        if str(path.relative_to(SRC)) not in STATE_OWNERS:
            problems += state_writes(path)
    assert problems == []


def test_the_session_write_check_sees_a_write(tmp_path: Path) -> None:
    bad = tmp_path / "driver.py"
    bad.write_text(
        "def apply(self, session, runner):\n"
        "    session.succeeded = False\n"
        "    self.channel.session.heard, x = True, 1\n"
        "    runner.machine.window += 1\n"
        "    session.stray.clear()\n"
        "    self.session_count = 0\n"  # not a session's attribute
        "    session.abort(0, 'x', 1.0)\n"  # a method: fine
    )
    found = [line.split(": ", 1)[1] for line in state_writes(bad, tmp_path)]
    assert found == [
        "session.succeeded",
        "self.channel.session.heard",
        "runner.machine.window",
        "session.stray.clear()",
    ]



def test_the_readme_draws_these_layers() -> None:
    """README's Architecture table says what each package may import: the same sets as
    `MAY_IMPORT` (an extra after a ';' is `MODULE_EXTRA`'s, named in words)."""
    readme = (SRC.parent.parent / "README.md").read_text()
    section = readme.split("\n## Architecture\n", 1)[1].split("\n### ", 1)[0]
    every = set(MAY_IMPORT)
    drawn: dict[str, set[str]] = {}
    for row in section.splitlines():
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith(("`", "top-level")):
            continue
        packages = re.findall(r"`(\w+)/`", cells[0]) or [TOP]
        may = cells[2].split(";", 1)[0]
        if may.startswith("everything but"):
            allowed = every - set(re.findall(r"`(\w+)/`", may))
        elif may.startswith("everything"):
            allowed = set(every)
        else:
            allowed = set(re.findall(r"`(\w+)/`", may)) | ({TOP} if "top level" in may else set())
        for package in packages:
            drawn[package] = allowed - {package}
    expected = {layer: set(allowed) - {layer} for layer, allowed in MAY_IMPORT.items()}
    expected[TOP] = set()  # "each other"
    drawn[TOP] = set()
    assert drawn == expected


def test_the_tftp_server_does_not_load_the_dhcp_server() -> None:
    """ptftpd's metrics read `dhcp.options.ARCHITECTURES` (the labels of boot counts);
    that must not load the DHCP engine, lease stores and server into a TFTP server's
    memory (`ptftpd.dhcp` loads its names on first use)."""
    probe = (
        "import sys, ptftpd.cli.ptftpd;"
        "print(' '.join(m for m in sys.modules if m.startswith('ptftpd.dhcp')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert "ptftpd.dhcp.options" in loaded  # the probe sees the one module it needs
    heavy = {"ptftpd.dhcp.engine", "ptftpd.dhcp.server", "ptftpd.dhcp.leases"}
    assert not heavy & set(loaded), loaded
    # ...and every name the package offers is still there when asked for.
    import ptftpd.dhcp

    assert [n for n in ptftpd.dhcp.__all__ if getattr(ptftpd.dhcp, n, None) is None] == []
