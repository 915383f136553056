"""``memeui`` on the command line: serve the app, search stickers, chat, benchmark.

Logs go to stderr; with ``--json`` stdout carries only the JSON.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from memeui.cli import app, cluster, evaluation, labels, library, review, training

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=os.environ.get("MEMEUI_LOG_LEVEL", "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except ValueError as error:  # bad input: say what, without a traceback
        print(f"memeui: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        from annotations.store import StoreLocked, StoreUnavailable
        from engine.chat.backends import ReplyError  # imported late: see serving_threads

        if not isinstance(error, (ReplyError, StoreLocked, StoreUnavailable)):
            raise
        print(f"memeui: {error}", file=sys.stderr)  # no reply: say why
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memeui", description="Chat with a meme bot, find stickers.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for group in (app, library, labels, review, training, evaluation, cluster):
        group.add_commands(commands)
    return parser
