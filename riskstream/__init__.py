"""The ``riskstream`` command (also ``python -m riskstream``): one entry point over every component."""
