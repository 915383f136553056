"""`memeui eval …` and `memeui bench …`: the only commands that import engine.evaluation
and bench/."""

from __future__ import annotations

from pathlib import Path

from memeui.cli.common import make_engine, print_json, serving_threads, stdout_for_json_only

def add_commands(commands) -> None:
    """The evaluation commands."""
    evaluate = commands.add_parser("eval", help="evaluate on public data; prints JSON")
    evaluate.add_argument("task", choices=["emoji", "choices", "replies", "premeld", "erc", "stickers"],
                          help="emoji: TweetEval emoji as stickers; premeld: forecast the next "
                               "utterance's sentiment (MELD); erc: each utterance's emotion "
                               "(MELD); stickers: the sticker emotion reader on labelled stickers; "
                               "choices: the regression set of messages and the stickers a person "
                               "would accept, search and chat turn, per language; replies: response "
                               "selection on held-out chitchat conversations (R10@1, MRR), and with "
                               "--backend the replies to held-out openings and to the "
                               "regression set's English messages: how well they answer")
    evaluate.add_argument("--data", type=Path, help="folder in the task's format (stickers: a "
                          "CSV of id,emotion; default assets/labels/sticker_emotions.csv; "
                          "replies: a MOD JSON file whose held-out dialogues are measured too)")
    evaluate.add_argument("--split", help="default: val (emoji), dev (MELD)")
    evaluate.add_argument("--fit", action="store_true", help="train on DATA's train split first")
    evaluate.add_argument("--seed", type=int, default=0, help="erc --fit: the fit's seed "
                          "(the heads' start, the batch order; default 0)")
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

    bench = commands.add_parser("bench", help="benchmarks; they print JSON")
    bench.add_argument("name", choices=["search", "emotion", "chat", "labels", "finetune", "load",
                                        "active", "soak", "cluster"])
    bench.add_argument("--kills", type=int, default=5, help="load: times the server is killed")
    bench.add_argument("--json", action="store_true", help="(the output is always JSON)")
    bench.add_argument("--queries", type=int, default=200)
    bench.add_argument("--smollm2-turns", type=int, help="chat: SmolLM2 turns timed (default 8)")
    bench.add_argument("--knn-vectors", type=int, default=1_000_000,
                       help="size of the synthetic knn benchmark (default 1M)")
    bench.add_argument("--ingest-stickers", type=int, default=200)
    bench.add_argument("--figure", type=Path, help="active: also draw the curves as a PNG")
    bench.add_argument("--seconds", type=float, help="soak, cluster: how long (default 600, 30)")
    bench.add_argument("--address", help="cluster: a running cluster with the application "
                       "(its data dir in MEMEUI_DATA_DIR) instead of a head of its own")
    bench.add_argument("--annotators", type=int, default=16, help="cluster: annotators")
    bench.add_argument("--chatters", type=int, default=8, help="cluster: chat clients")
    bench.add_argument("--login", action="store_true",
                       help="labels: a users file, every annotator signed in")
    bench.set_defaults(run=run_bench)


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
            if args.task == "premeld":
                result = evaluation.premeld(args.data, args.split or "dev", fit=args.fit)
            else:
                result = evaluation.erc(args.data, args.split or "dev", fit=args.fit, seed=args.seed)
    print_json(result)
    return 0


def run_bench(args) -> int:
    with stdout_for_json_only():
        if args.name == "chat":
            serving_threads()  # the in-process turns run as the server runs them
            from bench.chat import run as bench_chat

            result = bench_chat(turns=args.queries, smollm2_turns=args.smollm2_turns)
        elif args.name == "soak":
            from bench.soak import run as bench_soak

            result = bench_soak(seconds=args.seconds or 600)
        elif args.name == "cluster":
            from bench.cluster import run as bench_cluster

            result = bench_cluster(args.annotators, args.chatters, args.seconds or 30, args.address)
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

            result = bench_labels(labels=args.queries * 5, login=args.login)
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
