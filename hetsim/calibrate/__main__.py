"""``python -m hetsim.calibrate ARGS``: exactly ``hetsim calibrate ARGS`` (exit codes too).

An entry point like ``hetsim/__main__.py``: it sits above :mod:`hetsim.cli` (which owns
argument errors and exit codes), so nothing in the calibration package imports the CLI.
"""
import sys

from ..cli import main as hetsim_main

__all__ = ["main"]


def main(argv=None) -> int:
    """Run ``hetsim calibrate`` with ``argv`` (default: this process's arguments)."""
    return hetsim_main(["calibrate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
