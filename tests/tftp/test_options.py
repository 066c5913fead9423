"""Option negotiation rules (RFC 2347/2348/2349/7440) on both sides."""

from __future__ import annotations

import pytest

from ptftpd.tftp.options import OptionError, accept_oack, negotiate


def test_no_options_means_no_oack() -> None:
    assert negotiate((), is_read=True, file_size=10).oack == ()


def test_oack_echoes_only_requested_and_accepted_in_client_spelling() -> None:
    n = negotiate(
        (("BLKSIZE", "1428"), ("foo", "bar"), ("tsize", "0"), ("multicast", "")),
        is_read=True,
        file_size=1234,
    )
    assert n.oack == (("BLKSIZE", "1428"), ("tsize", "1234"))
    assert n.blksize == 1428 and n.windowsize == 1


def test_blksize_clamped_not_refused() -> None:
    n = negotiate((("blksize", "65464"),), is_read=True, file_size=1, blksize_max=1468)
    assert n.blksize == 1468 and n.oack == (("blksize", "1468"),)
    assert negotiate((("blksize", "99999"),), is_read=True, file_size=1).blksize == 65464


@pytest.mark.parametrize("value", ["7", "0", "-5", "abc", ""])
def test_invalid_blksize_ignored(value: str) -> None:
    n = negotiate((("blksize", value),), is_read=True, file_size=1)
    assert n.oack == () and n.blksize == 512


def test_timeout_range() -> None:
    assert negotiate((("timeout", "0"),), is_read=True, file_size=1).oack == ()
    assert negotiate((("timeout", "256"),), is_read=True, file_size=1).oack == ()
    n = negotiate((("timeout", "255"),), is_read=True, file_size=1)
    assert n.timeout == 255.0 and n.oack == (("timeout", "255"),)


def test_tsize_read_answers_real_size_write_echoes() -> None:
    r = negotiate((("tsize", "999"),), is_read=True, file_size=5)
    assert r.oack == (("tsize", "5"),)
    w = negotiate((("tsize", "999"),), is_read=False, file_size=None)
    assert w.oack == (("tsize", "999"),) and w.tsize == 999
    n = negotiate((("tsize", "0"),), is_read=True, file_size=None)
    assert n.oack == ()


def test_windowsize_clamped() -> None:
    n = negotiate(
        (("windowsize", "65535"),),
        is_read=True,
        file_size=1,
        windowsize_max=16,
    )
    assert n.windowsize == 16 and n.oack == (("windowsize", "16"),)
    assert negotiate((("windowsize", "0"),), is_read=True, file_size=1).oack == ()


def test_client_accepts_lowered_values() -> None:
    n = accept_oack(
        {"blksize": 1468, "windowsize": 16, "tsize": 0},
        (("blksize", "1024"), ("windowsize", "8"), ("tsize", "77")),
    )
    assert (n.blksize, n.windowsize, n.tsize) == (1024, 8, 77)


@pytest.mark.parametrize(
    "granted",
    [
        (("blksize", "2048"),),  # larger than asked
        (("windowsize", "4"),),  # not asked
        (("timeout", "3"),),  # changed
        (("blksize", "x"),),
    ],
)
def test_client_rejects_bad_oack(granted: tuple[tuple[str, str], ...]) -> None:
    with pytest.raises(OptionError):
        accept_oack({"blksize": 1468, "timeout": 5}, granted)
