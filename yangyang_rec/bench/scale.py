"""Figure 3 (placeholder until written)."""
from dataclasses import dataclass


@dataclass(frozen=True)
class ScaleOptions:
    steps: tuple[int, ...] = (250, 500, 1000, 2000, 4000)
    probes: int = 40
    probe_rate: float = 10.0
    time_scale: float = 0.02


def measure(settings, workdir, opts, say):
    return []
