"""`python -m train --config cpu-small [key=value ...] [--dry-run] [--resume | --init-from CHECKPOINT] [--export FOLDER]`.

Multi-process: `torchrun --nproc_per_node N -m train --config paper-256` (gloo on CPU, NCCL on GPU).
Multi-node: add torchrun's rendezvous options, e.g.
`torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 -m train ...`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from train.config import ConfigError, load_config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Overrides are key=value with JSON values, dotted for the architecture: "
                                       "batch_size=16 model.resolution=32 source_dirs='[\"cats\"]'")
    p.add_argument("overrides", nargs="*", help="config overrides, key=value")
    p.add_argument("--config", default="cpu-small", help="shipped config name (cpu-small, paper-256) or a JSON file")
    p.add_argument("--dry-run", action="store_true", help="load data, build models, print the plan, train nothing")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt exactly")
    p.add_argument("--grow", action="store_true",
                   help="with --resume: RUN_DIR/checkpoint.pt was trained at a lower model.resolution; its layers "
                        "are loaded, the new resolutions' layers start fresh (stage_images must start the new stage there)")
    p.add_argument("--init-from", metavar="CHECKPOINT", default=None,
                   help="start from an exported checkpoint folder (e.g. checkpoints/twingan-selfie2anime): its "
                        "generator, discriminators and images seen; fresh Adam moments. A lower-resolution "
                        "checkpoint is grown to model.resolution")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (this invocation)")
    p.add_argument("--export", metavar="FOLDER", default=None,
                   help="only export RUN_DIR/checkpoint.pt's EMA generator to FOLDER (inference format) and exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar (log lines only)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)  # flags may sit between key=value overrides
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.print_config:
        from train.config import to_dict

        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    if args.export:
        from train.export import export_checkpoint

        print(export_checkpoint(cfg.run_path, args.export))
        return 0
    from train.data import DataError
    from train.loop import train
    from train.tags_data import TagsDataError

    if args.grow and not args.resume:
        print("error: --grow continues a run: use it with --resume", file=sys.stderr)
        return 2
    if args.init_from and (args.resume or args.grow):
        print("error: --init-from starts a run; --resume and --grow continue one", file=sys.stderr)
        return 2
    try:
        summary = train(cfg, resume=args.resume, dry_run=args.dry_run, max_steps=args.max_steps,
                        progress=not args.no_progress, grow=args.grow, init_from=args.init_from)
    except (DataError, TagsDataError, FileNotFoundError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
