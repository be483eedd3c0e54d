"""Benchmark umqtt on a private mosquitto: the blocking client against paho-mqtt, umqtt.aio
against gmqtt and aiomqtt.

    .venv/bin/python benches/run.py [--quick] [--repeat N] [--libs umqtt,paho] [--only a,b]

The benchmark itself is in the package (umqtt._bench, shared with `python -m umqtt bench`, which
runs it against a broker given on the command line); this is its entry point here, writing
benches/results/latest.json. `--help` says more.
"""

from __future__ import annotations

import sys
from pathlib import Path

from umqtt._bench.run import BenchError, main

if __name__ == "__main__":
    try:
        main(Path(__file__).resolve().parent / "results" / "latest.json")
    except BenchError as e:
        sys.exit(f"error: {e}")
