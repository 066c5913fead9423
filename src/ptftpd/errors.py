"""Errors shared by every server of the suite."""

from __future__ import annotations


class ServerStartError(Exception):
    """A start-up problem (address, port, interface, root, store) that a command line
    tool reports as one line and exit status 1."""
