"""Command-line interface: one module per command, discovered by :mod:`tertiary.cli.main`."""
