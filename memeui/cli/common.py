"""What every command group shares: the store, registry and jobs of the data dir without a
model, a running app's API, JSON on stdout."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

def with_server(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--server URL``: go through a running app's HTTP API instead of opening the store
    (which the running app holds); ``--user`` signs in when the app has a users file."""
    parser.add_argument("--server", help="a running memeui, e.g. http://127.0.0.1:7860")
    parser.add_argument("--user", help="sign in as USER (password from MEMEUI_PASSWORD)")
    return parser


def server_client(args):
    from gradio_client import Client

    auth = (args.user, os.environ.get("MEMEUI_PASSWORD", "")) if args.user else None
    try:
        return Client(args.server, auth=auth, verbose=False)
    except Exception as error:  # connection refused, bad URL, wrong login
        raise ValueError(f"cannot reach {args.server}: {error}") from None


def call_server(args, api_name: str, *values):
    """One named endpoint of a running app; its refusals come back as ValueErrors."""
    from gradio_client.exceptions import AppError

    try:
        return server_client(args).predict(*values, api_name=api_name)
    except AppError as error:
        raise ValueError(str(error)) from None


def open_studio_here():
    """The store of MEMEUI_DATA_DIR, for commands run without --server; its engine loads only
    when the command needs one."""
    from engine import Settings
    from memeui.studio import Studio

    return Studio.here(Settings.from_env())


def make_engine(**overrides):
    """The engine on the environment's settings, with ``overrides`` that are not None."""
    from engine import Settings
    from engine.cluster import shared_engine

    return shared_engine(Settings.from_env(**{k: v for k, v in overrides.items() if v is not None}))


@contextlib.contextmanager
def stdout_for_json_only():
    """Send anything libraries print to stderr, so stdout stays parseable JSON."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def print_listing(rows: list, as_json: bool, line) -> None:
    """A list command's output: the rows as JSON, or one ``line(row)`` each."""
    if as_json:
        print_json(rows)
    else:
        for row in rows:
            print(line(row))


def print_json(value) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


class ProgressBar:
    """A one-line progress bar on stderr (stdout stays free for JSON)."""

    def __enter__(self):
        return self

    def update(self, fraction: float, message: str) -> None:
        filled = int(fraction * 30)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%} {message[:40]:<40}")
        sys.stderr.flush()

    def __exit__(self, *exc) -> None:
        sys.stderr.write("\n")


def local_store():
    """The store of MEMEUI_DATA_DIR with the deployment's labels, no models loaded."""
    from engine import Settings
    from memeui.studio import open_store

    return open_store(Settings.from_env())


def local_registry():
    """The model versions of MEMEUI_DATA_DIR, no models loaded."""
    from engine import Settings
    from engine.paths import REGISTRY_DIR
    from engine.training.registry import Registry

    return Registry(Settings.from_env().data_dir / REGISTRY_DIR)


def local_jobs():
    """The job records of MEMEUI_DATA_DIR (read only: nothing runs), no models loaded."""
    from engine import Settings
    from engine.paths import JOBS_DIR
    from engine.training.jobs import JobRunner

    return JobRunner(Settings.from_env().data_dir / JOBS_DIR)


def serving_threads() -> None:
    """One thread per operation (torch, BLAS, OpenMP) in the server, MEMEUI_THREADS to change:
    chat requests are small and run side by side, and a small operation spread over all
    cores costs more in thread wake-ups and spinning than it saves. Batch commands keep every
    core. Environment variables, because the libraries read them once, when first imported."""
    from engine.settings import default_threads

    default_threads(os.environ.get("MEMEUI_THREADS", "1"))
