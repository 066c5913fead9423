"""Remote kernels and initrds, fetched and streamed by pxed (issue 22 item 2, as
pixiecore does): never an open proxy.

When a machine's recipe names a kernel or initrd by an http(s) URL and pxed serves
HTTP (``--http-port``), its iPXE script does not name the URL: it names
``pxed/remote/MAC/ID/NAME`` on pxed's own HTTP server, where ID is a random token
(`RemoteNames`). Only the URLs the machine's current decision named are reachable, by
their token and under its own MAC: a made-up path, another machine's token or a URL
its last decision no longer names is 404. Tokens live as long as the scripts do
(an hour, at most `KEEP` machines).

A request for such a path (`RemoteFiles.open`) is served from the cache, or joins
the fetch of the same URL already under way, or starts one (`ptftpd.http.upstream`):
the bytes go to the machine as they arrive (`ptftpd.http.growing`) and into a
temporary file of the cache directory, renamed into the cache once whole (nothing
half-written kept). Bounds: a file over `max_file` bytes is refused (its declared
Content-Length) or cut (as it arrives) and nothing is cached; the cache holds at
most `cache_size` bytes (least recently used files evicted first); each upstream
step has `timeout` seconds, a whole fetch `MAX_FETCH_SECONDS`; at most
`MAX_FETCHES` URLs are fetched at once. One log line per request: the URL, the
size, the time, and hit, miss or shared (joined a fetch under way).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ptftpd.errors import StartError
from ptftpd.http.errors import HttpError
from ptftpd.http.files import OpenedFile, content_type
from ptftpd.http.growing import GrowingFile
from ptftpd.http.upstream import UpstreamError, open_upstream

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_MAX_FILE",
    "DEFAULT_TIMEOUT",
    "PREFIX",
    "RemoteFiles",
    "RemoteNames",
    "cache_directory",
    "is_remote",
]

log = logging.getLogger("ptftpd.pxe")

PREFIX = "pxed/remote"
DEFAULT_CACHE_SIZE = 2 * 1024**3
DEFAULT_MAX_FILE = 512 * 1024**2
DEFAULT_TIMEOUT = 15.0
MAX_FETCH_SECONDS = 1800.0  # one whole fetch (a trickling upstream cannot hold it forever)
MAX_FETCHES = 32  # URLs fetched at once
KEEP = 4096  # machines whose named URLs are remembered
TTL = 3600.0  # seconds a machine's named URLs stay reachable after its last decision
_PART = ".part-"  # temporary files (removed at start: never kept half-written)


def is_remote(name: str) -> bool:
    """An http(s) URL pxed fetches (not a name under ROOT)."""
    return urlsplit(name).scheme in ("http", "https")


def cache_directory(state_dir: Path, iface: str) -> Path:
    """The cache of one pxed: in its state directory, one per interface."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in iface)
    return state_dir / f"pxed-{safe}-remote"


def _leaf(url: str) -> str:
    """The URL's last path segment, tame (for the path iPXE shows and logs)."""
    leaf = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    tame = "".join(c if c.isalnum() or c in "._-" else "_" for c in leaf)[:64]
    return tame.lstrip(".") or "file"


class RemoteNames:
    """Per machine (MAC with hyphens): the URLs its current decision named, each
    under a random token. Sans-IO apart from the tokens' randomness."""

    def __init__(self, keep: int = KEEP, ttl: float = TTL) -> None:
        self.keep = keep
        self.ttl = ttl
        self.machines: OrderedDict[str, tuple[dict[str, str], float]] = OrderedDict()

    def naming(self, mac: str, now: float) -> Naming:
        """For one rendering of `mac`'s recipe: call it with each URL (it gives the
        path to put in the script), then `commit` (the machine's table becomes those
        URLs; a URL named again keeps its token)."""
        return Naming(self, mac.replace(":", "-").lower(), now)

    def url_of(self, path: str, now: float) -> str | None:
        """The URL a request path (``pxed/remote/MAC/ID/NAME``) stands for, or None."""
        parts = path.lstrip("/").split("/")
        if len(parts) != 5 or "/".join(parts[:2]) != PREFIX:
            return None
        found = self.machines.get(parts[2])
        if found is None or found[1] <= now:
            return None
        for url, token in found[0].items():
            if secrets.compare_digest(token, parts[3]):
                return url
        return None

    def _set(self, mac: str, table: dict[str, str], now: float) -> None:
        self.machines.pop(mac, None)
        if table:
            self.machines[mac] = (table, now + self.ttl)
        while len(self.machines) > self.keep:
            self.machines.popitem(last=False)


class Naming:
    def __init__(self, names: RemoteNames, mac: str, now: float) -> None:
        self.names = names
        self.mac = mac
        self.now = now
        found = names.machines.get(mac)
        self.before = found[0] if found is not None and found[1] > now else {}
        self.table: dict[str, str] = {}

    def __call__(self, url: str) -> str:
        token = self.table.get(url) or self.before.get(url) or secrets.token_urlsafe(16)
        self.table[url] = token
        return f"{PREFIX}/{self.mac}/{token}/{_leaf(url)}"

    def commit(self) -> None:
        self.names._set(self.mac, self.table, self.now)


@dataclass
class _Fetch:
    """One URL being fetched into `part` (`fd`, read-write: clients dup it)."""

    url: str
    part: Path
    fd: int
    growing: GrowingFile
    head: asyncio.Future[int | None]  # the declared length, once the answer is open
    began: float


def _count_nothing(outcome: str, size: int) -> None:
    """`RemoteFiles.on_fetch` without --metrics."""


@dataclass
class RemoteFiles:
    """The cache (in `directory`) and the fetches of one pxed (see the module
    docstring). `open` is the HTTP server's `streamed` hook."""

    directory: Path
    names: RemoteNames
    _: KW_ONLY
    cache_size: int = DEFAULT_CACHE_SIZE
    max_file: int = DEFAULT_MAX_FILE
    timeout: float = DEFAULT_TIMEOUT
    # Told of each request's outcome (hit, miss, shared, failed) and its bytes (--metrics).
    on_fetch: Callable[[str, int], None] = _count_nothing
    # key -> size, oldest use first
    index: OrderedDict[str, int] = field(default_factory=OrderedDict, init=False)
    used: int = field(default=0, init=False)
    fetches: dict[str, _Fetch] = field(default_factory=dict, init=False)
    tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False)

    def start(self) -> None:
        """Make the cache directory, drop leftover temporary files, index what is
        there (oldest first) and evict down to the bound."""
        directory = self.directory
        found = []
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            for entry in os.scandir(directory):
                if entry.name.startswith(_PART):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
                elif entry.is_file(follow_symlinks=False) and len(entry.name) == 64:
                    st = entry.stat(follow_symlinks=False)
                    found.append((st.st_mtime, entry.name, st.st_size))
        except OSError as exc:
            raise StartError(f"cannot use {directory} for remote files: {exc.strerror}") from None
        for _, key, size in sorted(found):
            self.index[key] = size
            self.used += size
        self._evict(0)
        log.info(
            "remote files: cache %s, %d files, %d of %d bytes; at most %d bytes a file",
            directory, len(self.index), self.used, self.cache_size,
            self.max_file,
        )  # fmt: skip

    def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()

    # -- the cache ---------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        return self.directory / key

    def _evict(self, room: int) -> None:
        while self.index and self.used + room > self.cache_size:
            key, size = self.index.popitem(last=False)
            self.used -= size
            with contextlib.suppress(OSError):
                os.unlink(self._path(key))

    def _admit(self, key: str, fetch: _Fetch, size: int) -> str:
        """The whole file into the cache (evicting); what became of it, for the log."""
        if size > self.cache_size:
            fetch.part.unlink(missing_ok=True)
            return "not cached: larger than the cache"
        self._evict(size)
        try:
            os.rename(fetch.part, self._path(key))
        except OSError as exc:
            fetch.part.unlink(missing_ok=True)
            return f"not cached: {exc.strerror or exc}"
        self.index[key] = size
        self.used += size
        return "cached"

    def _hit(self, key: str, url: str) -> OpenedFile | None:
        size = self.index.get(key)
        if size is None:
            return None
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:  # removed behind our back: forget it
            self.index.pop(key, None)
            self.used -= size
            return None
        self.index.move_to_end(key)
        with contextlib.suppress(OSError):
            os.utime(fd)  # the order survives a restart
        return OpenedFile(Path(url), fd, size, time.time(), content_type(Path(_leaf(url))))

    # -- serving -----------------------------------------------------------------------
    def open(self, path: str, peer: str) -> Awaitable[OpenedFile] | None:
        """The HTTP server's hook: None for a path outside ``pxed/remote/``."""
        if not path.lstrip("/").startswith(PREFIX + "/"):
            return None
        return self._open(path, peer)

    async def _open(self, path: str, peer: str) -> OpenedFile:
        url = self.names.url_of(path, time.monotonic())
        if url is None:
            raise HttpError(404, "not a file any machine's decision names")
        key = hashlib.sha256(url.encode()).hexdigest()
        opened = self._hit(key, url)
        if opened is not None:
            log.info("remote %s: %d bytes for %s, cache hit", url, opened.size, peer)
            self.on_fetch("hit", opened.size)
            return opened
        fetch = self.fetches.get(key)
        shared = fetch is not None
        if fetch is None:
            fetch = self._start(url, key)
        try:  # its own descriptor now: the fetch may end (and close its own) any time
            fd = os.dup(fetch.fd)
        except OSError as exc:
            raise HttpError(503, exc.strerror or "out of file descriptors") from None
        try:
            return await self._join(fetch, fd, url, peer, shared)
        except BaseException:
            os.close(fd)
            raise

    async def _join(self, fetch: _Fetch, fd: int, url: str, peer: str, shared: bool) -> OpenedFile:
        try:
            length = await asyncio.shield(fetch.head)
        except UpstreamError as exc:
            raise HttpError(exc.status, f"{url}: {exc}") from None
        if shared:
            log.info("remote %s: %s for %s, shared (a fetch under way)", url, length, peer)
            self.on_fetch("shared", length or 0)
        growing = fetch.growing
        if length is None:  # no Content-Length: the whole file first
            with contextlib.suppress(ConnectionAbortedError, TimeoutError):
                await growing.until(self.max_file + 1, MAX_FETCH_SECONDS)
            if growing.error is not None:
                raise HttpError(502, f"{url}: {growing.error}")
            length = growing.written
        mime = content_type(Path(_leaf(url)))
        return OpenedFile(Path(url), fd, length, time.time(), mime, growing)

    def _start(self, url: str, key: str) -> _Fetch:
        if len(self.fetches) >= MAX_FETCHES:
            raise HttpError(503, f"{MAX_FETCHES} remote files already being fetched")
        loop = asyncio.get_running_loop()
        part = self.directory / f"{_PART}{key[:16]}-{secrets.token_hex(4)}"
        try:
            fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise HttpError(503, f"cannot write the cache: {exc.strerror or exc}") from None
        fetch = _Fetch(url, part, fd, GrowingFile(), loop.create_future(), loop.time())
        self.fetches[key] = fetch
        task = loop.create_task(self._fetch(key, fetch))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return fetch

    async def _fetch(self, key: str, fetch: _Fetch) -> None:
        loop = asyncio.get_running_loop()
        upstream = None
        try:
            async with asyncio.timeout(MAX_FETCH_SECONDS):
                upstream = await open_upstream(fetch.url, self.timeout)
                length = upstream.length
                limit = self.max_file
                if length is not None and length > limit:
                    raise UpstreamError(f"{length} bytes, over the {limit} byte limit")
                fetch.head.set_result(length)
                while chunk := await upstream.read():
                    if fetch.growing.written + len(chunk) > limit:
                        raise UpstreamError(f"over the {limit} byte limit: cut")
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fetch.fd, view) :]
                    fetch.growing.wrote(len(chunk))
            size = fetch.growing.written
            what = self._admit(key, fetch, size)
            fetch.growing.finish()
            took = loop.time() - fetch.began
            log.info("remote %s: %d bytes in %.3f s, cache miss, %s", fetch.url, size, took, what)
            self.on_fetch("miss", size)
        except (UpstreamError, OSError, TimeoutError, asyncio.CancelledError) as exc:
            why = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                why = f"not whole within {MAX_FETCH_SECONDS:g} s"
            fetch.growing.fail(why)
            if not fetch.head.done():
                error = exc if isinstance(exc, UpstreamError) else UpstreamError(why)
                fetch.head.set_exception(error)
                fetch.head.exception()  # retrieved: no "never retrieved" warning
            fetch.part.unlink(missing_ok=True)
            log.warning("remote %s: %s; nothing cached", fetch.url, why)
            self.on_fetch("failed", fetch.growing.written)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            if upstream is not None:
                upstream.close()
            self.fetches.pop(key, None)
            os.close(fetch.fd)
