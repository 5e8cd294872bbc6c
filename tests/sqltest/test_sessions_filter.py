"""``SentinelFilter``: spawn's sentinels leave no trace in a test's output, however psql's
output is cut into reads and whatever the test itself prints."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from spawn_db.sqltest.sessions import SentinelFilter

NONCE = "spawn-0123456789abcdef"

# What a test may print: any text, quotes and backslashes included, partial lines too.
printed = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r"), max_size=40)
tags = st.from_regex(r"[a-z][0-9]{1,4}", fullmatch=True)


@st.composite
def outputs(draw: st.DrawFn) -> tuple[bytes, bytes, list[str]]:
    """psql's output with sentinels (some echoed, as ``\\set ECHO all`` does), the output
    without them, and the tags in order."""
    raw, clean, seen = b"", b"", []
    for _ in range(draw(st.integers(0, 6))):
        text = draw(printed).encode()
        raw += text
        clean += text
        tag = draw(tags)
        if draw(st.booleans()):
            raw += f"\\echo '{NONCE}''{tag}'\n".encode()
        raw += f"{NONCE}'{tag}\n".encode()
        seen.append(tag)
    tail = draw(printed).encode()
    return raw + tail, clean + tail, seen


@settings(max_examples=200, deadline=None)
@given(outputs(), st.lists(st.integers(1, 30), max_size=20))
def test_output_is_the_same_without_sentinels_whatever_the_reads(
    case: tuple[bytes, bytes, list[str]], cuts: list[int],
) -> None:
    raw, clean, seen = case
    sentinels = SentinelFilter(NONCE)
    got, pos = b"", 0
    for size in cuts:
        got += sentinels.feed(raw[pos:pos + size])
        pos += size
    got += sentinels.feed(raw[pos:]) + sentinels.end()
    assert got == clean
    assert list(sentinels.tags) == list(dict.fromkeys(seen))


def test_a_sentinel_carries_its_argument() -> None:
    sentinels = SentinelFilter(NONCE)
    assert sentinels.feed(f"before\n{NONCE}'p 4242\nafter".encode()) == b"before\n"
    assert sentinels.end() == b"after"
    assert sentinels.tags == {"p": "4242"}


def test_another_nonce_is_output_like_any_text() -> None:
    other = "spawn-fedcba9876543210'm1\n"
    sentinels = SentinelFilter(NONCE)
    assert sentinels.feed(other.encode()) == other.encode()
    assert sentinels.tags == {}
