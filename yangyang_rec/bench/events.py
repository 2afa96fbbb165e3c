"""Figure 1 (placeholder until written)."""


def measure(settings, workdir, calls, say):
    return []
