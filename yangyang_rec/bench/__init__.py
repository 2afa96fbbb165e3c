"""`make bench`: the daemon measured against its own limits, side by side, in one run.

Every figure is a ratio or a percentile taken within the run, on this machine, so runs on
noisy shared machines can still be compared. One module per figure group; `run.py` runs
them all and writes `var/bench.json`; `figures.py` holds the results and their targets.
"""
