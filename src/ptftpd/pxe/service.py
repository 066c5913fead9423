"""pxed's asyncio service: DHCP (or proxyDHCP), the 4011 boot server, read-only TFTP,
and optionally HTTP (`--http-port`) and DHCPv6 + RA (`--ipv6`), in the running loop.

Why these pieces live together: a network boot is one conversation spread over several
protocols. The firmware's DHCP request says what it is, the reply must name a file that
fits that firmware, and the TFTP or HTTP server must then serve it. One process lets
`pxed` choose the file per firmware and write one boot log line per boot.

`reload(new)` (SIGHUP) applies re-read settings without dropping a running transfer or a
lease: the DHCP engine is rebuilt on the same lease store and socket, the boot files,
TFTP limits and boot idle time change for what comes next; what is bound or built once
(interface, ports, mode, ROOT, HTTP, IPv6) is kept and named in the summary line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable
from ipaddress import IPv6Address
from typing import TYPE_CHECKING

from ptftpd import datagrams
from ptftpd.closing import close_all
from ptftpd.dhcp.engine import SILENT, WAIT, BootChoice, Held, Outgoing, message_label
from ptftpd.dhcp.options import MessageType, Opt
from ptftpd.dhcp.packet import ZERO_IP, Message
from ptftpd.dhcp.server import DhcpServer, open_dhcp_socket
from ptftpd.dhcp6 import Dhcp6Service, config_for_interface
from ptftpd.events import BootDecided, DhcpMessage, Event, EventSink, fan_out, ignore
from ptftpd.http import HttpConfig, HttpServer
from ptftpd.netif import InterfaceError, global_hosts
from ptftpd.pxe.boot_records import BootRetention, open_boot_records
from ptftpd.pxe.bootapi import ApiFetcher
from ptftpd.pxe.bootlog import BootLog, BootTracker
from ptftpd.pxe.config import PxeConfig, with_http_clients
from ptftpd.pxe.decision import BUILTIN
from ptftpd.pxe.firmware import (
    HTTP_VENDOR_CLASS,
    choose_boot_file,
    log_choice,
    missing_boot_files,
)
from ptftpd.pxe.holding import HeldDriver
from ptftpd.pxe.ipv6 import Pxe6Policy
from ptftpd.pxe.machine_state import (
    StateKeeper,
    add_state_routes,
    open_machine_states,
    state_file_path,
)
from ptftpd.pxe.machines import Chosen, Machines
from ptftpd.pxe.proxy import ProxyResponder
from ptftpd.pxe.reloading import kept_settings, reload_summary
from ptftpd.pxe.remote import RemoteFiles, RemoteNames, cache_directory
from ptftpd.pxe.timeline import Timeline
from ptftpd.pxe.timeline_driver import TimelineDriver
from ptftpd.pxe.traces import BootTraces, open_traces
from ptftpd.pxe.workers import TftpPool, TftpPoolFactory
from ptftpd.tftp.server import TftpServer

if TYPE_CHECKING:  # ptftpd.pxe.api reads the timeline: imported when used
    from ptftpd.pxe.api import ApiServer, Router

__all__ = ["PxeService", "TftpPool", "TftpPoolFactory", "kept_settings"]

log = logging.getLogger("ptftpd.pxe")


class PxeService:
    """DHCP (or proxyDHCP), the 4011 boot server and read-only TFTP in the running loop;
    HTTP with `config.http_port`, DHCPv6 + RA with `config.ipv6`. With `tftp_pool`
    TFTP is served by worker processes instead of in this loop."""

    def __init__(self, config: PxeConfig, tftp_pool: TftpPoolFactory | None = None) -> None:
        config = with_http_clients(config)
        self.config = config
        self.boot_log = BootLog(config.boot_idle)
        self.machines = Machines(
            config.inventory,
            config.dhcp.server_ip,
            config.http_base,
            config.dhcp.network,
            secure_boot=config.files.secure_boot,
        )
        self.machines.know_hosts(config.dhcp.static_hosts)
        self.responder = self._responder(config, self.boot_log, self.machines)
        self.dhcp_server: DhcpServer | None = None
        self.tftp_server: TftpServer | None = None
        self.tftp_pool: TftpPool | None = None
        self._pool_factory = tftp_pool
        self.http_server: HttpServer | None = None
        self.dhcp6_service: Dhcp6Service | None = None
        self.api_server: ApiServer | None = None
        # proxyDHCP's 67 and the 4011 boot server, by port
        self._endpoints: dict[int, datagrams.UdpEndpoint[datagrams.Datagram]] = {}
        self._boot_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        # The boot timeline (issue 23): every attempt of every machine, step by step,
        # fed the same events as the boot log (TFTP and HTTP through the tracker, DHCP
        # from the engine and this service's own sockets).
        self.timeline = TimelineDriver(
            Timeline(
                stall=config.boot_idle,
                max_attempts=config.boot_records,
                http_port=config.http_port,
            )
        )
        self._tracker = BootTracker(
            self.boot_log, time.monotonic, self._arm_boot_timer, observe=self.timeline.feed
        )
        self._policy6: Pxe6Policy | None = None
        self.boot_records: BootRetention | None = None
        self.machine_states: StateKeeper | None = None  # issue 22 item 5
        self.boot_api: ApiFetcher | None = None  # pxed --boot-api (issue 22 item 2)
        self.remote_files: RemoteFiles | None = None  # remote kernels, with --http-port
        self.traces: BootTraces | None = None  # pxed --otlp: each attempt as a trace
        self._last_request: Message | None = None
        # Requests held while their machine's decision is asked for (--boot-api): fed
        # to the engine again when it comes, or at the API's deadline.
        self.holding = HeldDriver(
            lambda: self.config.boot_api_deadline,
            lambda: None if self.boot_api is None else self.boot_api.api.inflight,
            self._in_loop,
        )
        self._receiving: tuple[bytes, tuple[str, int], int] | None = None  # proxy, 4011
        # Told of every DHCP message on the sockets this service owns (proxyDHCP's 67,
        # the 4011 boot server), in and out: pxed --metrics counts them.
        self.events: EventSink = ignore

    def _responder(
        self, config: PxeConfig, boot_log: BootLog, machines: Machines
    ) -> ProxyResponder:
        dhcp = config.dhcp
        responder = ProxyResponder(
            dhcp.server_ip,
            config.files,
            next_server=dhcp.next_server,
            vendor_prefixes=dhcp.pxe_vendor_prefixes,
            boot_log=boot_log,
            answer_discover=config.proxy,
            http_base=config.http_base,
            machines=machines,
        )
        responder.on_wait = self._proxy_waits
        return responder

    def _proxy_waits(self, mac: str, until: float) -> None:
        """proxyDHCP / 4011: the datagram being handled waits for `mac`'s decision;
        it is handled again when the decision comes (or at `until`)."""
        received = self._receiving
        if received is not None:
            self.holding.hold("proxy ", mac, lambda: self._received(*received), until)

    def _generated(self, name: str, peer: str) -> bytes | None:
        """TFTP and HTTP: a machine's rendered script (or grub configuration)."""
        now = time.monotonic()
        made = self.machines.script(name, now)
        if made is None:
            made = self.machines.grub_config(name, self.boot_log.mac_of_ip.get(peer), now)
        return made

    def boot_policy(self, request: Message) -> BootChoice | None:
        """The DHCP server's hook (full mode): the machine's decision (`Machines`:
        inventory, profiles), its firmware-aware file, boot log bookkeeping. UEFI HTTP
        boot clients get a URL and vendor class `HTTPClient` (which replaces the
        engine's `PXEClient`: EDK2 ignores an offer without it). None: no boot file
        (`local`); `SILENT`: no boot answer (`ignore`)."""
        now = time.monotonic()
        again = self._last_request is request  # the engine asks twice for one request
        self._last_request = request
        chosen = self.machines.choose(self.config.files, request, now)
        if chosen.wait:
            if chosen.until is not None:
                self.holding.policy_waits("v4", request.mac_str, chosen.until)
            return WAIT
        choice = chosen.choice
        mac = request.mac_str
        mtype = request.message_type
        if not again and mtype is MessageType.DISCOVER:
            self._booking(request, chosen, "OFFER")
        elif not again and mtype is MessageType.REQUEST:
            ip = request.requested_ip or (request.ciaddr if request.ciaddr != ZERO_IP else None)
            self._in_loop(lambda: self.boot_log.address(mac, ip, now=now))
        if chosen.silent:
            return SILENT
        if choice is None:
            return None
        if choice.http:
            return BootChoice(choice.file, options={Opt.VENDOR_CLASS: HTTP_VENDOR_CLASS.encode()})
        if choice.vendor_options is not None:
            return BootChoice(choice.file, options={Opt.VENDOR_SPECIFIC: choice.vendor_options})
        return BootChoice(choice.file)

    def _booking(self, request: Message, chosen: Chosen, what: str) -> None:
        """A DISCOVER: the boot log's stage (and the decision), the choice's log line."""
        now = time.monotonic()
        mac = request.mac_str
        choice = chosen.choice or choose_boot_file(self.config.files, request)
        stage, arch = choice.arch_label, choice.arch
        decision = chosen.decision
        self._in_loop(lambda: self.boot_log.discover(mac, stage, arch, now=now))
        if decision is not BUILTIN:
            self._in_loop(lambda: self.boot_log.decided(mac, decision.describe()))
            self._decided(decision.event(mac))
        self._in_loop(self._arm_boot_timer)
        if chosen.choice is not None:
            log_choice(what, request, chosen.choice)
        else:
            log.info("%s mac=%s: %s: no boot file", what, mac, decision.describe())

    async def start(self) -> None:
        cfg = self.config
        dhcp = cfg.dhcp
        loop = asyncio.get_running_loop()
        self._loop, self._loop_thread = loop, threading.get_ident()
        self.holding.attach(loop)
        tracker = self._tracker
        self.traces = open_traces(self.timeline, cfg.otlp, cfg.boot_idle)
        if self.traces is not None:
            self.traces.start()
        iface = dhcp.interface or str(dhcp.server_ip)
        # IFACE's global IPv6 addresses (boot URLs never name a link-local one). Only
        # --ipv6 requires one: HTTP serves whichever addresses IFACE has, and an
        # IPv4-only provisioning network (IPv6 switched off on IFACE) is served on IPv4.
        v6_hosts: list[str] = []
        if cfg.ipv6:
            v6_hosts = global_hosts(iface, family=6)
        elif cfg.http_port is not None:
            try:
                v6_hosts = global_hosts(iface, family=6)
            except InterfaceError:
                log.debug("%s has no IPv6 address: HTTP on IPv4 only", iface)
        tftp_hosts = [str(dhcp.server_ip)]
        if cfg.ipv6:
            tftp_hosts += v6_hosts
        if self._pool_factory is not None:
            pool = self._pool_factory(cfg.tftp, tftp_hosts, cfg.tftp_port)
            self.tftp_pool = pool
            pool.attach(loop, tracker)
        else:
            tftp = TftpServer(
                cfg.tftp,
                on_started=tracker.started,
                on_finished=tracker.finished,
                on_refused=tracker.refused,
            )
            tftp.generated = self._generated
            self.tftp_server = tftp
            await tftp.start(tftp_hosts, cfg.tftp_port)
        if cfg.http_port is not None:
            bind = tuple((host, cfg.http_port) for host in [str(dhcp.server_ip), *v6_hosts])
            http_config = HttpConfig(
                root=cfg.tftp.root,
                bind=bind,
                max_connections=cfg.http_max_connections,
                rate_limit=cfg.http_rate_limit,
                total_rate_limit=cfg.http_total_rate_limit,
            )
            http = HttpServer(http_config, on_served=tracker.http_served)
            http.generated = self._generated
            self.http_server = http
            await http.start()
            self._stream_remote_files(http)
        if not cfg.proxy:  # before the API, which shows the other servers' boots too
            self._keep_boot_records()
        await self._keep_machine_states()
        if cfg.boot_api is not None:
            fetcher = ApiFetcher(
                cfg.boot_api,
                cfg.tftp.root,
                lambda: self.machines.inventory.profiles,
                time.monotonic,
                deadline=cfg.boot_api_deadline,
                unknown_to_default=cfg.boot_api_default,
            )
            fetcher.attach(loop)
            fetcher.wake = self.holding.wake
            self.boot_api = fetcher
            self.machines.set_api(fetcher.api)
        if cfg.api is not None:
            from ptftpd.pxe.api import ApiServer, api_config

            api = ApiServer(api_config(cfg.api), self.api_routes())
            self.api_server = api
            await api.start()
        if cfg.ipv6:
            await self._start_dhcp6(iface)
        ports = [cfg.boot_server_port]
        if cfg.proxy:
            ports.insert(0, dhcp.port)
        else:
            server = DhcpServer(dhcp, boot_policy=self.boot_policy)
            server.on_wait = self._on_wait
            server.events = self.timeline.feed  # --metrics chains in front (count_messages)
            self.dhcp_server = server
            await server.start()
        for port in ports:
            sock = open_dhcp_socket(dhcp.interface, port)
            endpoint = datagrams.endpoint(sock, functools.partial(self._burst, port=port), log)
            self._endpoints[port] = endpoint
            endpoint.start(loop)
        log.info(
            "PXE %s on %s (%s): boot server port %d, TFTP %s port %d%s%s, files %s",
            "proxyDHCP" if cfg.proxy else "DHCP",
            dhcp.interface,
            dhcp.server_ip,
            cfg.boot_server_port,
            cfg.tftp.root,
            cfg.tftp_port,
            "" if cfg.http_port is None else f", HTTP port {cfg.http_port}",
            ", DHCPv6" + (" proxy" if cfg.proxy else "") if cfg.ipv6 else "",
            ", ".join(f"{what}={name}" for what, name in cfg.files.configured()),
        )

    def api_routes(self) -> Router:
        """The operator API's route table (`pxed --api`): the live page and the boot
        timeline's read endpoints. Other endpoints register here (`ptftpd.pxe.api`)."""
        from ptftpd.pxe.api import EventHub, Router, add_boot_routes

        router = Router(token=lambda: self.config.api_token)
        records = self.boot_records
        if records is None:
            add_boot_routes(router, self.timeline, EventHub(self.timeline))
        else:  # the other servers sharing the lease database show their boots too
            hub = EventHub(self.timeline, server=records.server)
            add_boot_routes(router, self.timeline, hub, records.shared, records.server)
        add_state_routes(router, lambda: self.machine_states)
        return router

    async def _start_dhcp6(self, iface: str) -> None:
        """DHCPv6 (+ RA) on IFACE's global /64; boot URLs name its first global address."""
        cfg = self.config
        leases = cfg.dhcp.leases_path
        leases6 = leases.with_name(leases.stem + "-v6.sqlite") if leases else None
        config6 = config_for_interface(
            iface,
            leases_path=leases6,
            leases_url=cfg.dhcp.leases_url,
            peer_timeout=cfg.dhcp.peer_timeout,
            proxy=cfg.proxy,
            send_ra=cfg.ra,
            boot_service_port=cfg.boot_server_port if cfg.proxy else None,
        )
        server6: IPv6Address = config6.server_addresses[0]
        self.machines.serve_ipv6(str(server6), cfg.http_port)
        policy = Pxe6Policy(cfg.files, server6, cfg.http_port, self._discover6, self.machines)
        policy.on_decided = self.boot_log.decided
        policy.on_event = self._decided
        policy.on_wait = self._waiting6
        self._policy6 = policy
        config6 = dataclasses.replace(config6, boot_policy=policy)
        tracker = self._tracker
        # The DHCPv6 engine's events: the boot log learns addresses, the timeline
        # sees the exchange (it takes what it knows and ignores the rest), and
        # `events` (--metrics) counts them.
        events6 = fan_out(tracker.dhcp6, self.timeline.feed, self._event6)
        service = Dhcp6Service(config6, events=events6)
        service.on_wait = self._on_wait6
        self.dhcp6_service = service
        await service.start()

    def _on_wait(self, held: Held) -> None:
        """The DHCPv4 engine made `held` wait for its machine's decision (any thread)."""
        server = self.dhcp_server
        if server is not None:
            self.holding.engine_held4(held.mac, lambda: server.feed(held))

    def _waiting6(self, mac: str, until: float) -> None:
        """DHCPv6: the policy holds `mac`'s message (the engine's `on_wait` follows, in
        the same thread)."""
        self.holding.policy_waits("v6", mac, until)

    def _on_wait6(self, data: bytes, source: tuple[str, int]) -> None:
        """The DHCPv6 engine held this message for its machine's decision (any thread)."""
        service = self.dhcp6_service
        if service is not None:
            self.holding.engine_held6(functools.partial(service.feed, data, source))

    def _decided(self, event: BootDecided) -> None:
        """A per-machine decision (not pxed's built-in table): to the boot timeline."""
        self._in_loop(lambda: self.timeline.feed(event))

    def _in_loop(self, step: Callable[[], None]) -> None:
        """Run `step` in the event loop: at once there, queued from another thread (the
        DHCP server answers PostgreSQL leases in threads; the boot log is the loop's)."""
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            step()
        else:
            loop.call_soon_threadsafe(step)

    def _discover6(self, client: str, stage: str, arch: int | None) -> None:
        self.boot_log.discover(client, stage, arch, now=time.monotonic())
        self._arm_boot_timer()

    def _arm_boot_timer(self) -> None:
        """Wake up when the next boot may end (`BootLog.next_deadline`). A new boot's
        deadline is never earlier than an open one's, so a pending timer stands."""
        if self._boot_timer is not None:
            return
        deadline = self.boot_log.next_deadline()
        if deadline is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # the hooks called without a loop (tests): nothing to wake
            return
        delay = max(0.0, deadline - time.monotonic())
        self._boot_timer = loop.call_at(loop.time() + delay, self._boot_deadline)

    def _boot_deadline(self) -> None:
        self._boot_timer = None
        self.boot_log.expire(time.monotonic(), list(self._tracker.busy))
        self._arm_boot_timer()

    def reload(self, new: PxeConfig) -> str:
        """Apply re-read settings (SIGHUP); returns the one-line summary. Raises
        ValueError, with the running settings untouched, when ROOT lacks a boot file."""
        old = self.config
        new, kept = kept_settings(old, new)
        new = with_http_clients(new)  # after: --http-port is one of the kept settings
        missing = missing_boot_files(old.tftp.root, new.files)
        if missing:
            raise ValueError(
                f"ROOT {old.tftp.root} does not hold the boot file(s): {', '.join(missing)}"
            )
        server = self.dhcp_server
        engine = None
        if server is not None:
            server.config = new.dhcp
            try:
                engine = server.build_engine()
            except BaseException:
                server.config = old.dhcp
                raise
        # Everything is built: switch over (no await, so no packet sees half of it).
        self.config = new
        if server is not None:
            server.engine = engine
        self.machines.reload(new.inventory)
        self.machines.know_hosts(new.dhcp.static_hosts)
        self.machines.secure_boot = new.files.secure_boot
        self.responder = self._responder(new, self.boot_log, self.machines)
        self.boot_log.idle = new.boot_idle
        self.timeline.timeline.stall = new.boot_idle
        self.timeline.timeline.bound(new.boot_records)
        if self.boot_records is not None:  # the next prune uses it
            self.boot_records.max_age = new.boot_history
        if self._boot_timer is not None:  # a shorter --boot-idle ends boots sooner
            self._boot_timer.cancel()
            self._boot_timer = None
            self._arm_boot_timer()
        if self._policy6 is not None:
            self._policy6.files = new.files
        if self.tftp_server is not None:
            # Read per request: running transfers keep the limits they started with.
            self.tftp_server.config = new.tftp
            self.tftp_server.rules.max_sessions = new.tftp.max_sessions
        if self.tftp_pool is not None:
            self.tftp_pool.reload(new.tftp)
        return reload_summary(new, kept, dhcp=server is not None)

    def active(self) -> int:
        """Running TFTP transfers, in this process or its workers (what a stop drains)."""
        if self.tftp_pool is not None:
            return self.tftp_pool.active()
        return 0 if self.tftp_server is None else self.tftp_server.answered()

    def stop_accepting(self) -> None:
        """New TFTP requests get an ERROR; running transfers go on."""
        if self.tftp_server is not None:
            self.tftp_server.accepting = False
        if self.tftp_pool is not None:
            self.tftp_pool.stop_accepting()

    def _burst(self, burst: list[datagrams.Datagram], port: int) -> None:
        for data, addr in burst:
            try:
                self._received(data, (str(addr[0]), int(addr[1])), port)
            except Exception:  # a bug must cost one packet, never the service
                log.exception("internal error handling a packet from %s", addr[0])

    def _received(self, data: bytes, source: tuple[str, int], port: int) -> None:
        boot_server = port == self.config.boot_server_port
        log.debug("recv %d bytes on port %d from %s:%d", len(data), port, source[0], source[1])
        now = time.monotonic()
        self._receiving = (data, source, port)
        try:
            replies = self.responder.handle(
                data, source, boot_server, now=now, events=self._event, port=port
            )
        finally:
            self._receiving = None
        self._arm_boot_timer()
        for out in replies:
            self._send(out, port)

    def _event(self, event: Event) -> None:
        """A DHCP message on a socket this service owns: to the timeline, then `events`."""
        self.timeline.feed(event)
        self.events(event)

    def _event6(self, event: Event) -> None:
        """A DHCPv6 (or RA) event: to `events`, as it is when the event comes (set after
        the start by --metrics)."""
        self.events(event)

    def _send(self, out: Outgoing, port: int) -> None:
        """Reply from the socket the request came to, so the source port is right."""
        endpoint = self._endpoints.get(port)
        if endpoint is None:
            return
        message = out.message
        if message is not None:
            yiaddr = message.yiaddr if message.yiaddr != ZERO_IP else None
            label = message_label(message)
            self._event(DhcpMessage("out", label, message.mac_str, yiaddr, port=port))
        endpoint.send(out.payload, out.address, delay=self.config.dhcp.reply_delay)

    def _keep_boot_records(self) -> None:
        """With a lease database (SQLite file or PostgreSQL), the boot attempts go there
        too (`pxe/boot_records.py`): kept across restarts, shared by the servers that
        share the database, pruned by age."""
        dhcp = self.config.dhcp
        store = open_boot_records(dhcp.leases_path, dhcp.leases_url, str(dhcp.server_ip))
        if store is not None:
            self.boot_records = BootRetention(
                self.timeline, store, str(dhcp.server_ip), max_age=self.config.boot_history
            )
            self.boot_records.start()

    async def _keep_machine_states(self) -> None:
        """Machine states (boot local / install, issue 22 item 5) from where they
        persist: the lease database (SQLite or PostgreSQL), or in --proxy mode (no lease
        database) a state file beside where the lease file would be."""
        dhcp = self.config.dhcp
        leases_path = None if self.config.proxy else dhcp.leases_path
        leases_url = None if self.config.proxy else dhcp.leases_url
        state_file = state_file_path(dhcp.leases_path, dhcp.interface or str(dhcp.server_ip))
        store = open_machine_states(leases_path, leases_url, str(dhcp.server_ip), state_file)
        self.machine_states = StateKeeper(self.machines.states, store)
        await self.machine_states.start()

    def _stream_remote_files(self, http: HttpServer) -> None:
        """Remote kernels/initrds a decision names are streamed by pxed (`pxe.remote`)."""
        cfg, dhcp = self.config, self.config.dhcp
        state_dir = state_file_path(dhcp.leases_path, dhcp.interface or "").parent
        where = cache_directory(state_dir, dhcp.interface or str(dhcp.server_ip))
        self.remote_files = remote = RemoteFiles(
            where,
            RemoteNames(),
            cache_size=cfg.remote_cache_size,
            max_file=cfg.remote_max_file,
            timeout=cfg.remote_timeout,
        )
        remote.start()
        self.machines.remote = remote.names
        http.streamed = remote.open

    def close(self) -> None:
        close_all(self.remote_files, self.boot_api, self.machine_states)
        self.boot_api = None
        self.machine_states = None
        self.timeline.flush()  # the last changes, to the watchers below
        close_all(self.boot_records, self.traces)
        self.boot_records = None
        self.traces = None
        self.timeline.close()
        if self._boot_timer is not None:
            self._boot_timer.cancel()
            self._boot_timer = None
        self.holding.close()
        close_all(
            *self._endpoints.values(),
            self.dhcp_server,
            self.dhcp6_service,
            self.http_server,
            self.api_server,
            self.tftp_server,
            self.tftp_pool,
        )
        self._endpoints.clear()
        self.tftp_pool = None
        self.boot_log.flush()
