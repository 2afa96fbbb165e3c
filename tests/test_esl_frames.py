"""The pure event-socket reader against the real FreeSWITCH captures, and hostile values."""

import collections
import json
from pathlib import Path

import pytest

from yangyang_rec.esl import frames as frames_module
from yangyang_rec.esl.frames import (
    EventError,
    FrameError,
    FrameReader,
    encode_command,
    parse_event,
    parse_plain_event,
)

CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "esl-captures"


def summarised_captures():
    for summary in sorted(CAPTURES.glob("_summary-*.json")):
        for entry in json.loads(summary.read_text())["summary"]:
            if (CAPTURES / f"{entry['name']}.txt").exists():
                yield pytest.param(entry, id=entry["name"])


def message_types(frames):
    counts = collections.Counter()
    for frame in frames:
        if frame.content_type in ("text/event-plain", "text/event-json"):
            counts[f"{frame.content_type}:{parse_event(frame).name}"] += 1
        elif frame.content_type == "text/event-xml":
            name = frame.text.rsplit("<Event-Name>", 1)[1].split("<")[0]
            counts[f"text/event-xml:{name}"] += 1
        else:
            counts[frame.content_type] += 1
    return counts


@pytest.mark.parametrize("entry", list(summarised_captures()))
def test_every_capture_parses_to_the_recorded_message_counts(entry):
    data = (CAPTURES / f"{entry['name']}.txt").read_bytes()
    frames = FrameReader().feed(data)
    assert len(frames) == entry["messages"]
    assert message_types(frames) == collections.Counter(entry["types"])


def test_frames_split_across_arbitrary_chunks_are_the_same():
    data = (CAPTURES / "bridged-inbound-call-plain.txt").read_bytes()
    whole = FrameReader().feed(data)
    reader, pieces = FrameReader(), []
    for i in range(0, len(data), 7):
        pieces += reader.feed(data[i : i + 7])
    assert [(f.headers, f.body) for f in pieces] == [(f.headers, f.body) for f in whole]


def test_korean_caller_name_is_decoded_from_plain_event():
    frames = FrameReader().feed((CAPTURES / "bridged-inbound-call-plain.txt").read_bytes())
    answers = [parse_event(f) for f in frames if f.content_type == "text/event-plain"]
    names = {e.get("Caller-Caller-ID-Name") for e in answers if e.name == "CHANNEL_ANSWER"}
    assert "홍길동" in names


def test_encoded_newline_in_a_value_cannot_forge_another_header():
    body = (
        b"Event-Name: CHANNEL_ANSWER\n"
        b"Unique-ID: 11111111-1111-1111-1111-111111111111\n"
        b"Caller-Caller-ID-Name: Evil%0AUnique-ID%3A%20x%0AEvent-Name%3A%20SHUTDOWN\n"
        b"Caller-Destination-Number: 2101\n\n"
    )
    event = parse_plain_event(body)
    assert event.name == "CHANNEL_ANSWER"
    assert event.get("Unique-ID") == "11111111-1111-1111-1111-111111111111"
    assert event.get("Caller-Caller-ID-Name") == "Evil\nUnique-ID: x\nEvent-Name: SHUTDOWN"
    assert event.headers["Unique-ID"] == "11111111-1111-1111-1111-111111111111"
    assert list(event.headers) == ["Event-Name", "Unique-ID", "Caller-Caller-ID-Name", "Caller-Destination-Number"]


def careful(block: str, decode: bool):
    try:
        return list(frames_module._split_header_lines_carefully(block, decode).items())
    except EventError as exc:
        return str(exc)


def split(block: str, decode: bool):
    try:
        return list(frames_module._split_header_lines(block, decode).items())
    except EventError as exc:
        return str(exc)


def test_every_captured_event_splits_as_the_careful_line_loop_does():
    checked = 0
    for param in summarised_captures():
        for frame in FrameReader().feed((CAPTURES / f"{param.values[0]['name']}.txt").read_bytes()):
            if frame.content_type == "text/event-plain":
                block = frame.body.decode("utf-8", errors="replace").partition("\n\n")[0]
                assert split(block, True) == careful(block, True)
                assert list(parse_plain_event(frame.body).headers.items()) == careful(block, True)
                checked += 1
    assert checked > 100


@pytest.mark.parametrize(
    "block",
    [
        "",
        "\nEvent-Name: X",
        "Event-Name: X\r\nUnique-ID: a%20b\r",
        "Event-Name: X\nEvent-Name: Y",
        "Event-Name: X\nA: 1\nB: 2\nA: 3",
        "Event-Name: X\nName:no-space",
        "Event-Name: X\nName:",
        "Event-Name: X\nName: ",
        "Event-Name: X\nName:  two spaces",
        "Event-Name: X\nName: a: b%3A c",
        "Event-Name: X\na:b: c",
        "Event-Name: X\n: no name",
        "Event-Name: X\n Name: leading blank",
        "Event-Name: X\nName : trailing blank",
        "Event-Name: X\nTwo Words: ok",
        "Event-Name: X\n\u00e9t\u00e9: non-ascii name",
        "Event-Name: X\nthis is not a header",
        "Event-Name: X\nV: %ZZ%4%%0A%0D%E2%82",
        "Event-Name: X\nV: \u00e9%20%ED%99%8D",
        "Event-Name: X\nV: tab\there",
    ],
)
def test_unusual_blocks_split_as_the_careful_line_loop_does(block):
    for decode in (True, False):
        assert split(block, decode) == careful(block, decode)
    encoded = frames_module._split_header_lines(block, False) if isinstance(careful(block, False), list) else None
    if encoded is not None and "Event-Name" in encoded:
        event = parse_plain_event(block.encode() + b"\n\n")
        assert list(event.headers.items()) == careful(block, True)
        assert all(event.get(k) == v for k, v in careful(block, True))


def test_invalid_utf8_and_huge_values_do_not_break_parsing():
    body = b"Event-Name: CHANNEL_ANSWER\nCaller-Caller-ID-Name: \xff\xfe" + b"A" * 10_000 + b"\n\n"
    event = parse_plain_event(body)
    assert event.get("Caller-Caller-ID-Name").startswith("\ufffd")


def test_event_without_name_or_with_garbage_line_is_rejected():
    with pytest.raises(EventError):
        parse_plain_event(b"Unique-ID: x\n\n")
    with pytest.raises(EventError):
        parse_plain_event(b"Event-Name: X\nthis is not a header\n\n")


def test_bad_content_length_is_a_framing_error():
    with pytest.raises(FrameError):
        FrameReader().feed(b"Content-Type: api/response\nContent-Length: 12x\n\n")


def test_command_with_line_break_is_refused():
    assert encode_command("api status") == b"api status\n\n"
    with pytest.raises(ValueError):
        encode_command("api uuid_kill x\n\napi fsctl shutdown")
