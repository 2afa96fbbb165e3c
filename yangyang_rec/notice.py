"""The recording notice callers hear: check that a WAV is one FreeSWITCH plays, and render the text.

FreeSWITCH plays the notice with `uuid_broadcast`; a file it cannot open is skipped without an
error on the event socket (`+OK Message sent` even for a missing file, see the captures), so the
caller would be recorded without hearing the notice. Hence the daemon checks the file at start.
"""

from __future__ import annotations

import array
import shutil
import struct
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

NOTICE_TEXT = Path("freeswitch/sounds/notice-ko.txt")
NOTICE_WAV = Path("freeswitch/sounds/notice-ko.wav")
PLAYABLE_RATES = (8000, 16000)
RENDER_RATE = 8000
ESPEAK_VOICE = "ko"
ESPEAK_WORDS_PER_MINUTE = 150
WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
PCM_SUBFORMAT_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"

REPLACE_HINT = (
    "Render it with `make notice` (needs espeak-ng), or put a professionally recorded file there: "
    "mono, 16-bit PCM WAV, 8000 or 16000 Hz (e.g. `sox recorded.wav -r 8000 -c 1 -b 16 notice-ko.wav`)."
)
INSTALL_HINT = (
    "espeak-ng is not installed, so the notice cannot be rendered from its text. "
    "Install it with `sudo apt-get install espeak-ng` (Debian/Ubuntu) or `sudo dnf install espeak-ng` "
    "(RHEL/Fedora) and run `make notice` again; or put a professionally recorded notice at {out} "
    "(mono, 16-bit PCM WAV, 8000 or 16000 Hz) and check it with `yangyang-rec notice check {out}`."
)


class NoticeError(ValueError):
    """The notice file cannot be played by FreeSWITCH; the message says why and what to do."""


@dataclass(frozen=True)
class WavFormat:
    format_tag: int
    channels: int
    rate: int
    bits: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.rate if self.rate else 0.0


def read_wav_format(path: Path) -> WavFormat:
    """Walk the RIFF chunks of `path` and return what its `fmt ` and `data` chunks say."""
    path = Path(path)
    if not path.exists():
        raise NoticeError(f"{path}: notice file not found. {REPLACE_HINT}")
    if not path.is_file():
        raise NoticeError(f"{path}: is not a file. {REPLACE_HINT}")
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise NoticeError(f"{path}: not a WAV file (no RIFF/WAVE header). {REPLACE_HINT}")
        fmt: tuple[int, int, int, int] | None = None
        data_bytes: int | None = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                break
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                body = f.read(size)
                if len(body) < 16:
                    raise NoticeError(f"{path}: WAV 'fmt ' chunk is truncated. {REPLACE_HINT}")
                tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
                if tag == WAVE_FORMAT_EXTENSIBLE and len(body) >= 40 and body[26:40] == PCM_SUBFORMAT_GUID_TAIL:
                    tag = struct.unpack("<H", body[24:26])[0]
                fmt = (tag, channels, rate, bits)
            elif cid == b"data":
                data_bytes = size
                break
            else:
                f.seek(size + (size & 1), 1)
        if fmt is None:
            raise NoticeError(f"{path}: WAV has no 'fmt ' chunk before its audio. {REPLACE_HINT}")
        if data_bytes is None:
            raise NoticeError(f"{path}: WAV has no audio ('data' chunk missing). {REPLACE_HINT}")
        available = path.stat().st_size - f.tell()
    tag, channels, rate, bits = fmt
    frame_size = max(1, channels * bits // 8)
    return WavFormat(tag, channels, rate, bits, min(data_bytes, available) // frame_size)


def check_notice(path: Path) -> None:
    """Raise NoticeError unless `path` is a non-empty mono 16-bit PCM WAV at 8 or 16 kHz."""
    fmt = read_wav_format(path)
    if fmt.format_tag != WAVE_FORMAT_PCM:
        raise NoticeError(f"{path}: WAV is not linear PCM (format tag {fmt.format_tag:#06x}). {REPLACE_HINT}")
    if fmt.bits != 16:
        raise NoticeError(f"{path}: WAV is {fmt.bits}-bit, FreeSWITCH needs 16-bit PCM. {REPLACE_HINT}")
    if fmt.channels != 1:
        raise NoticeError(f"{path}: WAV has {fmt.channels} channels, the notice must be mono. {REPLACE_HINT}")
    if fmt.rate not in PLAYABLE_RATES:
        raise NoticeError(f"{path}: WAV is {fmt.rate} Hz, the notice must be 8000 or 16000 Hz. {REPLACE_HINT}")
    if fmt.frames == 0:
        raise NoticeError(f"{path}: WAV has no audio (0 samples). {REPLACE_HINT}")


def resample_linear(samples: array.array, from_rate: int, to_rate: int) -> array.array:
    """16-bit mono samples at `from_rate` -> `to_rate` by linear interpolation (the no-sox fallback)."""
    if from_rate == to_rate or not samples:
        return array.array("h", samples)
    count = max(1, (len(samples) * to_rate) // from_rate)
    step = from_rate / to_rate
    last = len(samples) - 1
    out = array.array("h", bytes(2 * count))
    for i in range(count):
        pos = i * step
        j = int(pos)
        if j >= last:
            out[i] = samples[last]
            continue
        frac = pos - j
        out[i] = int(round(samples[j] + (samples[j + 1] - samples[j]) * frac))
    return out


def convert_wav_python(src: Path, dst: Path, rate: int = RENDER_RATE) -> None:
    """Mono 16-bit PCM WAV -> mono 16-bit PCM WAV at `rate`, stdlib only."""
    with wave.open(str(src), "rb") as w:
        if w.getsampwidth() != 2:
            raise NoticeError(f"{src}: expected 16-bit samples from espeak-ng, got {8 * w.getsampwidth()}-bit")
        channels, from_rate = w.getnchannels(), w.getframerate()
        samples = array.array("h", w.readframes(w.getnframes()))
    if sys.byteorder == "big":
        samples.byteswap()
    if channels > 1:
        samples = array.array("h", (sum(samples[i : i + channels]) // channels for i in range(0, len(samples), channels)))
    out = resample_linear(samples, from_rate, rate)
    if sys.byteorder == "big":
        out.byteswap()
    with wave.open(str(dst), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(out.tobytes())


def render_notice(text_file: Path = NOTICE_TEXT, out: Path = NOTICE_WAV, *, use_sox: bool = True) -> str:
    """Speak `text_file` with espeak-ng into `out` (mono 16-bit 8 kHz); return the converter used.

    Raises NoticeError with install instructions when espeak-ng is missing. The old file is
    replaced only once the new one has passed `check_notice`.
    """
    espeak = shutil.which("espeak-ng")
    if not espeak:
        raise NoticeError(INSTALL_HINT.format(out=out))
    text_file, out = Path(text_file), Path(out)
    if not text_file.is_file():
        raise NoticeError(f"{text_file}: notice text not found; it holds the words callers hear.")
    sox = shutil.which("sox") if use_sox else None
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="yyrec-notice-") as tmp:
        spoken, converted = Path(tmp) / "espeak.wav", Path(tmp) / "notice.wav"
        _run([espeak, "-v", ESPEAK_VOICE, "-s", str(ESPEAK_WORDS_PER_MINUTE), "-w", str(spoken), "-f", str(text_file)])
        if sox:
            _run([sox, "-D", str(spoken), "-r", str(RENDER_RATE), "-c", "1", "-b", "16", "-e", "signed-integer", str(converted)])
        else:
            convert_wav_python(spoken, converted)
        check_notice(converted)
        shutil.move(str(converted), str(out))
    return "sox" if sox else "python"


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise NoticeError(f"{Path(argv[0]).name} failed (exit {done.returncode}): {done.stderr.strip()}")
