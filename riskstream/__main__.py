"""``python -m riskstream``: the same command as ``riskstream``."""

from riskstream.cli import main

main()
