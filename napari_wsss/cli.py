"""The ``napari-wsss`` command: ingest, prelabel, train, evaluate, export, demo, open."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]


def _pipeline_config(args):
    from .pipeline import PipelineConfig

    kw = dict(method=args.method, refine=[s for s in args.refine.split(",") if s],
              cam_threshold=args.threshold)
    if args.scales:
        kw["scales"] = [float(s) for s in args.scales.split(",")]
    if args.no_flip:
        kw["flip"] = False
    if args.max_side is not None:
        kw["max_side"] = args.max_side or None
    return PipelineConfig.from_dict(kw)


def _add_pipeline_options(p: argparse.ArgumentParser) -> None:
    from .cams import METHODS
    from .conventions import REFINE_STAGES, STAGES
    from .pipeline import EXPLAINER, PipelineConfig

    p.add_argument("--method", default="cam", choices=sorted((*METHODS, EXPLAINER)),
                   help="CAM method, or 'explainer': the trained Explainer's masks as class maps "
                        "(default: cam)")
    p.add_argument("--refine", default=",".join(PipelineConfig().refine),
                   help=f"comma-separated refinement stages: {', '.join(REFINE_STAGES)} (default: all; "
                        f"{' / '.join(s.name for s in STAGES.values() if s.model)} only where one is trained)")
    p.add_argument("--scales", default=None, help="TTA scales, e.g. 1,0.5,1.5,2 (default)")
    p.add_argument("--no-flip", action="store_true", help="no horizontal-flip TTA")
    p.add_argument("--threshold", type=float, default=PipelineConfig().cam_threshold,
                   help="background threshold on normalised CAMs (background projects)")
    p.add_argument("--max-side", type=int, default=None, help="resize long side for inference (0 = never)")


def _distributed() -> tuple[int, int]:
    """(rank, world size) under torchrun, with a gloo/NCCL group for barriers; (0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def cmd_ingest(args) -> int:
    from .ingest import ingest_folder

    report = ingest_folder(args.project, args.images, args.labels, background=args.background)
    print(report)
    return 0


def cmd_prelabel(args) -> int:
    from .pipeline import Pipeline, prelabel
    from .store import Project, checkpoint_version

    rank, world = _distributed()
    project_path = Path(args.project)
    ingest_errors: list[str] = []
    if rank == 0 and args.images is not None:
        from .ingest import ingest_folder

        report = ingest_folder(project_path, args.images, args.labels, background=args.background)
        print(report, file=sys.stderr)
        ingest_errors = [str(e) for e in getattr(report, "errors", [])]
    _barrier(world)
    project = Project.open(project_path)
    config = _pipeline_config(args)
    if args.checkpoint:
        from .models import load_classifier

        model = load_classifier(args.checkpoint, args.device, classes=project.classes)
        pipe = Pipeline(model, project.classes, project.background, config,
                        model_version=checkpoint_version(args.checkpoint))
    else:
        pipe = Pipeline.from_project(project, config, device=args.device)
    report = prelabel(project, pipeline=pipe, force=args.force, batch_size=args.batch_size, rank=rank,
                      world_size=world, progress=not args.quiet)
    by_rank = {0: list(report.done)}
    if world > 1:
        import torch.distributed as dist

        reports = [None] * world
        dist.all_gather_object(reports, report)
        _barrier(world)
        by_rank = {r: list(rep.done) for r, rep in enumerate(reports)}
        if rank == 0:
            for other in reports[1:]:
                report.done += other.done
                report.skipped += other.skipped
                report.failed.update(other.failed)
        dist.destroy_process_group()
    if rank == 0:
        print(report.summary())
        if args.report:
            Path(args.report).write_text(json.dumps(dict(
                done=report.done, skipped=report.skipped, failed=report.failed,
                done_by_rank=by_rank, ingest_errors=ingest_errors, seconds=report.seconds,
            ), indent=2))
        for e in ingest_errors:
            print(f"  INGEST ERROR {e}")
    return 1 if (report.failed or ingest_errors) and not args.allow_failures else 0


def cmd_train(args, argv) -> int:
    from trainer.cli import run

    return run(args, argv=argv)


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate_project
    from .store import Project

    report = evaluate_project(Project.open(args.project, "r"), args.gt)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.as_table())
    return 0


def cmd_export(args) -> int:
    from .export import export_project
    from .store import Project

    report = export_project(Project.open(args.project, "r"), args.out, source=args.source,
                            format=args.format, include_skipped=args.include_skipped)
    print(report)
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(Path(args.out), open_viewer=not args.no_viewer, epochs=args.epochs)


def cmd_open(args) -> int:
    from ._qt.launch import open_in_napari

    return open_in_napari(Path(args.project))


def build_parser() -> argparse.ArgumentParser:
    from .export import EXPORT_FORMATS, EXPORT_SOURCES, FALLBACK_ORDER

    parser = argparse.ArgumentParser(
        prog="napari-wsss",
        description="Turn image-level labels into pixel masks: CAMs, dense CRF, random walk, "
                    "annotation in napari, retraining.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ingest", help="create or update a project from an image folder + labels CSV")
    p.add_argument("images", help="folder of images (or one sub-folder per class)")
    p.add_argument("--labels", help="labels CSV (id/filename + one 0/1 column per class, or a labels column)")
    p.add_argument("--project", required=True, help="project directory (*.zarr)")
    p.add_argument("--background", action="store_true", help="the project has a background class")

    p = sub.add_parser("prelabel", help="compute CAMs and pseudo-masks for every image of a project")
    p.add_argument("images", nargs="?", help="image folder to ingest first (optional for an existing project)")
    p.add_argument("--labels", help="labels CSV for the image folder")
    p.add_argument("--project", required=True, help="project directory (*.zarr), created if missing")
    p.add_argument("--background", action="store_true", help="new project with a background class")
    p.add_argument("--checkpoint", help="classifier checkpoint (default: the project's latest)")
    p.add_argument("--force", action="store_true", help="recompute images already done")
    p.add_argument("--batch-size", type=int, default=4,
                   help="images whose CAMs are computed in one batched pass (default: 4)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when present)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--allow-failures", action="store_true", help="exit 0 even when some images failed")
    p.add_argument("--report", help="write a JSON report (done / skipped / failed, per rank) here")
    _add_pipeline_options(p)

    from trainer.cli import add_arguments as add_train_arguments

    add_train_arguments(sub.add_parser("train", help="train classifier / affinity / segmenter on a project"))

    p = sub.add_parser("evaluate", help="score every proposal stage against ground-truth masks")
    p.add_argument("project")
    p.add_argument("--gt", required=True, help="folder of ground-truth masks <id>.png (255 = void)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("export", help="write masks as PNG / TIFF / OME-Zarr labels")
    p.add_argument("project")
    p.add_argument("--source", default="corrected",
                   help=f"corrected (default: the corrections, gaps filled from {', '.join(FALLBACK_ORDER)}) "
                        f"or a proposal stage: {', '.join(EXPORT_SOURCES[1:])}")
    p.add_argument("--format", default="png", choices=list(EXPORT_FORMATS),
                   help="; ".join(f"{f.name}: {f.description}" for f in EXPORT_FORMATS.values()))
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--include-skipped", action="store_true", help="also export images marked skipped")

    p = sub.add_parser("demo", help="build the sample project, prelabel, print quality, open napari")
    p.add_argument("--out", default="wsss-demo", help="folder for the demo projects (default: ./wsss-demo)")
    p.add_argument("--no-viewer", action="store_true", help="do not open napari")
    p.add_argument("--epochs", type=int, default=12, help="classifier epochs on the shapes sample")

    p = sub.add_parser("open", help="open a project in napari with the annotation panel")
    p.add_argument("project")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return cmd_train(args, argv[1:])
        return {
            "ingest": cmd_ingest,
            "prelabel": cmd_prelabel,
            "evaluate": cmd_evaluate,
            "export": cmd_export,
            "demo": cmd_demo,
            "open": cmd_open,
        }[args.command](args)
    except (FileNotFoundError, ValueError, PermissionError, RuntimeError) as e:
        print(f"napari-wsss {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
