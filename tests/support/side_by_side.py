"""A pytest plugin: the tests of a module marked `side_by_side` run at once.

QEMU boots spend most of their time waiting on firmware timers (DHCP offer collection,
iPXE's Ctrl-B prompt), not on the CPU, so a module's independent boots (each in its own
namespace) can share the wall clock. When the first marked test of a module is called,
every selected marked test of that module runs, `at_once` at a time, one thread each,
with a fresh directory as its `tmp_path` and its parameters; each test then reports what
its own function raised. The test functions are unchanged: same body, same assertions.
Only `tmp_path` and parameters can be their arguments. Each body must bound itself (the
boots do); all of them together get `bound` seconds.

    pytestmark = [..., pytest.mark.side_by_side(bound=570)]
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

_outcome: dict[str, BaseException | None] = {}  # node id -> what its function raised
_started: set[ModuleType] = set()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "side_by_side(bound, at_once=3): the module's marked tests run at once "
        "(support/side_by_side.py)",
    )


def _arguments(item: pytest.Function, directory: Path) -> dict[str, Any]:
    params = dict(item.callspec.params) if hasattr(item, "callspec") else {}
    names = set(item._fixtureinfo.argnames)
    extra = names - set(params) - {"tmp_path"}
    assert not extra, f"{item.nodeid}: side_by_side passes only tmp_path and parameters"
    return {**({"tmp_path": directory} if "tmp_path" in names else {}), **params}


def _run_module(first: pytest.Function, mark: pytest.Mark) -> None:
    bound = float(mark.kwargs["bound"])
    at_once = int(mark.kwargs.get("at_once", 3))
    items = [
        item
        for item in first.session.items
        if isinstance(item, pytest.Function)
        and item.module is first.module
        and item.get_closest_marker("side_by_side") is not None
    ]
    factory = first._request.getfixturevalue("tmp_path_factory")
    # Directories first, in this thread: pytest's factory is not thread-safe (its first
    # call creates, or with --basetemp empties, the base directory).
    calls = {
        item.nodeid: (
            item.obj,
            _arguments(item, factory.mktemp(re.sub(r"[^A-Za-z0-9_]+", "-", item.name)[-40:])),
        )
        for item in items
    }
    slots = threading.Semaphore(at_once)

    def run(nodeid: str) -> None:
        function, kwargs = calls[nodeid]
        with slots:
            try:
                function(**kwargs)
                _outcome[nodeid] = None
            except BaseException as exc:  # handed to the test it belongs to
                _outcome[nodeid] = exc

    threads = [threading.Thread(target=run, args=(nodeid,)) for nodeid in calls]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + bound
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    mark = pyfuncitem.get_closest_marker("side_by_side")
    if mark is None:
        return None
    if pyfuncitem.module not in _started:
        _started.add(pyfuncitem.module)  # type: ignore[arg-type]
        _run_module(pyfuncitem, mark)
    assert pyfuncitem.nodeid in _outcome, f"{pyfuncitem.nodeid}: did not finish in time"
    exc = _outcome.pop(pyfuncitem.nodeid)
    if exc is not None:
        raise exc
    return True
