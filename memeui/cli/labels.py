"""`memeui labels …` and `memeui users …`: the label store and who may write to it. None
of these loads a model unless a label needs the library's stickers first."""

from __future__ import annotations

import sys
from pathlib import Path

from annotations.users import ROLES
from memeui.cli.common import (call_server, local_store, open_studio_here, print_json,
                               stdout_for_json_only, with_server)
from memeui.cli.review import add_review_commands

def add_commands(commands) -> None:
    """The labels commands."""
    labels = commands.add_parser("labels", help="the label store: add, import, export, agreement")
    actions = labels.add_subparsers(required=True, metavar="ACTION")
    add_label = with_server(actions.add_parser("add", help="record one label"))
    add_label.add_argument("--task", required=True)
    add_label.add_argument("--item", required=True)
    add_label.add_argument("--label", required=True)
    add_label.add_argument("--annotator", required=True)
    add_label.set_defaults(run=run_labels_add)
    import_ = with_server(actions.add_parser(
        "import", help="labels (JSONL, CSV, Parquet export) or conversations to label "
                       "(MELD/EmoryNLP CSV, MOD JSON, transcript)"))
    import_.add_argument("file", type=Path)
    import_.add_argument("--task", required=True)
    import_.set_defaults(run=run_labels_import)
    export = with_server(actions.add_parser("export", help="every annotator's current labels"))
    export.add_argument("--format", choices=["parquet", "jsonl", "csv"])
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--task", help="only this task")
    export.set_defaults(run=run_labels_export)
    agree = with_server(actions.add_parser("agreement", help="Fleiss, Krippendorff, Cohen"))
    agree.add_argument("--task", required=True)
    agree.add_argument("--json", action="store_true", help="(the output is always JSON)")
    agree.set_defaults(run=run_labels_agreement)
    stats = with_server(actions.add_parser("stats", help="counts, distributions, pending training"))
    stats.add_argument("--json", action="store_true", help="(the output is always JSON)")
    stats.set_defaults(run=run_labels_stats)
    train_now = with_server(actions.add_parser("request-training",
                                               help="record a fine-tuning request now"))
    train_now.add_argument("--task", required=True)
    train_now.set_defaults(run=run_labels_request_training)
    add_review_commands(actions)

    users = commands.add_parser("users", help="who may sign in: annotators and admins")
    actions = users.add_subparsers(required=True, metavar="ACTION")
    add_user = actions.add_parser("add", help="add a user (or change one's role and password)")
    add_user.add_argument("name")
    add_user.add_argument("--role", choices=list(ROLES), default="annotator")
    add_user.add_argument("--password-stdin", action="store_true",
                          help="read the password from stdin instead of asking")
    add_user.set_defaults(run=run_users_add)
    password = actions.add_parser("password", help="change a user's password (the role stays)")
    password.add_argument("name")
    password.add_argument("--password-stdin", action="store_true",
                          help="read the new password from stdin instead of asking")
    password.set_defaults(run=run_users_password)
    list_users = actions.add_parser("list", help="names and roles")
    list_users.add_argument("--json", action="store_true")
    list_users.set_defaults(run=run_users_list)
    remove_user = actions.add_parser("remove", help="remove a user")
    remove_user.add_argument("name")
    remove_user.set_defaults(run=run_users_remove)


def run_labels_add(args) -> int:
    if args.server:
        result = call_server(args, "/label", args.task, args.item, args.label, args.annotator)
    else:
        from memeui.access import Identity

        with stdout_for_json_only():
            studio = open_studio_here()
            result = studio.label(args.task, args.item, args.label,
                                  Identity(args.annotator, "admin"), source="cli")
    print_json(result)
    return 0


def run_labels_import(args) -> int:
    if args.server:
        result = import_through_server(args)
    else:
        with stdout_for_json_only():
            result = open_studio_here().import_file(args.file, args.task)
    print_json(result)
    return 0


def import_through_server(args) -> dict:
    """Each kind of file to the server's endpoint for it: label rows to /import_labels (an
    ``id,emotion`` CSV as rows by an annotator named after the file), conversations (read
    here) to /import_conversations."""
    from annotations.exchange import read_rows
    from memeui.studio import dialogues_as_rows, import_kind, read_dialogue_file

    kind = import_kind(args.file, args.task)
    if kind == "conversations":
        return call_server(args, "/import_conversations",
                           dialogues_as_rows(read_dialogue_file(args.file)), args.file.stem, "")
    rows = read_rows(args.file)
    if kind == "sticker_emotions":
        rows = [{"task": "sticker_emotion", "item": row["id"], "label": row["emotion"],
                 "annotator": args.file.stem} for row in rows]
    return call_server(args, "/import_labels", rows, args.task, "")


def run_labels_export(args) -> int:
    from annotations.exchange import write_rows

    if args.server:
        rows = call_server(args, "/current_labels", args.task or "", "")
    else:
        rows = local_store().current_labels(args.task)
    count = write_rows(rows, args.out, args.format)
    print(f"{count} labels written to {args.out}", file=sys.stderr)
    return 0


def run_labels_agreement(args) -> int:
    if args.server:
        result = call_server(args, "/agreement", args.task, "")
    else:
        from annotations.agreement import agreement

        result = agreement(local_store(), args.task)
    print_json(result)
    return 0


def run_labels_stats(args) -> int:
    print_json(call_server(args, "/labels_stats", "") if args.server else local_store().stats())
    return 0


def run_labels_request_training(args) -> int:
    if args.server:
        result = call_server(args, "/request_training", args.task, "")
    else:
        result = local_store().request_training(args.task, "cli", "requested on the command line")
    print_json(result)
    return 0


def users_file():
    from annotations.users import USERS_FILE, Users
    from engine import Settings

    return Users(Settings.from_env().data_dir / USERS_FILE)


def read_password(args) -> str:
    """From stdin with ``--password-stdin``, else asked twice without echo."""
    import getpass

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != password:
        raise ValueError("the passwords differ")
    return password


def run_users_add(args) -> int:
    users_file().add(args.name, args.role, read_password(args))
    print(f"{args.name} is an {args.role}", file=sys.stderr)
    return 0


def run_users_password(args) -> int:
    users = users_file()
    if users.role(args.name) is None:  # said before a password is asked for
        raise ValueError(f"there is no user named {args.name!r}")
    users.set_password(args.name, read_password(args))
    print(f"{args.name}'s password changed", file=sys.stderr)
    return 0


def run_users_list(args) -> int:
    roles = users_file().roles()
    if args.json:
        print_json(roles)
    else:
        for name, role in roles.items():
            print(f"{name:<32} {role}")
    return 0


def run_users_remove(args) -> int:
    users_file().remove(args.name)
    print(f"removed {args.name}", file=sys.stderr)
    return 0
