"""The recordings the stand-in writes: real RIFF WAV files, 8 kHz 16-bit PCM, as mod_sndfile does."""

from __future__ import annotations

import math
import struct
import wave
from functools import lru_cache
from pathlib import Path

RATE = 8000


@lru_cache(maxsize=4)
def _second_of_audio(channels: int) -> bytes:
    """One second of a quiet 350 Hz tone (the far end) with a 440 Hz one on the second channel."""
    frames = []
    for n in range(RATE):
        left = int(3000 * math.sin(2 * math.pi * 350 * n / RATE))
        if channels == 1:
            frames.append(struct.pack("<h", left))
        else:
            right = int(3000 * math.sin(2 * math.pi * 440 * n / RATE))
            frames.append(struct.pack("<hh", left, right))
    return b"".join(frames)


def create_empty(path: Path, channels: int) -> None:
    """What exists right after `uuid_record start`: a header and no audio yet (raises OSError)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(RATE)


def write_recording(path: Path, seconds: float, channels: int) -> int:
    """Write `seconds` of audio; returns the number of frames (samples per channel)."""
    frames = max(0, int(round(seconds * RATE)))
    second = _second_of_audio(channels)
    size = frames * 2 * channels
    data = second * (size // len(second)) + second[: size % len(second)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(data)
    return frames
