"""A realistic office mix of calls, deterministic for a seed (what `simulate` and `run_traffic` place)."""

from __future__ import annotations

import random

SURNAMES = ["김", "이", "박", "최", "정", "강", "조", "윤", "장", "임"]
GIVEN = ["민준", "서연", "도윤", "지우", "하준", "서윤", "은우", "지민", "영숙", "철수"]


def extensions(lines) -> list[str]:
    """Accepts a Plan, Line objects or plain extension strings."""
    if hasattr(lines, "by_extension"):
        return sorted(lines.by_extension)
    out = []
    for item in lines:
        out.append(item.extension if hasattr(item, "extension") else str(item))
    if not out:
        raise ValueError("no lines to place calls on")
    return out


def office_mix(lines, calls: int, seed: int) -> list[dict]:
    """place_call() keyword arguments: ~70% inbound, 20% outbound, 10% internal; ~10% abandoned,
    a few busy, short and long talks, ~5% transfers, some DTMF from the caller."""
    rng = random.Random(seed)
    exts = extensions(lines)
    out = []
    for _ in range(calls):
        r = rng.random()
        kind = "inbound" if r < 0.7 else "outbound" if r < 0.9 else "internal"
        line = rng.choice(exts)
        outside = f"0{rng.choice(['33', '2', '10'])}{rng.randint(1000000, 9999999)}"
        talk = rng.choice([rng.uniform(8, 60), rng.uniform(60, 300), rng.uniform(3, 10)])
        spec = {
            "kind": kind, "line": line, "outside": outside if kind != "internal" else "",
            "caller_name": rng.choice(SURNAMES) + rng.choice(GIVEN) if kind == "inbound" else "",
            "ring_s": round(rng.uniform(1, 12), 2), "talk_s": round(talk, 2), "answer": True,
            "hangup_by": rng.choice(["caller", "caller", "staff"]),
        }
        if kind == "internal":
            spec["other_line"] = rng.choice([e for e in exts if e != line] or exts)
        fate = rng.random()
        if fate < 0.10:
            spec["answer"] = False
        elif fate < 0.13:
            spec["busy"] = True
        elif fate < 0.18 and kind == "inbound" and len(exts) > 1:
            spec["transfer_to"] = rng.choice([e for e in exts if e != line])
            spec["transfer_kind"] = rng.choice(["aleg", "bleg"])
        if kind == "inbound" and spec["answer"] and not spec.get("busy") and rng.random() < 0.15:
            spec["dtmf"] = "".join(rng.choice("0123456789#") for _ in range(rng.randint(1, 4)))
        out.append(spec)
    return out
