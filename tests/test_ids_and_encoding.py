"""Ids and SSE encoding: total parsing, and text that survives the wire."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from litestar_resumable import StreamEvent
from litestar_resumable._events import encode_item, encode_sse
from litestar_resumable._ids import MalformedIdError, is_stream_id, key_tag, new_stream_id, parse_event_id
from litestar_resumable.testing import parse_sse


def test_event_ids_round_trip() -> None:
    stream_id = new_stream_id()
    for position in (0, 1, 42, 10**14):
        assert parse_event_id(f"{stream_id}.{position}") == (stream_id, position)
    assert is_stream_id(stream_id)


def test_a_keyed_stream_id_starts_with_its_keys_tag_and_is_otherwise_random() -> None:
    # The tag puts a key's entry and its streams in one Redis Cluster slot; the rest is 128 random bits.
    ids = {new_stream_id("-:chat-1") for _ in range(100)}
    assert {i[:4] for i in ids} == {key_tag("-:chat-1")}
    assert len({i[4:] for i in ids}) == 100
    assert key_tag("-:chat-1") != key_tag("-:chat-2")
    assert all(is_stream_id(i) and len(i) == 26 for i in ids)


@given(st.text())
def test_parsing_any_text_either_succeeds_or_says_what_is_wrong(value: str) -> None:
    try:
        stream_id, position = parse_event_id(value)
    except MalformedIdError as exc:
        assert "malformed event id" in str(exc)  # noqa: PT017 - either outcome is valid here
    else:
        assert f"{stream_id}.{position}" == value


@given(st.binary())
def test_parsing_any_header_bytes_is_total(raw: bytes) -> None:
    with pytest.raises(MalformedIdError):
        parse_event_id(raw.decode("latin-1") + "\x00")


def parse_sse_data(text: str) -> list[str]:
    """What a browser's EventSource hands to onmessage (the package's decoder follows the specification)."""
    return [event.data for event in parse_sse(text)]


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"])), min_size=1, max_size=5))
def test_data_survives_the_wire_with_line_breaks_normalised_to_lf(texts: list[str]) -> None:
    events = [StreamEvent(i + 1, text) for i, text in enumerate(texts)]
    decoded = parse_sse_data(encode_sse("A" * 26, events).decode())
    assert decoded == [t.replace("\r\n", "\n").replace("\r", "\n") for t in texts]


def test_reserved_and_broken_event_names_are_refused() -> None:
    from litestar.response import ServerSentEventMessage  # noqa: PLC0415

    with pytest.raises(ValueError, match="reserved"):
        encode_item(ServerSentEventMessage(data="x", event="end"))
    with pytest.raises(ValueError, match="line breaks"):
        encode_item(ServerSentEventMessage(data="x", event="a\nb"))
    with pytest.raises(UnicodeDecodeError):
        encode_item(b"\xff")
    with pytest.raises(TypeError):
        encode_item(object())


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"])))
def test_text_in_json_items_survives_the_wire_byte_exactly(text: str) -> None:
    # SSE itself cannot carry CR (a browser turns CR and CRLF into LF); text inside JSON items can.
    event, data = encode_item({"text": text})
    decoded = parse_sse_data(encode_sse("A" * 26, [StreamEvent(1, data, event)]).decode())
    assert [msgspec.json.decode(d)["text"] for d in decoded] == [text]
