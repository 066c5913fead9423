"""One settings model (issue 17 item 1): a tool's table of fields is the only place a
setting is declared. A made-up field added to ptftpd's table shows up in --help, is
checked in the settings file (type and range, FILE:LINE), is written by --print-config,
is in the man page, and is named by a reload as kept until a restart (it is
restart-only) while a live field applies."""

from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path
from types import ModuleType

import pytest
from test_bad_settings import is_setting_error, run_main

from ptftpd import fields
from ptftpd.cli import ptftpd as ptftpd_cli
from ptftpd.fields import Field
from ptftpd.service import tftp_service
from ptftpd.values import IntRange
from support import REPO

MADE_UP = Field(
    "frobnicate-level",
    "how hard to frobnicate every transfer (3)",
    IntRange(1, 9),
    "int",
    3,
    metavar="N",
    live=False,
)


@pytest.fixture
def with_made_up_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ptftpd_cli, "FIELDS", (*ptftpd_cli.FIELDS, MADE_UP))


def manpages() -> ModuleType:
    spec = importlib.util.spec_from_file_location("manpages", REPO / "tools" / "manpages.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_made_up_field_is_in_help_and_the_man_page(with_made_up_field: None) -> None:
    help_text = ptftpd_cli.build_parser().format_help()
    assert "--frobnicate-level N" in help_text and "how hard to frobnicate" in help_text
    page = manpages().render("ptftpd").replace("\\-", "-")
    assert "--frobnicate-level" in page and "how hard to frobnicate" in page


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ('frobnicate-level = "hard"', ":1: frobnicate-level: expected an integer N, got 'hard'"),
        ("frobnicate-level = 10", ":1: frobnicate-level: must be 1..9, not 10"),
        ("frobnicate_levle = 2", ":1: frobnicate-levle: unknown key (did you mean frobnicate-"),
    ],
)
def test_the_made_up_field_is_checked_in_the_file(
    with_made_up_field: None, line: str, shown: str
) -> None:
    code, err = run_main("ptftpd", line + "\n")
    assert code == 2 and is_setting_error("ptftpd", err), err
    assert shown in err


def print_config(config_text: str, flags: list[str], tmp_path: Path) -> str:
    path = tmp_path / "ptftpd.toml"
    path.write_text(config_text)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = ptftpd_cli.main(
            ["--config", str(path), "--print-config", *flags, "127.0.0.1", str(tmp_path)]
        )
    assert code == 0
    return out.getvalue()


def test_the_made_up_field_is_printed(with_made_up_field: None, tmp_path: Path) -> None:
    assert "frobnicate-level = 3\n" in print_config("", [], tmp_path)  # its default
    assert "frobnicate-level = 7\n" in print_config("frobnicate-level = 7\n", [], tmp_path)
    flags = ["--frobnicate-level", "8"]
    assert "frobnicate-level = 8\n" in print_config("frobnicate-level = 7\n", flags, tmp_path)


def test_a_reload_keeps_the_restart_only_field_and_names_it(
    with_made_up_field: None, tmp_path: Path
) -> None:
    path = tmp_path / "ptftpd.toml"
    path.write_text("frobnicate-level = 4\nmax-sessions = 10\n")
    argv = ["--config", str(path), "127.0.0.1", str(tmp_path)]
    running = ptftpd_cli.tftp_settings(*ptftpd_cli.read_args(argv))
    path.write_text("frobnicate-level = 5\nmax-sessions = 20\n")
    applied, kept = tftp_service.reloaded(running, ptftpd_cli.rereader(argv)())
    assert kept == ["frobnicate-level"]
    assert applied.restart_only["frobnicate-level"] == 4  # the running value stays
    assert applied.max_sessions == 20  # a live field applies
    assert "kept until a restart: frobnicate-level" in tftp_service.summary(applied, kept)


def test_every_field_of_every_table_is_a_flag_and_a_key() -> None:
    """The table is the whole story: each field is a --flag of the parser and a key of
    the file's checks, and nothing else is."""
    parser = ptftpd_cli.build_parser()
    flags = {o[2:] for a in parser._actions for o in a.option_strings if o.startswith("--")}
    keys = {f.key for f in ptftpd_cli.FIELDS}
    assert keys <= flags
    assert flags - keys == {"help", "config", "print-config", "version"} | {
        f"no-{f.key}" for f in ptftpd_cli.FIELDS if f.negatable
    }
    restart_only = {f.key for f in ptftpd_cli.FIELDS if not f.live}
    assert restart_only == {
        "port",
        "workers",
        "user",
        "group",
        "metrics",
        "log-target",
        "drain",
        "verbose",
        "debug",
    }
    assert fields.kept(ptftpd_cli.FIELDS, {"port": 69}, {"port": 70}) == ["port"]


def test_dhcp_tools_name_the_service_settings_a_reload_keeps(tmp_path: Path) -> None:
    """One reload rule: dhcpd and pxed also name the service fields (user, metrics,
    drain, logging, workers) a re-read file changes; they are set up once at start."""
    from ptftpd.cli import dhcp_family, flag_settings
    from ptftpd.cli.dhcpd import DHCPD
    from ptftpd.service.pxe_running import PxeRunning

    path = tmp_path / "dhcpd.toml"
    path.write_text("drain = 5\nreply-delay = 0.5\n")
    read = dhcp_family.read_settings(DHCPD, ["--config", str(path), "127.0.0.1", "x.0"])
    reloads = flag_settings.Reloads(read, read.effective())
    path.write_text("drain = 6\nreply-delay = 1.0\nverbose = true\n")
    assert reloads.effective()["reply-delay"] == 1.0  # a live setting applies
    assert reloads.kept() == ["drain", "verbose"]

    class Service:
        def reload(self, config: object) -> str:
            return "3 boot files; kept until a restart: proxy"

    running = PxeRunning(Service(), list, also_kept=reloads.kept)  # type: ignore[arg-type]
    assert running.reload() == "3 boot files; kept until a restart: proxy, drain, verbose"


def test_settings_models_read_the_effective_values_alike() -> None:
    """pxed's and the TFTP server's models read the effective mapping through the same
    readers: unset is the default (0 and 0.0 are values, not "unset"), a value below its
    least or of the wrong kind is a TypeError naming the key."""
    values = {"retries": 0, "timeout": 2, "remote-cache-size": 0, "flag": True, "name": 5}
    assert fields.int_value(values, "retries", 5) == 0
    assert fields.int_value(values, "absent", None) is None
    assert fields.int_value(values, "remote-cache-size", 9, least=0) == 0
    assert fields.number_value(values, "timeout", 1.0) == 2.0
    assert fields.number_value(values, "absent", 1.5) == 1.5
    assert fields.text_value(values, "name") == "5"
    with pytest.raises(TypeError, match="remote-cache-size: expected a count"):
        fields.int_value(values, "remote-cache-size", 9, least=1, what="a count")
    with pytest.raises(TypeError, match="flag: expected an integer"):
        fields.int_value(values, "flag", 1)
    with pytest.raises(TypeError, match="flag: expected seconds"):
        fields.number_value(values, "flag", 1.0, what="seconds")
