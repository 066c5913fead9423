"""Least privilege: bind as root (or with CAP_NET_BIND_SERVICE), then keep nothing.

Start-up order in every server::

    identity = privileges.resolve(args.user, args.group)   # before binding: bad names fail early
    privileges.make_writable(identity, leases_path.parent)  # its own state, while root
    privileges.check_upload_root(identity, root)  # uploads on: never chown ROOT
    ... bind every socket ...
    privileges.drop(identity)      # with --user: root -> USER; without: drop capabilities
    notify.ready()

No capability is kept after :func:`drop`, because none is needed once the sockets exist:
per-transfer TFTP sockets use ephemeral ports (> 1023); SO_BINDTODEVICE, SO_RCVBUFFORCE
and the port-67/69 binds happen before the drop; a SIGHUP reload keeps the bound sockets
(the interface and address cannot change live); and the one runtime privileged call,
DHCP's SIOCSARP (CAP_NET_ADMIN) to unicast an offer to a client without an address,
already falls back to a broadcast reply, which RFC 2131 4.1 allows and every client takes.

The drop also sets PR_SET_NO_NEW_PRIVS so nothing the process might exec can regain
privileges, and then checks that it cannot become root again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import grp
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from ptftpd.errors import StartError

_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class PrivilegeError(StartError):
    """A --user/--group problem; the message is one line (exit 1 unless a caller
    chooses the usage status)."""


@dataclass(frozen=True)
class Identity:
    """Who the server runs as after start-up (None: stay who we are, drop capabilities)."""

    user: str | None
    uid: int
    gid: int
    groups: tuple[int, ...]


def resolve(user: str | None, group: str | None = None) -> Identity | None:
    """Look up --user/--group (names or numbers) before anything is bound.

    Without --user, --group alone is an error; without either, None (no identity change).
    """
    if user is None:
        if group is not None:
            raise PrivilegeError("--group needs --user")
        return None
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except (KeyError, OverflowError, ValueError):
        raise PrivilegeError(f"--user: no such user {user!r}") from None
    gid = entry.pw_gid
    if group is not None:
        try:
            gid = (grp.getgrgid(int(group)) if group.isdigit() else grp.getgrnam(group)).gr_gid
        except (KeyError, OverflowError, ValueError):
            raise PrivilegeError(f"--group: no such group {group!r}") from None
    groups = tuple(sorted({gid, *os.getgrouplist(entry.pw_name, gid)}))
    return Identity(entry.pw_name, entry.pw_uid, gid, groups)


def make_writable(identity: Identity | None, path: Path) -> None:
    """Give `path` (a lease directory or file, an upload root) to the service user.

    Creates a missing directory. Only the owner changes; the mode is kept, so a root an
    operator made read-only stays so. A no-op without --user.
    """
    if identity is None:
        return
    try:
        if not path.exists():
            path.mkdir(parents=True, mode=0o750)
        os.chown(path, identity.uid, identity.gid)
    except OSError as exc:
        raise PrivilegeError(f"cannot give {path} to {identity.user}: {exc.strerror}") from None


def check_upload_root(identity: Identity | None, root: Path) -> None:
    """Uploads are on: the run-as user must be able to create files in `root`.

    ROOT is the operator's, never changed here (no chown): when the user cannot write it,
    one `PrivilegeError` naming the two ways out. Owner, group and other bits are read
    as the kernel would for that user (ACLs aside); root writes anywhere."""
    user = identity.user if identity is not None else None
    uid = identity.uid if identity is not None else os.geteuid()
    if uid == 0:
        return
    try:
        st = root.stat()
    except OSError as exc:
        raise PrivilegeError(f"ROOT {root}: {exc.strerror}") from None
    if identity is None:
        ok = os.access(root, os.W_OK | os.X_OK)
        who = "this user"
    else:
        if st.st_uid == uid:
            bits = st.st_mode >> 6
        elif st.st_gid in identity.groups:
            bits = st.st_mode >> 3
        else:
            bits = st.st_mode
        ok = bits & 0o3 == 0o3
        who = f"user {user}"
    if not ok:
        fix = f"chown {user} {root}" if user else f"chmod u+w {root}"
        raise PrivilegeError(
            f"uploads are on but {who} cannot write ROOT {root}: serve it with "
            f"--read-only, or let the user write it ({fix})"
        )


def drop(identity: Identity | None) -> None:
    """Become `identity` for good (from root), or shed all capabilities (non-root start).

    Root without --user stays root with its capabilities, as before (the operator chose
    it; dropping capabilities but keeping uid 0 would only break root-owned upload dirs).
    """
    if identity is None and os.geteuid() == 0:
        return
    if identity is not None and os.geteuid() != 0:
        if os.getresuid() == (identity.uid,) * 3 and os.getresgid()[0] == identity.gid:
            _drop_capabilities()
            return
        raise PrivilegeError(f"--user {identity.user} needs the server to start as root")
    if identity is not None:
        try:
            os.setgroups(list(identity.groups))
            os.setresgid(identity.gid, identity.gid, identity.gid)
            os.setresuid(identity.uid, identity.uid, identity.uid)
        except OSError as exc:
            raise PrivilegeError(f"cannot switch to user {identity.user}: {exc.strerror}") from None
    _drop_capabilities()
    _libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _verify(identity)


def _verify(identity: Identity | None) -> None:
    if identity is not None:
        if os.getresuid() != (identity.uid,) * 3 or os.getresgid() != (identity.gid,) * 3:
            raise PrivilegeError("user switch did not take effect")
        if identity.uid != 0:
            try:
                os.setuid(0)
            except PermissionError:
                pass
            else:
                raise PrivilegeError("could become root again after dropping privileges")
    held = effective_capabilities()
    if held:
        raise PrivilegeError(f"capabilities still held after the drop: {held:#x}")


CAP_NET_BIND_SERVICE = 10


def can_bind_privileged_ports() -> bool:
    """Root, or a user holding CAP_NET_BIND_SERVICE (systemd AmbientCapabilities=)."""
    return os.geteuid() == 0 or bool(effective_capabilities() & (1 << CAP_NET_BIND_SERVICE))


def effective_capabilities() -> int:
    """CapEff | CapPrm of this process, from /proc (0 when nothing is held)."""
    caps = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("CapEff", "CapPrm"):
            caps |= int(value.strip(), 16)
    return caps


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def _drop_capabilities() -> None:
    """Clear ambient, effective, permitted and inheritable capabilities (capset(2))."""
    libc = _libc()
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise PrivilegeError(f"cannot drop capabilities: {os.strerror(err)}")


_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _LIBC
