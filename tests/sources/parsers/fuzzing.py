"""The fuzzing every parser test shares: broken copies of real kernel files, and the rule they check.

Why one module: the project rule is the same for every parser (malformed input returns or raises
`ParseError`, never anything else), and kernel files go wrong in the same ways whatever their layout:
a read cut short, a column a newer kernel added, a token missing or garbled, a stray line. One strategy
means every parser meets every kind of corruption, and a kind added here reaches them all. Each test
keeps its own post-conditions on what the parser returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from hypothesis import strategies as st

from netdoctor.errors import ParseError

T = TypeVar("T")

# Extra-column tokens any numeric kernel file may meet: zero, a non-number, a negative, more than 64 bits.
STOCK_TOKENS = ("0", "x", "-1", "99999999999999999999999")
DIGITS = "0123456789 -x"
LINE_EDITS = (
    "truncate_line",
    "extra_column",
    "drop_token",
    "replace_token",
    "garbage_line",
    "drop_line",
    "blank_line",
    "replace_line",
)
TEXT_EDITS = ("truncate_text", "splice")

# Text with no structure at all: what the parser must survive without a real file to start from.
ANY_TEXT = st.text(max_size=300)


@st.composite
def _edited(draw: st.DrawFn, samples: Sequence[str], words: Sequence[str], alphabet: str, max_edits: int) -> str:
    lines = draw(st.sampled_from(samples)).splitlines()
    column = st.sampled_from([*STOCK_TOKENS, *words]) | st.text(alphabet=alphabet, max_size=12)
    for _ in range(draw(st.integers(0, max_edits))):
        edit = draw(st.sampled_from(LINE_EDITS + TEXT_EDITS))
        if edit in TEXT_EDITS:
            text = "\n".join(lines)
            at = draw(st.integers(0, len(text)))
            if edit == "truncate_text":
                text = text[:at]
            else:
                text = text[:at] + draw(st.text(min_size=1, max_size=20)) + text[at:]
            lines = text.split("\n")
            continue
        if not lines:
            lines = [""]
        i = draw(st.integers(0, len(lines) - 1))
        if edit == "truncate_line":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif edit == "extra_column":
            lines[i] += " " + draw(column)
        elif edit in ("drop_token", "replace_token"):
            tokens = lines[i].split(" ")
            j = draw(st.integers(0, len(tokens) - 1))
            if edit == "drop_token":
                del tokens[j]
            else:
                tokens[j] = draw(st.text(max_size=8))
            lines[i] = " ".join(tokens)
        elif edit == "garbage_line":
            lines.insert(i, draw(st.text(max_size=40)))
        elif edit == "drop_line":
            lines.pop(i)
        elif edit == "blank_line":
            lines[i] = ""
        else:
            lines[i] = draw(st.text(max_size=60))
    return "\n".join(lines) + draw(st.sampled_from(["", "\n"]))


def mutated(
    samples: Sequence[str],
    words: Sequence[str] = (),
    alphabet: str = DIGITS,
    max_edits: int = 4,
) -> st.SearchStrategy[str]:
    """Copies of `samples` (real kernel files) with 0 to `max_edits` corruptions, or random text.

    Corruptions: the text cut short or spliced with garbage; a line truncated, blanked, dropped,
    replaced, or a garbage line inserted; a column appended (a stock token, one of `words` — the file's
    own vocabulary, e.g. "kB" — or a run of `alphabet`); a token dropped or replaced. The result ends
    with or without a newline.
    """
    return ANY_TEXT | _edited(list(samples), list(words), alphabet, max_edits)


def assert_returns_or_parse_error(parse: Callable[[str], T], text: str) -> T | None:
    """Run `parse` on `text`: what it returned, or None when it refused the text with ParseError.

    Any other exception propagates and fails the test: that is the project rule being checked.
    """
    try:
        return parse(text)
    except ParseError:
        return None
