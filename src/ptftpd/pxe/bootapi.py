"""The decision API (issue 22 item 2): ``pxed --boot-api URL`` asks ``URL/v1/boot/<mac>``
as pixiecore's API mode does, so an existing pixiecore API serves pxed unchanged.

The answer is pixiecore's JSON::

    {"kernel": "...", "initrd": ["...", ...], "cmdline": "...", "message": "..."}
    {"ipxe-script": "#!ipxe ..."}

plus our extensions ``{"local": true}`` (boot the next device) and ``{"profile":
"NAME"}`` (a profile of the settings file). ``kernel`` and ``initrd`` are absolute
URLs (http, https), references relative to the API's URL (resolved as pixiecore does,
RFC 3986 against URL), or ``file://`` paths, which must lie inside ROOT (pxed serves
them as ROOT's files). ``{{ ID "ref" }}`` in the cmdline becomes the URL of ``ref``
resolved the same way (a remote one is left as ``{{ ID "URL" }}`` for the rendering:
pxed's streamed path with ``--http-port``, `ptftpd.pxe.remote`, else the URL). A
non-200 answer or a malformed body means "ignore this machine" as in pixiecore
(`BootApi.unknown_to_default`: the chain's default instead). The machine's facts go
as query parameters: ``arch`` (IANA number), ``uuid``, ``ip``, ``vendor-class``,
``subnet``.

`BootApi` is the chain's `Source.API` link (`ptftpd.pxe.decision`), sans-IO: a machine
it knows nothing new about starts a request (through `start`, the driver's) and gets
`Pending(deadline)`; the driver (`ApiFetcher`) tells `learned(...)` what came back.
One request in flight per machine, at most `MAX_IN_FLIGHT` in all (made-up MACs
cannot grow it: beyond, a machine gets its cached answer or none); each request its
own task (no machine waits for another's). At the deadline (default 2 s), or when the
API cannot be reached, the last good answer for the machine stands in (`Source.CACHE`,
said in the log); without one the link steps aside. Answers are bounded (`MAX_ANSWER` bytes).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlencode, urljoin, urlsplit

from ptftpd.pxe.decision import Decision, Kind, MachineFacts, Pending, Profile, Source

__all__ = [
    "MAX_ANSWER",
    "ApiFetcher",
    "BootApi",
    "Outcome",
    "fetch",
    "parse_answer",
    "query_of",
    "resolve",
]

log = logging.getLogger("ptftpd.pxe")

MAX_ANSWER = 256 * 1024  # bytes of one API answer (headers and body)
DEFAULT_DEADLINE = 2.0
FRESH = 10.0  # seconds an answer serves a machine's next exchanges (iPXE's DHCP after the ROM's)
EXCHANGE = 60.0  # seconds a decision given holds for the rest of its exchange (same xid)
CACHE_SIZE = 65536  # machines whose last good answer is kept
MAX_IN_FLIGHT = 1024  # requests out at once (hostile DISCOVERs with made-up MACs)

_ID = re.compile(r"\{\{\s*ID\s+\"([^\"]*)\"\s*\}\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def resolve(ref: str, api_url: str, root: Path) -> str:
    """A kernel/initrd reference as a name the recipe can use: an absolute http(s) URL,
    or a path relative to ROOT (a ``file://`` path inside ROOT). ValueError otherwise."""
    if not ref or _CONTROL.search(ref) or " " in ref:
        raise ValueError(f"not a usable file reference: {ref[:80]!r}")
    url = urljoin(api_url, ref)
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return url
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        path = Path(unquote(parts.path)).resolve()
        base = root.resolve()
        if not path.is_relative_to(base) or path == base:
            raise ValueError(f"{ref[:80]!r} is outside ROOT")
        return quote(path.relative_to(base).as_posix())
    raise ValueError(f"{ref[:80]!r}: only http, https and file:// inside ROOT")


def _cmdline(value: object, api_url: str, root: Path) -> str:
    if isinstance(value, dict):  # pixiecore's older form: {"key": "value" | true}
        words = []
        for key, val in value.items():
            if val is True:
                words.append(str(key))
            elif isinstance(val, str | int | float) and not isinstance(val, bool):
                words.append(f"{key}={val}")
        value = " ".join(words)
    if not isinstance(value, str):
        raise ValueError("cmdline is not a string")

    def url_of(match: re.Match[str]) -> str:
        name = resolve(match.group(1), api_url, root)
        if "://" not in name:
            return "{{ base }}/" + name
        if '"' in name:
            raise ValueError(f"{name[:80]!r}: a quote in a URL")
        return f'{{{{ ID "{name}" }}}}'  # a remote URL: the rendering names it (recipes)

    text = _ID.sub(url_of, value)
    if _CONTROL.search(text):
        raise ValueError("cmdline has control characters")
    return text


def parse_answer(
    body: bytes, api_url: str, root: Path, profiles: Mapping[str, Profile]
) -> Decision:
    """An API answer (200's body) as a decision (`Source.API`); ValueError when it is
    malformed (not JSON, no recipe, a reference outside ROOT, an unknown profile)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the answer is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    rule = ""
    if data.get("local") is True:
        return Decision(Kind.LOCAL, Source.API, rule=rule)
    name = data.get("profile")
    if name is not None:
        profile = profiles.get(name) if isinstance(name, str) else None
        if profile is None:
            raise ValueError(f"profile {str(name)[:40]!r} is not in the settings file")
        return Decision(profile.kind, Source.API, profile, rule)
    script = data.get("ipxe-script")
    if script is not None:
        if not isinstance(script, str):
            raise ValueError("ipxe-script is not a string")
        return Decision(Kind.BOOT, Source.API, Profile("api", ipxe_script=script), rule)
    kernel = data.get("kernel")
    if not isinstance(kernel, str):
        raise ValueError("no kernel, ipxe-script, local or profile")
    initrd = data.get("initrd", [])
    if not isinstance(initrd, list) or not all(isinstance(i, str) for i in initrd):
        raise ValueError("initrd is not a list of strings")
    profile = Profile(
        "api",
        kernel=resolve(kernel, api_url, root),
        initrd=tuple(resolve(i, api_url, root) for i in initrd),
        cmdline=_cmdline(data.get("cmdline", ""), api_url, root),
    )
    return Decision(Kind.BOOT, Source.API, profile, rule)


def query_of(facts: MachineFacts) -> str:
    """The facts as the request's query string."""
    pairs = [
        ("arch", None if facts.arch is None else str(facts.arch)),
        ("uuid", facts.uuid),
        ("ip", None if facts.ip is None else str(facts.ip)),
        ("vendor-class", facts.vendor_class),
        ("subnet", None if facts.subnet is None else str(facts.subnet)),
    ]
    return urlencode([(k, v) for k, v in pairs if v is not None])


class Failure(Exception):
    """The API could not be asked (refused, timed out, broken HTTP): the cache stands in."""


@dataclass(frozen=True)
class Outcome:
    """What one request learned: a `decision`, or why there is none. `reachable`: the
    API answered (a non-200 or malformed answer is its word: ignore); False: it could
    not be asked (the cache stands in)."""

    decision: Decision | None
    reachable: bool
    why: str = ""


def _warn_stand_in(mac: str, why: str) -> None:
    log.warning("boot API: %s: %s; its last answer stands in", mac, why)


@dataclass(eq=False)
class BootApi:
    """`Source.API` (see the module docstring). `start(facts)` is the driver's: it must
    begin a request and return at once; `learned` is called with its outcome."""

    url: str
    start: Callable[[MachineFacts], None]
    _: KW_ONLY
    deadline: float = DEFAULT_DEADLINE
    unknown_to_default: bool = False
    cache_size: int = CACHE_SIZE
    max_in_flight: int = MAX_IN_FLIGHT
    on_cache: Callable[[str, str], None] = _warn_stand_in  # told when the cache stands in
    inflight: dict[str, float] = field(default_factory=dict, init=False)  # mac -> deadline
    recent: OrderedDict[str, tuple[Outcome, float]] = field(default_factory=OrderedDict, init=False)
    cache: OrderedDict[str, Decision] = field(default_factory=OrderedDict, init=False)
    # mac -> its exchange: (xid, what the machine was given, when, a REQUEST came)
    exchanges: OrderedDict[str, tuple[int, Decision | None, float, bool]] = field(
        default_factory=OrderedDict, init=False
    )

    def decide(self, facts: MachineFacts, now: float) -> Decision | Pending | None:
        """What `facts.mac` gets now. A decision once given holds for the rest of its
        exchange (same xid, up to `EXCHANGE` seconds; a DISCOVER after its REQUEST
        starts a new one, as a machine whose xid does not change from boot to boot):
        EDK2 collects offers ~8 s before its REQUEST, which must not ask the API again
        (and wait for it)."""
        mac = facts.mac
        given = self.exchanges.get(mac)
        if (
            given is not None
            and facts.exchange is not None
            and given[0] == facts.exchange
            and now - given[2] < EXCHANGE
            and (facts.requesting or not given[3])
        ):
            if facts.requesting and not given[3]:
                self.exchanges[mac] = (*given[:3], True)
            return given[1]
        answer = self._decide(facts, now)
        if facts.exchange is not None and not isinstance(answer, Pending):
            self.exchanges.pop(mac, None)
            self.exchanges[mac] = (facts.exchange, answer, now, facts.requesting)
            while len(self.exchanges) > self.cache_size:
                self.exchanges.popitem(last=False)
        return answer

    def _decide(self, facts: MachineFacts, now: float) -> Decision | Pending | None:
        mac = facts.mac
        found = self.recent.get(mac)
        if found is not None and now - found[1] < FRESH:
            return self._answer(mac, found[0])
        due = self.inflight.get(mac)
        if due is None:
            if len(self.inflight) >= self.max_in_flight:
                return self._stand_in(mac, f"{self.max_in_flight} requests already out")
            self.inflight[mac] = due = now + self.deadline
            self.start(facts)
        if now < due:
            return Pending(Source.API, due)
        return self._stand_in(mac, "no answer within the deadline")

    def _answer(self, mac: str, outcome: Outcome) -> Decision | None:
        if outcome.decision is not None:
            return outcome.decision
        if not outcome.reachable:
            return self._stand_in(mac, outcome.why)
        if self.unknown_to_default:
            return None
        return Decision(Kind.IGNORE, Source.API, rule="api")

    def _stand_in(self, mac: str, why: str) -> Decision | None:
        cached = self.cache.get(mac)
        if cached is None:
            return None
        self.on_cache(mac, why)
        return Decision(cached.kind, Source.CACHE, cached.profile, cached.rule)

    def learned(self, mac: str, outcome: Outcome, now: float) -> None:
        """A request's outcome (in the loop)."""
        self.inflight.pop(mac, None)
        self.recent.pop(mac, None)
        self.recent[mac] = (outcome, now)
        while len(self.recent) > self.cache_size:
            self.recent.popitem(last=False)
        if outcome.decision is not None:
            self.cache.pop(mac, None)
            self.cache[mac] = outcome.decision
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)


async def fetch(url: str, timeout: float, limit: int = MAX_ANSWER) -> tuple[int, bytes]:
    """GET `url` (HTTP/1.1, one connection, closed after): (status, body). `Failure`
    when it cannot be asked within `timeout` or the answer is broken or over `limit`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Failure(f"not an http(s) URL: {url[:100]}")
    tls = ssl.create_default_context() if parts.scheme == "https" else None
    port = parts.port or (443 if tls else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc.rpartition("@")[2]
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n"
        "User-Agent: pxed\r\nConnection: close\r\n\r\n"
    ).encode()

    async def ask() -> bytes:
        reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=tls)
        try:
            writer.write(request)
            await writer.drain()
            data = b""
            while len(data) <= limit:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                data += chunk
            return data
        finally:
            writer.close()

    try:
        data = await asyncio.wait_for(ask(), timeout)
    except TimeoutError:
        raise Failure(f"no answer within {timeout:g} s") from None
    except (OSError, ssl.SSLError) as exc:
        raise Failure(f"cannot reach the API: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise Failure(f"the answer is over {limit} bytes")
    return _parse_http(data)


def _parse_http(data: bytes) -> tuple[int, bytes]:
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    words = lines[0].split(b" ", 2)
    if not sep or len(words) < 2 or not words[0].startswith(b"HTTP/") or not words[1].isdigit():
        raise Failure("not an HTTP answer")
    status = int(words[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = _dechunk(body)
    elif b"content-length" in headers:
        try:
            length = int(headers[b"content-length"])
        except ValueError:
            raise Failure("a broken Content-Length") from None
        if len(body) < length:
            raise Failure("the answer ended early")
        body = body[:length]
    return status, body


def _dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, sep, data = data.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            raise Failure("a broken chunk") from None
        if not sep or len(data) < size:
            raise Failure("the answer ended early")
        if size == 0:
            return out
        out += data[:size]
        data = data[size + 2 :]


class ApiFetcher:
    """The driver of a `BootApi` in the running loop: each machine's request its own
    task (at most one per machine, the `BootApi` sees to that); `wake(mac)` is told
    when an answer arrives (pxed may then answer the machine's next request)."""

    def __init__(
        self,
        url: str,
        root: Path,
        profiles: Callable[[], Mapping[str, Profile]],
        clock: Callable[[], float],
        *,
        deadline: float = DEFAULT_DEADLINE,
        unknown_to_default: bool = False,
    ) -> None:
        self.url = url.rstrip("/")
        self.root = root
        self.profiles = profiles
        self.clock = clock
        self.api = BootApi(
            self.url, self._start, deadline=deadline, unknown_to_default=unknown_to_default
        )
        self.tasks: set[asyncio.Task[None]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.wake: Callable[[str], None] = lambda mac: None
        # Told of each request: outcome (ok, rejected, unreachable) and seconds (--metrics).
        self.on_request: Callable[[str, float], None] = lambda outcome, seconds: None
        self.latencies: list[float] = []  # seconds per answered request (bounded)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Requests start in `loop`, also when a decision is asked from another thread
        (the DHCP server answers PostgreSQL leases in threads)."""
        self.loop = loop

    def _start(self, facts: MachineFacts) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is None or (self.loop is not None and running is not self.loop):
            if self.loop is None:
                raise RuntimeError("ApiFetcher: no event loop attached")
            self.loop.call_soon_threadsafe(self._spawn, facts)
        else:
            self._spawn(facts)

    def _spawn(self, facts: MachineFacts) -> None:
        task = asyncio.get_running_loop().create_task(self._ask(facts))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def url_for(self, facts: MachineFacts) -> str:
        query = query_of(facts)
        return f"{self.url}/v1/boot/{facts.mac}" + (f"?{query}" if query else "")

    async def _ask(self, facts: MachineFacts) -> None:
        mac = facts.mac
        began = self.clock()
        # Past the deadline the cache answers; the request may still finish (and
        # refresh the cache) for a little longer, never without bound.
        try:
            status, body = await fetch(self.url_for(facts), self.api.deadline * 5)
        except Failure as exc:
            outcome = Outcome(None, False, str(exc))
            log.warning("boot API: %s: %s", mac, exc)
        else:
            outcome = self._outcome(mac, status, body)
        took = self.clock() - began
        self.latencies.append(took)
        kind = "ok" if outcome.decision else "rejected" if outcome.reachable else "unreachable"
        self.on_request(kind, took)
        del self.latencies[:-4096]
        self.api.learned(mac, outcome, self.clock())
        self.wake(mac)

    def _outcome(self, mac: str, status: int, body: bytes) -> Outcome:
        if status != 200:
            why = f"HTTP {status}"
        else:
            try:
                decision = parse_answer(body, self.url + "/", self.root, self.profiles())
            except ValueError as exc:
                why = f"malformed answer: {exc}"
            else:
                log.info("boot API: %s: %s", mac, decision.describe())
                return Outcome(decision, True)
        then = "the default decides" if self.api.unknown_to_default else "ignored"
        log.warning("boot API: %s: %s: %s", mac, why, then)
        return Outcome(None, True, why)

    def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
