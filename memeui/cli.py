"""``memeui`` on the command line: serve the app, search stickers, chat, benchmark.

Logs go to stderr; with ``--json`` stdout carries only the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


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
        from annotations.store import StoreLocked
        from engine.chat.backends import ReplyError  # imported late: see serving_threads

        if not isinstance(error, (ReplyError, StoreLocked)):
            raise
        print(f"memeui: {error}", file=sys.stderr)  # no reply: say why
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memeui", description="Chat with a meme bot, find stickers.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="start the web app")
    serve.add_argument("--host", default=os.environ.get("MEMEUI_HOST", DEFAULT_HOST))
    serve.add_argument("--port", type=int, default=int(os.environ.get("MEMEUI_PORT", DEFAULT_PORT)))
    serve.set_defaults(run=run_serve)

    search = commands.add_parser("search", help="rank stickers for a text query")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=8, help="how many stickers (default 8)")
    search.add_argument("--json", action="store_true", help="print a JSON array")
    search.set_defaults(run=run_search)

    chat = commands.add_parser("chat", help="one bot turn for MESSAGE, or a chat in the terminal")
    chat.add_argument("message", nargs="?", help="leave out for an interactive chat")
    chat.add_argument("--json", action="store_true", help="print the reply as one JSON object")
    chat.add_argument("--backend", help="reply backend: smollm2, retrieval, openai, or a "
                      "transformers model path (default: MEMEUI_REPLY_BACKEND)")
    chat.set_defaults(run=run_chat)

    library = commands.add_parser("library", help="add, list and remove sticker packs")
    actions = library.add_subparsers(required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a folder, zip or file as a pack")
    add.add_argument("path", type=Path)
    add.add_argument("--name", help="pack name (default: the file or folder name)")
    add.add_argument("--no-ocr", action="store_true", help="skip OCR (faster)")
    add.add_argument("--json", action="store_true", help="print the report as JSON")
    add.set_defaults(run=run_library_add)
    listing = actions.add_parser("list", help="packs and their sticker counts")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=run_library_list)
    remove = actions.add_parser("remove", help="remove a pack added before")
    remove.add_argument("name")
    remove.set_defaults(run=run_library_remove)
    stickers = actions.add_parser("stickers", help="every sticker with its emotion and who gave it")
    stickers.add_argument("--json", action="store_true")
    with_server(stickers).set_defaults(run=run_library_stickers)

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

    jobs = commands.add_parser("jobs", help="training jobs")
    actions = jobs.add_subparsers(required=True, metavar="ACTION")
    list_jobs = with_server(actions.add_parser("list", help="every job, newest first"))
    list_jobs.add_argument("--json", action="store_true")
    list_jobs.set_defaults(run=run_jobs_list)
    cancel = with_server(actions.add_parser("cancel", help="cancel a queued or running job"))
    cancel.add_argument("job")
    cancel.set_defaults(run=run_jobs_cancel)

    models = commands.add_parser("models", help="model versions: list, promote, roll back")
    actions = models.add_subparsers(required=True, metavar="ACTION")
    list_models = with_server(actions.add_parser("list", help="every version with its metrics"))
    list_models.add_argument("--json", action="store_true")
    list_models.set_defaults(run=run_models_list)
    promote = with_server(actions.add_parser("promote", help="serve a version now"))
    promote.add_argument("role")
    promote.add_argument("version")
    promote.set_defaults(run=run_models_promote)
    rollback = with_server(actions.add_parser("rollback", help="go back to the version live "
                                                               "before (or to VERSION)"))
    rollback.add_argument("role")
    rollback.add_argument("version", nargs="?", default="")
    rollback.set_defaults(run=run_models_rollback)

    users = commands.add_parser("users", help="who may sign in: annotators and admins")
    actions = users.add_subparsers(required=True, metavar="ACTION")
    add_user = actions.add_parser("add", help="add a user (or change one's role and password)")
    add_user.add_argument("name")
    add_user.add_argument("--role", choices=["annotator", "admin"], default="annotator")
    add_user.add_argument("--password-stdin", action="store_true",
                          help="read the password from stdin instead of asking")
    add_user.set_defaults(run=run_users_add)
    list_users = actions.add_parser("list", help="names and roles")
    list_users.add_argument("--json", action="store_true")
    list_users.set_defaults(run=run_users_list)
    remove_user = actions.add_parser("remove", help="remove a user")
    remove_user.add_argument("name")
    remove_user.set_defaults(run=run_users_remove)

    evaluate = commands.add_parser("eval", help="evaluate on public data; prints JSON")
    evaluate.add_argument("task", choices=["emoji", "choices", "replies", "premeld", "erc", "stickers"],
                          help="emoji: TweetEval emoji as stickers; premeld: forecast the next "
                               "utterance's sentiment (MELD); erc: each utterance's emotion "
                               "(MELD); stickers: the sticker emotion reader on labelled stickers; "
                               "choices: the regression set of messages and the stickers a person "
                               "would accept, search and chat turn, per language; replies: response "
                               "selection on held-out chitchat conversations (R10@1, MRR), and with "
                               "--backend the replies to held-out openings")
    evaluate.add_argument("--data", type=Path, help="folder in the task's format (stickers: a "
                          "CSV of id,emotion; default assets/labels/sticker_emotions.csv; "
                          "replies: a MOD JSON file whose held-out dialogues are measured too)")
    evaluate.add_argument("--split", help="default: val (emoji), dev (MELD)")
    evaluate.add_argument("--fit", action="store_true", help="train on DATA's train split first")
    evaluate.add_argument("--candidates", choices=["classes", "library"], default="classes",
                          help="emoji: rank the 20 emoji stickers (TweetEval's task) or every "
                               "sticker of the library")
    evaluate.add_argument("--through", choices=["chat"], help="emoji: send each tweet as a chat "
                          "message and score the sticker the turn sends, then its alternatives "
                          "(whole library), next to the search's ranking of the same tweets")
    evaluate.add_argument("--backend", help="with --through chat: the reply backend "
                          "(default: MEMEUI_REPLY_BACKEND)")
    evaluate.add_argument("--limit", type=int, help="with --through chat: the first N tweets; "
                          "replies: the held-out openings answered (default 200)")
    evaluate.add_argument("--json", action="store_true", help="(the output is always JSON)")
    evaluate.set_defaults(run=run_eval)

    train = with_server(commands.add_parser("train", help="train a model the engine uses; prints JSON"))
    train.add_argument("model", choices=["image-tower", "emotion", "usage-prior", "threshold",
                                         "replies", "sticker-emotion",
                                         "prerecognizer", "selector"],
                       help="image-tower: the offline LiT-style image tower; emotion: the bundled "
                            "pre-recognizer from chitchat-dataset + nade (both in assets/models/); "
                            "usage-prior: emoji counts of TweetEval emotion's train tweets (--data "
                            "its folder), into assets/labels/emoji_usage.json; threshold: the send "
                            "threshold for the text encoder, so that 19 in 20 messages of the "
                            "regression set get a sticker (--data: a MOD JSON file whose meme "
                            "share is reported beside), into assets/models/sticker-threshold.json; "
                            "replies: the response selector of the text encoder from "
                            "chitchat-dataset and, with --data, MOD's dialogues (assets/models/); "
                            "sticker-emotion, prerecognizer, selector: a fine-tuning job on the "
                            "store's sticker-emotion, utterance-emotion or best-sticker labels, "
                            "gated, and promoted if not worse")
    train.add_argument("--labels", type=Path, help="fine-tuning: import these labels first (an "
                       "export; for sticker-emotion also a CSV of id,emotion)")
    train.add_argument("--meld", help="prerecognizer: MELD's folder; its train split joins the "
                       "labels (default: MEMEUI_MELD)")
    train.add_argument("--data", type=Path, help="usage-prior: a folder with train_text.txt; "
                       "threshold, replies: a MOD JSON file (optional)")
    train.add_argument("--epochs", type=int, default=60, help="image tower epochs")
    train.add_argument("--conversations", type=int,
                       help="chitchat conversations for the emotion model (default 1200), the "
                            "response selector (default: all of chitchat's training conversations) "
                            "or the threshold's openings (default 500)")
    train.add_argument("--out", type=Path, help="where to write (default: the bundled weights)")
    train.add_argument("--json", action="store_true", help="(the output is always JSON)")
    train.set_defaults(run=run_train)

    emotion = commands.add_parser("emotion", help="each turn's emotion and the next speaker's forecast")
    emotion.add_argument("transcript", help="'Name: text' per line (use $'A: hi\\nB: hey')")
    emotion.add_argument("--next", dest="next_speaker", help="who speaks next (default: the "
                         "speaker before the last one, or 'bot')")
    emotion.add_argument("--scheme", help="label scheme (default: MEMEUI_LABEL_SCHEME or ekman7)")
    emotion.add_argument("--json", action="store_true", help="print one JSON object")
    emotion.set_defaults(run=run_emotion)

    spaces = commands.add_parser("spaces", help="build a Hugging Face Space from spaces.yaml")
    spaces.add_argument("action", choices=["build", "check"],
                        help="build: write the Space; check: build it, then list what would keep "
                             "it from starting (front matter, system libraries); exit 1 if any")
    spaces.add_argument("out", type=Path, help="folder to write the Space into")
    spaces.add_argument("--start", action="store_true", help="check: also install the bundle "
                        "into a fresh venv (only its requirements.txt), start app.py as Spaces "
                        "does and call /search and /chat")
    spaces.set_defaults(run=run_spaces)

    bench = commands.add_parser("bench", help="benchmarks; they print JSON")
    bench.add_argument("name", choices=["search", "emotion", "chat", "labels", "finetune", "load",
                                        "active", "soak"])
    bench.add_argument("--kills", type=int, default=5, help="load: times the server is killed")
    bench.add_argument("--json", action="store_true", help="(the output is always JSON)")
    bench.add_argument("--queries", type=int, default=200)
    bench.add_argument("--knn-vectors", type=int, default=1_000_000,
                       help="size of the synthetic knn benchmark (default 1M)")
    bench.add_argument("--ingest-stickers", type=int, default=200)
    bench.add_argument("--figure", type=Path, help="active: also draw the curves as a PNG")
    bench.add_argument("--seconds", type=float, default=600, help="soak: how long (default 600)")
    bench.set_defaults(run=run_bench)
    return parser


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
    from engine import Engine, Settings

    return Engine(Settings.from_env(**{k: v for k, v in overrides.items() if v is not None}))


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


def run_serve(args) -> int:
    serving_threads()  # before anything imports numpy or torch
    from memeui.app import build_app, launch, open_studio, start
    from memeui.trainer import Trainer
    from memeui.state import state_sync
    from engine import Settings

    sync = state_sync(Settings.from_env())
    if sync is not None:
        sync.restore()  # before the engine reads the registry and the packs
    engine = make_engine()
    studio = open_studio(engine)
    trainer = Trainer(studio)
    demo = build_app(engine, studio, trainer=trainer)
    start(engine, studio, trainer, sync)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a stop runs the shutdown push
    launch(demo, engine, host=args.host, port=args.port)
    return 0


def serving_threads() -> None:
    """One thread per operation (torch, BLAS, OpenMP) in the server, MEMEUI_THREADS to change:
    chat requests are small and run side by side, and a small operation spread over all
    cores costs more in thread wake-ups and spinning than it saves. Batch commands keep every
    core. Environment variables, because the libraries read them once, when first imported."""
    threads = os.environ.get("MEMEUI_THREADS", "1")
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, threads)


def run_search(args) -> int:
    if args.k < 1:
        raise ValueError("-k must be at least 1")
    with stdout_for_json_only():
        results = make_engine().search(args.query, args.k)
    if args.json:
        print_json([result.to_dict() for result in results])
    else:
        for result in results:
            print(f"{result.score:6.3f}  {result.emoji}  {result.label}  ({result.emotion})")
    return 0


def run_chat(args) -> int:
    from engine import Dialogue, Turn
    from engine.dialogue import check_message

    if args.message is None:
        return interactive_chat(make_engine(reply_backend=args.backend))
    dialogue = Dialogue((Turn("user", check_message(args.message)),))
    with stdout_for_json_only():
        engine = make_engine(reply_backend=args.backend)
        engine.warm_up().join()  # load first, so timings_ms measure the turn itself
        reply = engine.chat(dialogue)
    if args.json:
        print_json(reply.to_dict())
    else:
        print(f"bot: {reply.text}{format_extras(reply)}")
    return 0


def format_extras(reply) -> str:
    """The sticker and mood of a reply, after its text."""
    sticker = f"  {reply.sticker.emoji} [{reply.sticker.label}]" if reply.sticker else ""
    return f"{sticker}  (mood: {max(reply.mood, key=reply.mood.get)})"


def interactive_chat(engine) -> int:
    """A chat in the terminal; the reply streams in, then its sticker and mood."""
    from engine import Dialogue, Reply, ReplyError, Turn
    from engine.dialogue import check_message

    engine.warm_up()
    dialogue = Dialogue()
    print("Chat with the meme bot; an empty line or Ctrl-D ends it.", file=sys.stderr)
    while True:
        try:
            line = input("you: ")
        except EOFError:
            break
        if not line.strip():
            break
        try:
            dialogue = dialogue.then(Turn("user", check_message(line)))
        except ValueError as error:
            print(error, file=sys.stderr)
            continue
        print("bot: ", end="", flush=True)
        shown = ""
        try:
            for step in engine.chat_stream(dialogue):
                if isinstance(step, Reply):
                    break
                print(step[len(shown):], end="", flush=True)
                shown = step
        except ReplyError as error:
            print(f"\n({error})", file=sys.stderr)
            dialogue = Dialogue(dialogue.turns[:-1])
            continue
        dialogue = dialogue.then(Turn("bot", step.text, step.sticker.label if step.sticker else ""))
        print(format_extras(step), flush=True)
    return 0


def run_library_add(args) -> int:
    studio = open_studio_here()
    engine = studio.engine
    with stdout_for_json_only(), ProgressBar() as bar:
        report = engine.add_pack(args.path, args.name, ocr=engine.settings.ocr and not args.no_ocr,
                                 progress=bar.update)
        studio.sync_sticker_items()  # the new stickers are items to label at once
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.summary())
        for file_name, reason in report.errors:
            print(f"  refused {file_name}: {reason}")
    return 0


def run_library_list(args) -> int:
    with stdout_for_json_only():
        packs = make_engine().list_packs()
    print_listing(packs, args.json,
                  lambda pack: f"{pack['name']:<32} {pack['stickers']:>6}  {pack['source']}")
    return 0


def run_library_remove(args) -> int:
    with stdout_for_json_only():
        studio = open_studio_here()
        studio.engine.remove_pack(args.name)
        studio.sync_sticker_items()  # its stickers retire from the queues
    print(f"removed {args.name}", file=sys.stderr)
    return 0


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


def run_library_stickers(args) -> int:
    if args.server:
        stickers = call_server(args, "/library_stickers")
    else:
        from memeui.studio import sticker_listing

        with stdout_for_json_only():
            stickers = sticker_listing(open_studio_here().engine)
    print_listing(stickers, args.json,
                  lambda s: f"{s['id']}  {s['emotion']:<9} {s['emotion_source']:<6} "
                            f"{s['confidence']:.2f}  {s['label']}  ({s['pack']})")
    return 0


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


def run_users_add(args) -> int:
    import getpass

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise ValueError("the passwords differ")
    users_file().add(args.name, args.role, password)
    print(f"{args.name} is an {args.role}", file=sys.stderr)
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


def train_from_labels(args) -> int:
    """A fine-tuning job on the store's labels (after importing --labels): wait for it and
    print it with what the gate decided. With --server, request it there."""
    from memeui.trainer import TASK_OF_RECIPE

    if args.server:
        if args.labels or args.meld:
            raise ValueError("with --server, import the labels first (memeui labels import) "
                             "and set MEMEUI_MELD on the server")
        print_json(call_server(args, "/train", args.model, ""))
        return 0
    with stdout_for_json_only():
        studio = open_studio_here()
        if args.labels:
            studio.import_file(args.labels, TASK_OF_RECIPE[args.model])
        snapshot = studio.store.snapshot(studio.engine.settings.data_dir / "snapshots")
        job = studio.engine.train(args.model, snapshot, "cli", meld=args.meld)
        job = studio.engine.jobs.wait(job.id, timeout=3600)
    print_json(job.to_dict())
    return 0 if job.state == "done" else 2


def run_jobs_list(args) -> int:
    jobs = call_server(args, "/jobs_list", "") if args.server else \
        [job.to_dict() for job in local_jobs().jobs()]
    print_listing(jobs, args.json,
                  lambda job: f"{job['id']}  {job['recipe']:<16} {job['state']:<11} "
                              f"{job['progress']:4.0%}  {job['outcome'] or job['message']}")
    return 0


def run_jobs_cancel(args) -> int:
    if args.server:
        print_json(call_server(args, "/job_cancel", args.job, ""))
        return 0
    raise ValueError("a job runs inside the app that started it: pass --server URL")


def run_models_list(args) -> int:
    versions = call_server(args, "/models_list", "") if args.server else \
        [version.to_dict() for version in local_registry().versions()]
    print_listing(versions, args.json, lambda v: f"{v['id']}  {v['status']:<9} {v['note']}")
    return 0


def run_models_promote(args) -> int:
    if args.server:
        print_json(call_server(args, "/model_promote", args.role, args.version, ""))
        return 0
    registry = local_registry()  # on record: the app serves it from its next start
    registry.promote(args.role, args.version, "promoted on the command line")
    print_json(registry.get(args.role, args.version).to_dict())
    return 0


def run_models_rollback(args) -> int:
    if args.server:
        print_json(call_server(args, "/model_rollback", args.role, args.version, ""))
        return 0
    live = local_registry().rollback(args.role, args.version or None)
    print_json(live.to_dict() if live else None)
    return 0


def run_eval(args) -> int:
    from engine.evaluation.tasks import (EmojiEvaluation, EmotionEvaluation, choice_evaluation,
                                 reply_evaluation, sticker_emotion_evaluation)

    if args.task not in ("stickers", "choices", "replies") and args.data is None:
        raise ValueError(f"eval {args.task} needs --data DIR")
    if args.through and args.task not in ("emoji", "choices"):
        raise ValueError("--through chat is for eval emoji and eval choices")
    with stdout_for_json_only():
        chat = {"reply_backend": args.backend, "alternatives": 9} if args.through or args.backend else {}
        engine = make_engine(**chat)
        if args.task == "stickers":
            result = sticker_emotion_evaluation(engine, *([args.data] if args.data else []))
        elif args.task == "choices":
            result = choice_evaluation(engine, args.data, through_chat=bool(args.through))
        elif args.task == "replies":
            result = reply_evaluation(engine, args.limit or 200, with_backend=bool(args.backend),
                                      mod=args.data)
        elif args.through:
            result = EmojiEvaluation(engine).through_chat(args.data, args.split or "val", args.limit)
        elif args.task == "emoji":
            result = EmojiEvaluation(engine).run(args.data, args.split or "val", fit=args.fit,
                                                 candidates=args.candidates)
        else:
            evaluation = EmotionEvaluation(engine)
            run = evaluation.premeld if args.task == "premeld" else evaluation.erc
            result = run(args.data, args.split or "dev", fit=args.fit)
    print_json(result)
    return 0


def run_emotion(args) -> int:
    from engine.dialogue import Dialogue

    dialogue = Dialogue.from_transcript(args.transcript.replace("\\n", "\n"))
    with stdout_for_json_only():
        engine = make_engine()
        reading = engine.read_emotion(dialogue, args.next_speaker, args.scheme)
    if args.json:
        print_json(reading.to_dict())
        return 0
    for turn in reading.turns:
        print(f"{turn.speaker}: {turn.text}  [{max(turn.emotion, key=turn.emotion.get)}]")
    top = sorted(reading.forecast.items(), key=lambda item: -item[1])[:3]
    print(f"next, {reading.next_speaker}: " + ", ".join(f"{label} {p:.0%}" for label, p in top))
    return 0


def run_train(args) -> int:
    from dataclasses import asdict

    from engine.paths import LIT_WEIGHTS
    from engine.stickers.image import train_lit_tower
    from engine.stickers.library import StickerLibrary

    if args.model in ("sticker-emotion", "prerecognizer", "selector"):
        return train_from_labels(args)
    if args.model == "usage-prior":
        from engine.paths import EMOJI_USAGE
        from engine.stickers.usage import count_emojis, write_usage

        if args.data is None or not (args.data / "train_text.txt").is_file():
            raise ValueError("train usage-prior needs --data DIR with train_text.txt "
                             "(TweetEval's emotion folder)")
        library = StickerLibrary.load(make_engine().pack_dirs())
        texts = (args.data / "train_text.txt").read_text("utf-8").splitlines()
        counts = count_emojis(texts, [s.emoji for s in library.stickers])
        document = write_usage(counts, f"{args.data.parent.name}/{args.data.name}/train_text.txt ({len(texts)} tweets)",
                               args.out or EMOJI_USAGE)
        print_json({k: v for k, v in document.items() if k != "counts"} | {"emojis": len(counts)})
        return 0
    if args.model == "threshold":
        from engine.stickers.usage import calibrate

        if args.data is not None and not args.data.is_file():
            raise ValueError(f"{args.data} is not a file: --data names a MOD JSON file "
                             "(e.g. ../shared/data/mod/dialogues_1000.json)")
        with stdout_for_json_only():
            engine = make_engine(reply_backend="retrieval", sticker_threshold=-1.0)
            engine.warm_up().join()
            info = calibrate(engine, args.conversations or 500, args.data)
        print_json(info)
        return 0
    if args.model == "replies":
        from engine.chat.responses import train_response_selector

        if args.data is not None and not args.data.is_file():
            raise ValueError(f"{args.data} is not a file: --data names a MOD JSON file "
                             "(e.g. ../shared/data/mod/dialogues_1000.json)")
        with stdout_for_json_only():
            engine = make_engine()
            info = train_response_selector(engine.encoder.get(), args.out, args.conversations,
                                           engine.settings.data_dir / "cache", args.data)
        print_json(info)
        return 0
    if args.model == "emotion":
        from engine.emotion.recipes import train_default

        with stdout_for_json_only():
            engine = make_engine()
            info = train_default(engine.emotion_encoder(), args.out or engine.settings.prerecognizer,
                                 args.conversations or 1200, cache=engine.settings.data_dir / "cache")
        print_json(info)
        return 0
    with stdout_for_json_only():
        engine = make_engine()
        library = StickerLibrary.load(engine.pack_dirs())
        report = train_lit_tower(library.stickers, engine.encoder.get(),
                                 out=args.out or LIT_WEIGHTS, epochs=args.epochs)
    print_json(asdict(report))
    return 0


def run_spaces(args) -> int:
    from memeui.spaces import build, check

    if args.action == "build":
        print(build(args.out))
        return 0
    problems = check(args.out)
    for problem in problems:
        print(problem)
    print(f"{args.out}: {len(problems)} problem(s)", file=sys.stderr)
    if problems or not args.start:
        return 1 if problems else 0
    from memeui.spaces import start_check

    print_json(start_check(args.out))  # RuntimeError (exit 2) when it does not start
    return 0


def run_bench(args) -> int:
    with stdout_for_json_only():
        if args.name == "chat":
            serving_threads()  # the in-process turns run as the server runs them
            from bench.chat import run as bench_chat

            result = bench_chat(turns=args.queries)
        elif args.name == "soak":
            from bench.soak import run as bench_soak

            result = bench_soak(seconds=args.seconds)
        elif args.name == "load":
            from bench.load import run as bench_load

            result = bench_load(kills=args.kills)
        elif args.name == "finetune":
            serving_threads()
            from bench.finetune import run as bench_finetune

            result = bench_finetune()
        elif args.name == "active":
            from bench.active import draw_curves, run as bench_active

            result = bench_active()
            if args.figure:
                draw_curves(result, args.figure)
        elif args.name == "labels":
            from bench.labels import run as bench_labels

            result = bench_labels(labels=args.queries * 5)
        elif args.name == "emotion":
            from bench.emotion import run as bench_emotion

            result = bench_emotion(make_engine(), forecasts=args.queries)
        else:
            from bench.search import run as bench_search

            result = bench_search(make_engine(), queries=args.queries,
                                  knn_vectors=args.knn_vectors,
                                  ingest_stickers=args.ingest_stickers)
    print_json(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
