"""Issue 22: the DHCPv6 engine and a boot policy that is still waiting (`WAIT6`, pxed's
boot API): no reply at all to the boot exchange (Solicit, Request, Information-request)
and no address offered meanwhile; the retransmission that finds the decision gets it;
a Renew while waiting is answered, without boot options; the policy is asked once per
message (one decision per request, as over DHCPv4)."""

from __future__ import annotations

from test_dhcp6_engine import T0, make_engine, msg, none, one

from ptftpd.dhcp6.boot import WAIT6, BootChoice6, BootRequest6
from ptftpd.dhcp6.codec import BootFileUrl, IaNa, MsgType, OptionRequest, ServerId
from ptftpd.events import Dhcp6Message, Lease6Event

CLIENT = bytes.fromhex("00030001525400220601")


class Slow:
    """A policy that waits until told, and counts what it was asked."""

    def __init__(self) -> None:
        self.ready = False
        self.asked = 0

    def __call__(self, request: BootRequest6) -> BootChoice6:
        self.asked += 1
        return BootChoice6("tftp://[fd00:77::1]/mine.efi") if self.ready else WAIT6


def test_a_pending_decision_holds_the_boot_exchange_and_offers_nothing() -> None:
    policy = Slow()
    engine = make_engine(boot_policy=policy)
    seen: list[object] = []
    engine.events = seen.append
    oro = OptionRequest((59,))
    solicit = msg(MsgType.SOLICIT, CLIENT, IaNa(1, 0, 0), oro)
    none(engine, solicit)
    none(engine, msg(MsgType.INFORMATION_REQUEST, CLIENT, oro))
    assert not [e for e in seen if isinstance(e, Lease6Event)]  # nothing offered
    assert [e.direction for e in seen if isinstance(e, Dhcp6Message)] == ["in", "in"]
    assert policy.asked == 2  # once per message
    policy.ready = True
    advertise = one(engine, solicit, T0 + 4)  # EDK2's first retransmission
    assert advertise.msg_type == MsgType.ADVERTISE
    assert advertise.first(BootFileUrl) == BootFileUrl("tftp://[fd00:77::1]/mine.efi")
    assert policy.asked == 3
    server = advertise.first(ServerId)
    ia = advertise.first(IaNa)
    assert server is not None and ia is not None
    reply = one(engine, msg(MsgType.REQUEST, CLIENT, server, ia, oro), T0 + 5)
    assert reply.first(BootFileUrl) is not None
    # waiting again (a later boot): a Renew is still answered, without boot options
    policy.ready = False
    renew = one(engine, msg(MsgType.RENEW, CLIENT, server, ia, oro), T0 + 6)
    assert renew.msg_type == MsgType.REPLY and renew.first(BootFileUrl) is None
    assert renew.first(IaNa) is not None
