"""``soundclass demo``: the whole pipeline on built-in generated data, in a few minutes."""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace

from soundclass.apps.demo import DEMO, QUICK_DEMO, run_demo
from soundclass.cli._args import add_jobs_option, add_quiet_option


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="generate an eating-sound-like dataset, train, evaluate, report and predict (a few minutes)",
        description=(
            "Generate a small built-in eating-sound-like dataset, train the default model on it, "
            "evaluate it on a grouped validation split, write the HTML report, and predict a "
            "held-out folder into a submission CSV. Prints where everything is."
        ),
    )
    parser.add_argument("-o", "--output", default=None, metavar="RUN_DIR",
                        help="run folder (default: a new temporary folder, kept afterwards)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny data, 4 epochs: a smoke test of the pipeline (~30 s; its accuracy means nothing)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data generation and training")
    add_jobs_option(parser)
    add_quiet_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = replace(QUICK_DEMO if args.quick else DEMO, seed=args.seed)
    run_dir = args.output or tempfile.mkdtemp(prefix="soundclass-demo-")
    res = run_demo(run_dir, config=config, progress=not args.quiet, n_jobs=args.jobs)
    m = res.val_metrics
    print()
    print(f"validation ({m['n']} clips): accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}, "
          f"balanced accuracy {m['balanced_accuracy']:.3f}")
    print(f"held-out test ({res.n_test} clips): accuracy {res.test_accuracy:.3f}")
    print(f"done in {res.seconds:.0f} s")
    print(f"report:     {res.report}")
    print(f"checkpoint: {res.checkpoint_dir}")
    print(f"submission: {res.submission}")
    print(f"data:       {res.run_dir / 'data'}")
    print(f"next: soundclass predict {res.checkpoint_dir} YOUR_TEST_DIR -o submit.csv")
    return 0
