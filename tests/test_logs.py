"""Structured logs: JSON off a terminal, phone numbers masked and secrets dropped in every line."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from yangyang_rec.logs import configure_logging, mask_phone


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def log_lines(level: str = "info", **event) -> list[dict]:
    stream = io.StringIO()
    configure_logging(level, "auto", stream=stream)
    structlog.get_logger("test").info("call.answered", **event)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("01012345678", "010****5678"),
        ("0105551234", "010***1234"),
        ("0336705678", "033***5678"),
        ("caller 01012345678 called 0336", "caller 010****5678 called 0336"),
    ],
)
def test_mask_phone_keeps_first_3_and_last_4(raw, masked):
    assert mask_phone(raw) == masked


@pytest.mark.parametrize("text", ["6201", "0336", "a1b2c3d4-1234-5678-9abc-def012345678", "2027-03-01"])
def test_extensions_uuids_and_dates_are_left_alone(text):
    assert mask_phone(text) == text


@pytest.mark.parametrize("raw", ["010-1234-5678", "010 1234 5678"])
def test_mask_phone_written_with_separators(raw):
    masked = mask_phone(raw)
    assert "1234" not in masked
    assert masked.startswith("010") and masked.endswith("5678")


@pytest.mark.parametrize("text", ["2026-12-03", "2026-12-03T13:34:41Z", "e899193f-2404-4ff8-acda-3c5f71ec99c1", "6201"])
def test_dates_uuids_and_extensions_are_not_masked(text):
    assert mask_phone(text) == text


def test_json_lines_when_not_a_terminal_with_numbers_masked():
    (line,) = log_lines(call="a1b2c3d4-1234-5678-9abc-def012345678", caller="01012345678", line="6201")
    assert line["event"] == "call.answered"
    assert line["level"] == "info"
    assert line["caller"] == "010****5678"
    assert line["line"] == "6201"
    assert line["call"] == "a1b2c3d4-1234-5678-9abc-def012345678"
    assert "timestamp" in line


def test_numbers_masked_inside_text_lists_mappings_and_integers():
    (line,) = log_lines(
        detail="from 01099998888 to 6201",
        legs=["01011112222", "6201"],
        channel={"caller_id_number": "01033334444"},
        callee=1012345678,
        bytes=123456789,
    )
    assert line["detail"] == "from 010****8888 to 6201"
    assert line["legs"] == ["010****2222", "6201"]
    assert line["channel"] == {"caller_id_number": "010****4444"}
    assert line["callee"] == "101***5678"
    assert line["bytes"] == 123456789  # a size, not a phone number


def test_secrets_never_reach_the_log():
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    structlog.get_logger("test").info(
        "esl.connected",
        esl_password="ClueCon-secret",
        s3_secret_access_key="s3-secret-value",
        settings={"esl_password": "nested-secret", "s3_region": "ap-northeast-2"},
    )
    text = stream.getvalue()
    for secret in ("ClueCon-secret", "s3-secret-value", "nested-secret"):
        assert secret not in text
    line = json.loads(text)
    assert line["esl_password"] == "********"
    assert line["settings"]["s3_region"] == "ap-northeast-2"


def test_korean_text_survives_unescaped():
    stream = io.StringIO()
    configure_logging("info", "auto", stream=stream)
    structlog.get_logger("test").info("lines.loaded", department="주민복지실", note="통화내용은 녹음됩니다")
    text = stream.getvalue()
    assert "주민복지실" in text and "\\u" not in text
    assert json.loads(text)["note"] == "통화내용은 녹음됩니다"


def test_console_output_on_a_terminal_is_masked_too():
    stream = Terminal()
    configure_logging("info", "auto", stream=stream)
    structlog.get_logger("test").info("call.answered", caller="01012345678", esl_password="pw-123")
    text = stream.getvalue()
    assert not text.lstrip().startswith("{")
    assert "call.answered" in text and "010****5678" in text
    assert "01012345678" not in text and "pw-123" not in text


def test_level_filters_lower_levels():
    assert log_lines(level="warning", caller="01012345678") == []
