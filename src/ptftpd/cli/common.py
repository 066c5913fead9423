"""What every console script shares: one-line usage errors (the flags themselves are the
fields of each tool's table, `ptftpd.fields`)."""

from __future__ import annotations

import argparse
import re
from typing import NoReturn

from ptftpd.errors import bad_setting


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes are reported like every other bad setting: one line
    (``TOOL: --flag: what is wrong (try --help)``), exit 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        bad_setting(self.prog, flag_message(message))


def flag_message(message: str) -> str:
    """argparse's "argument -p/--port: not a UDP port: 70000" as "--port: not a UDP
    port: 70000" (the long flag, as the settings file's key is spelled)."""
    found = re.match(r"argument (\S+): (.*)", message, re.S)
    if found is None:
        return message
    return f"{found.group(1).split('/')[-1]}: {found.group(2)}"
