"""`memeui train …`, `memeui jobs …`, `memeui models …`: fine-tuning and model versions."""

from __future__ import annotations

from pathlib import Path

from engine import paths
from memeui.cli.common import (call_server, local_jobs, local_registry, make_engine,
                               open_studio_here, print_json, print_listing, stdout_for_json_only,
                               with_server)

def add_commands(commands) -> None:
    """The training commands."""
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


def run_train(args) -> int:
    from dataclasses import asdict

    from engine.encoders import encoder_facts
    from engine.stickers.image import tower_file, train_lit_tower
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
                                           engine.settings.data_dir / paths.CACHE_DIR, args.data)
        print_json(info)
        return 0
    if args.model == "emotion":
        from engine.emotion.recipes import train_default

        with stdout_for_json_only():
            engine = make_engine()
            info = train_default(engine.emotion_encoder(), args.out or engine.settings.prerecognizer,
                                 args.conversations or 1200,
                                 cache=engine.settings.data_dir / paths.CACHE_DIR)
        print_json(info)
        return 0
    with stdout_for_json_only():
        engine = make_engine()
        library = StickerLibrary.load(engine.pack_dirs())
        encoder = engine.encoder.get()
        report = train_lit_tower(library.stickers, encoder, epochs=args.epochs,
                                 out=args.out or tower_file(encoder.name),
                                 chinese=encoder_facts(encoder.name).multilingual)
    print_json(asdict(report))
    return 0
