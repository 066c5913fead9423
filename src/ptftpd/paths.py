"""The served root, shared by TFTP, HTTP and PXE: whether a directory can be served
(`root_problem`) and which file a requested name means inside it (`resolve`).

Confinement is checked on resolved path components (after following symlinks), never by
string prefix, so a root of /srv/r cannot reach /srv/r2 and a symlink cannot leave it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class PathRefused(Exception):
    """The name leaves the root or is otherwise unusable: answered with ERROR 2."""


def resolve(root: Path, filename: str) -> Path:
    """`root` must already be resolved (`Path.resolve()`).

    A leading `/` (PXE firmware asks for `/pxelinux.0`) means the root; backslashes
    (Windows boot loaders) are separators.
    """
    name = filename.replace("\\", "/")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts:
        raise PathRefused("empty file name")
    if any("\0" in p for p in parts):
        raise PathRefused("file name contains NUL")
    candidate = Path(os.path.realpath(root.joinpath(*parts)))
    if candidate != root and root not in candidate.parents:
        raise PathRefused("path leaves the served root")
    if candidate == root:
        raise PathRefused("the root is a directory")
    return candidate


def root_problem(root: str | os.PathLike[str]) -> str | None:
    """Why a directory cannot be served, in words, or None when it can."""
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return f"root {root} does not exist"
    except PermissionError:
        return f"cannot access root {root}: permission denied"
    except OSError as exc:
        return f"cannot access root {root}: {exc.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"root {root} is not a directory"
    if not os.access(root, os.R_OK | os.X_OK):
        return f"root {root} is not readable by this user"
    return None
