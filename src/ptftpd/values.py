"""The kinds of value a setting takes, one parser each: a flag and a settings file's key
of the same kind accept and refuse the same text with the same words.

Each parser takes the text and returns the value or raises
`argparse.ArgumentTypeError` with what is wrong (argparse reports it for a flag).
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value


def port_number(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a UDP port: {value}")
    return value
