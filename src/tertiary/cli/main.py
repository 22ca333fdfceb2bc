"""The ``tertiary`` entry point.

Every module in :mod:`tertiary.cli` that defines ``register(subparsers)`` adds one command. A
command handler receives the parsed :class:`argparse.Namespace` and returns an exit code.
:class:`~tertiary.errors.TertiaryError` is printed on one line and gives exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

import tertiary
from tertiary.errors import TertiaryError, one_line

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """Parser with one sub-command per module of :mod:`tertiary.cli`."""
    parser = argparse.ArgumentParser(
        prog="tertiary",
        description="Protein structure prediction, embedding and design (AlphaFold2, ESM-2, "
        "GearNet, FusionProt, FAIR). Run 'tertiary COMMAND --help' for each command.",
    )
    parser.add_argument("--version", action="version", version=f"tertiary {tertiary.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import tertiary.cli as cli_pkg

    for info in sorted(pkgutil.iter_modules(cli_pkg.__path__), key=lambda m: m.name):
        if info.name in {"main"} or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"tertiary.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(handler(args) or 0)
    except TertiaryError as exc:
        msg = one_line(exc)
        print(f"tertiary {args.command}: error: {msg}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("tertiary: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
