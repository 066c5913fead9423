"""tftpd-hpa's ``--map-file`` filename remapping, as pure code (no I/O but :func:`load`).

An operator moving from tftpd-hpa keeps their rule file: each non-comment line is
``FLAGS REGEX [REPLACEMENT]``, rules run top-down on the requested filename, and the result
is the file actually served (or a refusal). What follows matches tftpd-hpa 5.2 (Debian's)
as checked by tests/service/test_remap.py against ``in.tftpd -m`` itself:

* Flags: ``r`` rewrite the matched part, ``g`` repeat the rewrite until the regex no longer
  matches (always on the whole new string), ``i`` case-insensitive, ``e`` stop after this
  rule if it matched, ``s`` start over after this rule if it matched, ``a`` refuse the
  request if it matched, ``G``/``P`` only for reads/writes, ``4``/``6`` only for IPv4/IPv6
  clients, ``~`` act when the regex does *not* match (not with ``r``).
* Replacement escapes: ``\\0`` whole match, ``\\1``..``\\9`` groups, ``\\i`` client
  address, ``\\x`` client address in upper-case hex, ``\\U``/``\\L``/``\\E`` upper/lower/no
  case for what follows (ASCII only: tftpd-hpa runs in the C locale), ``\\\\`` backslash,
  any other ``\\c`` is ``c``. A rewrite replaces the matched part and keeps the rest.
* An ``a`` rule's replacement, expanded like a rewrite of the whole name, is the error
  message; without one the client reads "Access denied".
* Processing is bounded: :data:`MAX_STEPS` rule applications (tftpd-hpa counts 1024
  rules but loops forever on a ``g`` rule whose output matches again; we count every
  ``g`` round too and refuse with tftpd-hpa's "Remap table failure"), and
  :data:`MAX_PROBES` tries of a longer POSIX match per request (below), refused the same
  way. With the server's filename cap (``request_rules.MAX_FILENAME``, 503 bytes), every rule
  form of tftpd-hpa's man page and sample.rules costs at most a few milliseconds on the
  worst accepted name (tests/tftp/test_remap_cost.py).

Differences, on purpose:

* ``s`` starts over at the first rule, as the man page says (tftpd-hpa 5.2 resumes at the
  second rule, a bug fixed upstream later).
* The rule file is checked strictly at load: text after the replacement, ``\\N`` naming a
  group the regex does not have, and the flags tftpd-hpa 5.3+ added (``E``, ``j``, labels,
  ``gg``) are one-line errors naming the line, instead of being ignored.

POSIX extended regular expressions differ from Python's ``re``; :func:`translate` converts
them and refuses what it cannot convert faithfully:

* POSIX takes the *leftmost-longest* match, ``re`` the first that backtracking finds
  (``(ab)?(abcd)?`` on ``abcd``: POSIX ``abcd``, ``re`` ``ab``). :class:`PosixRegex` finds
  the leftmost start with ``re`` and then the longest end with ``fullmatch``, trying only
  ends a match can reach: a regex whose matches have a bounded length (``\\``,
  ``/../``, ``^[a-z]:``: every rule of tftpd-hpa's sample.rules) costs no more tries than
  that length, so a ``g`` rule over a long name stays linear. Group spans
  then agree with glibc's (tests/service/test_remap_regex.py compares thousands of
  generated patterns with glibc's regexec) except for a repeated group whose body can
  match empty: on ``a``, glibc reports ``(a*)*``'s group as ``a``, ``re`` as the empty
  last round.
* Inside brackets a backslash is literal in POSIX; ``[:alpha:]``-style classes are
  expanded to ASCII sets; collating elements ``[. .]`` and equivalence classes ``[= =]``
  are refused.
* Outside brackets, ``\\`` before punctuation is that character; ``\\w \\W \\s \\S`` and
  back-references ``\\1``..``\\9`` are glibc extensions ``re`` shares. Other letters
  (``\\d`` is a literal ``d`` to glibc, a digit to ``re``) and the word/buffer anchors
  ``\\b \\B \\< \\> \\` \\'`` are refused.
* ``$`` matches only at the very end (``re``'s ``$`` also matches before a final newline);
  ``.`` matches any character; a quantifier after a quantifier (``a*?``, greedy in POSIX,
  lazy in ``re``) repeats the quantified piece; ``{`` must start a valid interval.
* ``re`` backtracks: a rule with nested repetition such as ``(a+)+$`` can take
  exponential time on a client-chosen name that almost matches, where glibc does not.
  The rule file is the operator's; write such rules without the nesting (``a+$``).
* Filenames are matched as text (UTF-8, undecodable bytes as surrogates); tftpd-hpa matches
  bytes, so ``.`` on a non-ASCII name counts characters where it counts bytes.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

MAX_STEPS = 1024
"""Rule applications (including every round of a ``g`` rule) before a request is refused."""

MAX_PROBES = 4096
"""Tries of a longer match (``fullmatch`` at a later end) per request before it is
refused: only a regex of unbounded length (``a+``, ``.*``) on a hostile name needs many."""

UNBOUNDED = 1 << 40
"""The longest match of a regex with ``*``, ``+`` or ``{m,}`` (or a back-reference to one)."""

DEFAULT_DENIAL = "Access denied"
LOOP_DENIAL = "Remap table failure"

_SUPPORTED_FLAGS = frozenset("rgiesaGP46~")
_NEWER_FLAGS = {"E": "E (needs tftpd-hpa 5.3+)", "j": "j (needs tftpd-hpa 5.3+)"}
_BAD_COMBOS = ("r~", "ra", "as", "ae", "es")

_CLASSES = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "a-zA-Z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "space": " \\t\\n\\r\\f\\v",
    "blank": " \\t",
    "punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "print": "\\x20-\\x7e",
    "graph": "\\x21-\\x7e",
    "cntrl": "\\x00-\\x1f\\x7f",
    "xdigit": "0-9A-Fa-f",
}
_INTERVAL = re.compile(r"\{(\d*)(,(\d*))?\}")
_QUANTIFIERS = "*+?{"


class Op(Enum):
    """Which request a rule set is applied to (``G`` and ``P`` rules look at it)."""

    READ = "G"
    WRITE = "P"


class RemapError(ValueError):
    """A rule file that cannot be used; the message is one line naming the line."""


@dataclass(frozen=True)
class Refused:
    """The rules refuse the request; ``message`` goes to the client in ERROR 2."""

    message: str


def _alternatives_width(widths: list[int | None]) -> int:
    """The longest match of a sequence of pieces with ``|`` (None) between alternatives."""
    longest = total = 0
    for width in widths:
        if width is None:
            longest, total = max(longest, total), 0
        else:
            total = min(UNBOUNDED, total + width)
    return max(longest, total)


def translate(ere: str, end_anchor: str = "\\Z") -> tuple[str, int, int]:
    """POSIX extended regex -> (Python pattern, group count, longest match in characters,
    `UNBOUNDED` when unbounded); ``$`` becomes `end_anchor`.

    Raises ValueError with a short reason for what cannot be translated faithfully.
    """
    items: list[str] = []  # one entry per quantifiable piece
    quantified: list[bool] = []  # whether that piece already carries a quantifier
    widths: list[int | None] = []  # each piece's longest match; None for "|"
    stack: list[tuple[int, int]] = []  # (index in items, group number) of each open group
    group_widths: dict[int, int] = {}
    groups = 0
    i = 0
    while i < len(ere):
        c = ere[i]
        piece: str | None = None
        width: int | None = 1
        if c == "\\":
            if i + 1 >= len(ere):
                raise ValueError("trailing backslash")
            piece = _escape(ere[i + 1], groups)
            if ere[i + 1].isdigit() and ere[i + 1] != "0":  # a back-reference
                width = group_widths.get(int(ere[i + 1]), UNBOUNDED)
            i += 2
        elif c == "[":
            piece, i = _bracket(ere, i)
        elif c == "(":
            groups += 1
            stack.append((len(items), groups))
            items.append("(")
            quantified.append(False)
            widths.append(0)
            i += 1
        elif c == ")":
            if not stack:
                raise ValueError("unmatched )")
            start, number = stack.pop()
            group_widths[number] = _alternatives_width(widths[start + 1 :])
            items[start:] = ["".join(items[start:]) + ")"]
            quantified[start:] = [False]
            widths[start:] = [group_widths[number]]
            i += 1
        elif c in _QUANTIFIERS:
            quant, i = _quantifier(ere, i)
            if not items or items[-1] in ("(", "|", "^"):
                raise ValueError(f"{quant!r} has nothing to repeat")
            # POSIX "a*?" is (a*)? and greedy; in re it would be a lazy a*.
            last = f"(?:{items[-1]})" if quantified[-1] else items[-1]
            items[-1] = last + quant
            quantified[-1] = True
            widths[-1] = _repeated_width(widths[-1] or 0, quant)
        else:
            piece = {"|": "|", "^": "^", "$": end_anchor, ".": "."}.get(c, re.escape(c))
            width = {"|": None, "^": 0, "$": 0}.get(c, 1)
            i += 1
        if piece is not None:
            items.append(piece)
            quantified.append(False)
            widths.append(width)
    if stack:
        raise ValueError("unmatched (")
    return "".join(items), groups, _alternatives_width(widths)


def _repeated_width(width: int, quant: str) -> int:
    """The longest match of a piece of longest match `width` under quantifier `quant`."""
    if width == 0 or quant == "?":
        return width
    if quant in "*+":
        return UNBOUNDED
    low, comma, high = quant[1:-1].partition(",")
    if comma and not high:
        return UNBOUNDED
    return min(UNBOUNDED, width * int(high or low))


def _escape(c: str, groups: int) -> str:
    if c.isdigit() and c != "0":
        if int(c) > groups:
            raise ValueError(f"back-reference \\{c} comes before group {c}")
        return f"(?:\\{c})"
    if c in "wWsS":
        return "\\" + c
    if c in "bB<>`'":
        raise ValueError(f"\\{c} (a GNU word/buffer anchor) is not supported")
    if c.isalnum():
        raise ValueError(
            f"\\{c} is a literal {c!r} in POSIX but means something else in other regex "
            f"dialects; write {c} (or a bracket expression) instead"
        )
    return re.escape(c)


def _quantifier(ere: str, i: int) -> tuple[str, int]:
    if ere[i] != "{":
        return ere[i], i + 1
    m = _INTERVAL.match(ere, i)
    if m is None or (m.group(1) == "" and not m.group(3)):
        raise ValueError("'{' must start an interval such as {2}, {2,} or {2,5}; write \\{")
    low = int(m.group(1) or 0)
    high = m.group(3)
    if high and int(high) < low:
        raise ValueError(f"interval {m.group(0)} has its bounds reversed")
    if max(low, int(high or 0)) > 255:
        raise ValueError(f"interval {m.group(0)} is larger than 255")
    return m.group(0), m.end()


def _bracket(ere: str, i: int) -> tuple[str, int]:
    """Translate the bracket expression starting at ere[i] == '['; return (set, next i)."""
    j = i + 1
    out = "["
    if j < len(ere) and ere[j] == "^":
        out += "^"
        j += 1
    first = True
    parts: list[str] = []
    while True:
        if j >= len(ere):
            raise ValueError("unmatched [")
        c = ere[j]
        if c == "]" and not first:
            break
        first = False
        if c == "[" and j + 1 < len(ere) and ere[j + 1] in ".=:":
            kind = ere[j + 1]
            end = ere.find(kind + "]", j + 2)
            if end < 0:
                raise ValueError(f"unterminated [{kind}")
            name = ere[j + 2 : end]
            if kind != ":":
                raise ValueError(f"[{kind}{name}{kind}] (collation) is not supported")
            if name not in _CLASSES:
                raise ValueError(f"unknown character class [:{name}:]")
            parts.append(_CLASSES[name])
            j = end + 2
            continue
        if j + 2 < len(ere) and ere[j + 1] == "-" and ere[j + 2] != "]":
            high = ere[j + 2]
            if high == "[":
                raise ValueError("a range cannot end in a bracket class")
            if ord(high) < ord(c):
                raise ValueError(f"range {c}-{high} is reversed")
            parts.append(f"{_set_char(c)}-{_set_char(high)}")
            j += 3
            continue
        parts.append(_set_char(c))
        j += 1
    return out + "".join(parts) + "]", j + 1


def _set_char(c: str) -> str:
    return "\\" + c if c in "\\]^-[&~|" else c


class OutOfProbes(Exception):
    """A request's `MAX_PROBES` tries of a longer match are used up."""


class Probes:
    """What is left of one request's tries of a longer match (`MAX_PROBES`)."""

    def __init__(self, left: int = MAX_PROBES) -> None:
        self.left = left


class PosixRegex:
    """A translated ERE that finds POSIX's leftmost-longest match."""

    def __init__(self, ere: str, ignore_case: bool) -> None:
        pattern, self.groups, self.max_width = translate(ere)
        cut_pattern, _, _ = translate(ere, end_anchor="(?!)")
        flags = re.DOTALL | re.ASCII | (re.IGNORECASE if ignore_case else 0)
        self.source = ere
        self._whole = re.compile(pattern, flags)
        # For candidate ends before the end of the name, where "$" can never match: with
        # endpos, re would otherwise see the cut as the end of the string.
        self._cut = re.compile(cut_pattern, flags)

    def search(self, text: str, probes: Probes | None = None) -> re.Match[str] | None:
        """POSIX's leftmost-longest match; each `fullmatch` at a later end (not counting
        the one at the very end) takes one of `probes`, `OutOfProbes` when none is left."""
        first = self._whole.search(text)
        if first is None:
            return None
        start = first.start()
        reach = start + self.max_width  # no match from `start` ends after this
        if reach >= len(text):
            whole = self._whole.fullmatch(text, start)
            if whole is not None:
                return whole
        last = min(reach, len(text) - 1)
        if probes is not None and last > first.end():
            probes.left -= last - first.end()
            if probes.left < 0:
                raise OutOfProbes
        for end in range(last, first.end(), -1):
            longer = self._cut.fullmatch(text, start, end)
            if longer is not None:
                return longer
        return first


@dataclass(frozen=True)
class Rule:
    line: int
    flags: str
    regex: PosixRegex
    replacement: tuple[tuple[str, str], ...]  # (kind, value): lit, group, case, macro

    def has(self, flag: str) -> bool:
        return flag in self.flags


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    max_steps: int = MAX_STEPS

    def apply(self, filename: str, client_ip: str, op: Op) -> str | Refused:
        """The name to serve for `filename` asked by `client_ip`, or why it is refused."""
        address = ipaddress.ip_address(client_ip.split("%", 1)[0])
        v6 = address.version == 6
        macros = {"i": str(address), "x": address.packed.hex().upper()}
        current = filename
        steps = self.max_steps
        probes = Probes()
        index = 0
        while index < len(self.rules):
            rule = self.rules[index]
            index += 1
            if (rule.has("G") and op is not Op.READ) or (rule.has("P") and op is not Op.WRITE):
                continue
            if (rule.has("4") and v6) or (rule.has("6") and not v6):
                continue
            matched = False
            while True:
                steps -= 1
                if steps < 0:
                    return Refused(LOOP_DENIAL)
                try:
                    match = rule.regex.search(current, probes)
                except OutOfProbes:
                    return Refused(LOOP_DENIAL)
                if (match is None) != rule.has("~"):
                    break
                matched = True
                if rule.has("a"):
                    if not rule.replacement:
                        return Refused(DEFAULT_DENIAL)
                    return Refused(_expand(rule, current, match, macros))
                if rule.has("r") and match is not None:
                    current = _expand(rule, current, match, macros)
                if not rule.has("g"):
                    break
            if matched:
                if rule.has("e"):
                    return current
                if rule.has("s"):
                    index = 0
        return current


def _expand(rule: Rule, text: str, match: re.Match[str] | None, macros: dict[str, str]) -> str:
    """Replace the matched part of `text` by the rule's expanded replacement."""
    case = ""
    out: list[str] = []
    for kind, value in rule.replacement:
        if kind == "case":
            case = value
            continue
        if kind == "group":
            piece = (match.group(int(value)) if match is not None else None) or ""
        elif kind == "macro":
            piece = macros[value]
        else:
            piece = value
        out.append(_case(piece, case))
    if match is None:  # an inverted rule: nothing matched, the text is kept
        return "".join(out)
    return text[: match.start()] + "".join(out) + text[match.end() :]


def _case(text: str, case: str) -> str:
    if case == "U":
        return "".join(ch.upper() if ch.isascii() else ch for ch in text)
    if case == "L":
        return "".join(ch.lower() if ch.isascii() else ch for ch in text)
    return text


def _parse_replacement(text: str, groups: int) -> tuple[tuple[str, str], ...]:
    parts: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\" or i + 1 >= len(text):
            parts.append(("lit", c))
            i += 1
            continue
        e = text[i + 1]
        i += 2
        if e.isdigit():
            if int(e) > groups:
                raise ValueError(f"\\{e} names group {e} but the regex has {groups}")
            parts.append(("group", e))
        elif e in "ULE":
            parts.append(("case", e))
        elif e in "ix":
            parts.append(("macro", e))
        else:
            parts.append(("lit", e))
    return tuple(parts)


def _fields(line: str) -> list[str]:
    """Split like tftpd-hpa: unescaped whitespace separates, an unescaped # ends the line."""
    fields: list[str] = []
    current: list[str] | None = None
    escaped = False
    for c in line:
        if not escaped and (c.isspace() or c == "#"):
            if current is not None:
                fields.append("".join(current))
                current = None
            if c == "#":
                break
            continue
        escaped = not escaped and c == "\\"
        current = (current or []) + [c]
    if current is not None:
        fields.append("".join(current))
    return fields


def parse_rule(line: str, lineno: int) -> Rule | None:
    """One line of a rule file (None for blank/comment); RemapError names the line."""

    def fail(problem: str) -> RemapError:
        return RemapError(f"line {lineno}: {problem}")

    fields = _fields(line)
    if not fields:
        return None
    flags = fields[0]
    if flags.startswith(":"):
        raise fail(f"labels ({flags}) need tftpd-hpa 5.3+ and are not supported")
    for flag in flags:
        if flag in _NEWER_FLAGS:
            raise fail(f"flag {_NEWER_FLAGS[flag]} is not supported")
        if flag not in _SUPPORTED_FLAGS:
            raise fail(f"unknown flag {flag!r} in {flags!r} (valid: r g i e s a G P 4 6 ~)")
    if flags.count("g") > 1:
        raise fail("flag gg (sed-style, tftpd-hpa 5.3+) is not supported")
    for combo in _BAD_COMBOS:
        if combo[0] in flags and combo[1] in flags:
            raise fail(f"flags {combo[0]} and {combo[1]} cannot be combined")
    if ("G" in flags and "P" in flags) or ("4" in flags and "6" in flags):
        raise fail(f"flags {flags!r} exclude every request")
    if "r" not in flags:
        flags = flags.replace("g", "")
    if len(fields) < 2:
        raise fail("no regex after the flags")
    if len(fields) > 3:
        raise fail(f"unexpected text after the replacement: {fields[3]!r} (escape spaces as '\\ ')")
    try:
        regex = PosixRegex(fields[1], ignore_case="i" in flags)
    except (ValueError, re.error) as exc:
        raise fail(f"bad regex {fields[1]!r}: {exc}") from None
    try:
        replacement = _parse_replacement(fields[2] if len(fields) > 2 else "", regex.groups)
    except ValueError as exc:
        raise fail(f"bad replacement {fields[2]!r}: {exc}") from None
    return Rule(lineno, flags, regex, replacement)


def parse(text: str, max_steps: int = MAX_STEPS) -> RuleSet:
    """A rule set from the text of a rule file."""
    rules = []
    for lineno, line in enumerate(text.splitlines(), 1):
        rule = parse_rule(line.replace("\0", ""), lineno)
        if rule is not None:
            rules.append(rule)
    return RuleSet(tuple(rules), max_steps)


def load(path: Path) -> RuleSet:
    """Read and parse a rule file; RemapError (one line, with the path) on any problem."""
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise RemapError(f"{path}: {exc.strerror}") from None
    try:
        return parse(text)
    except RemapError as exc:
        raise RemapError(f"{path}: {exc}") from None
