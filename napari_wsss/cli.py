"""The ``napari-wsss`` command: ingest, prelabel, train, evaluate, export, models, demo, open."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]


def _pipeline_config(args):
    from .pipeline import PipelineConfig

    kw = dict(method=args.method, cam_threshold=_threshold(args.threshold))
    if args.refine is not None:  # the user's stages, even those the calibration turned off
        kw.update(refine=[s for s in args.refine.split(",") if s], apply_calibration=False)
    if args.scales:
        kw["scales"] = [float(s) for s in args.scales.split(",")]
    if args.no_flip:
        kw["flip"] = False
    if args.max_side is not None:  # the user's size for every model instead of its training scale
        kw["max_side"], kw["scale"] = args.max_side or None, "config"
    if args.refine_max_side is not None:
        kw["refine_max_side"] = args.refine_max_side or None
    return PipelineConfig.from_dict(kw)


def _threshold(value: str):
    """``--threshold``: a number, ``auto`` or a rule name (checked by ``PipelineConfig``)."""
    try:
        return float(value)
    except ValueError:
        return value


def _add_pipeline_options(p: argparse.ArgumentParser) -> None:
    from .cams import METHODS
    from .conventions import REFINE_STAGES, STAGES
    from .pipeline import EXPLAINER, PipelineConfig

    p.add_argument("--method", default="cam", choices=sorted((*METHODS, EXPLAINER)),
                   help="CAM method, or 'explainer': the trained Explainer's masks as class maps "
                        "(default: cam)")
    p.add_argument("--refine", default=None,
                   help=f"comma-separated refinement stages: {', '.join(REFINE_STAGES)} (default: all "
                        "but any the project's calibration found to lower quality on its corrected images; "
                        f"{' / '.join(s.name for s in STAGES.values() if s.model)} only where one is trained)")
    p.add_argument("--scales", default=None, help="TTA scales, e.g. 1,0.5,1.5,2 (default)")
    p.add_argument("--no-flip", action="store_true", help="no horizontal-flip TTA")
    p.add_argument("--threshold", default="auto",
                   help="background threshold on normalised CAMs (background projects): a number, or "
                        "'auto' (default: the best on the project's corrected pixels when there are "
                        "enough, else a per-image rule; see napari_wsss.calibrate), or a rule name")
    p.add_argument("--max-side", type=int, default=None,
                   help="resize the long side to at most this for inference (0 = never) instead of "
                        "running each model at the scale it was trained at (the default)")
    p.add_argument("--refine-max-side", type=int, default=None,
                   help="working resolution (long side) of bigger images: refine there, upsample the "
                        f"masks along the image's edges (default {PipelineConfig().refine_max_side}; "
                        "0 = always full resolution)")


def _add_background_class(p: argparse.ArgumentParser) -> None:
    p.add_argument("--background-class", metavar="NAME",
                   help="the labels' background class (e.g. null); it becomes class 0 'background' "
                        "(implies --background)")


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


def _writable_project(path) -> None:
    """Fail before any work when an existing project cannot be written (read-only place)."""
    from .cli_errors import check_writable

    if Path(path).is_dir():
        check_writable(path)


def _failures_exit(n_failed: int, allow: bool, what: str) -> int:
    if n_failed and not allow:
        print(f"{n_failed} {what} failed (listed above): exit status 1 (--allow-failures: 0)", file=sys.stderr)
        return 1
    return 0


def cmd_ingest(args) -> int:
    from .ingest import ingest_folder

    _writable_project(args.project)
    report = ingest_folder(args.project, args.images, args.labels, background=args.background,
                           background_class=args.background_class, max_pixels=args.max_pixels or None)
    print(report)
    return _failures_exit(len(report.errors), args.allow_failures, "file(s) or row(s)")


def cmd_prelabel(args) -> int:
    from .pipeline import Pipeline, prelabel
    from .store import Project

    rank, world = _distributed()
    project_path = Path(args.project)
    _writable_project(project_path)
    ingest_errors: list[str] = []
    if rank == 0 and args.images is not None:
        from .ingest import ingest_folder

        report = ingest_folder(project_path, args.images, args.labels, background=args.background,
                               background_class=args.background_class, max_pixels=args.max_pixels or None)
        print(report, file=sys.stderr)
        ingest_errors = [str(e) for e in getattr(report, "errors", [])]
    _barrier(world)
    project = Project.open(project_path)
    project.checkpoint_fallback = not args.checkpoint  # an unreadable model in use: the newest readable one
    config = _pipeline_config(args)
    ids = _selected_ids(args, project)
    pipe = Pipeline.from_project(project, config, device=args.device, classifier=args.checkpoint)
    if rank == 0 and args.checkpoint:
        print(_models_line(pipe), file=sys.stderr)
    for warning in project.checkpoint_warnings:
        print(f"napari-wsss prelabel: warning: {warning}", file=sys.stderr)
    report = prelabel(project, pipeline=pipe, ids=ids, force=args.force, batch_size=args.batch_size, rank=rank,
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


def _selected_ids(args, project) -> list[str] | None:
    """``--ids a,b`` and / or ``--ids-file F`` (one id per line); every id must be in the project."""
    if not args.ids and not args.ids_file:
        return None
    ids = [i.strip() for i in (args.ids or "").split(",") if i.strip()]
    where = "--ids"
    if args.ids_file:
        path = Path(args.ids_file)
        if not path.is_file():
            raise FileNotFoundError(f"--ids-file {path} does not exist")
        ids += [line.strip() for line in path.read_text().splitlines() if line.strip()]
        where = f"--ids-file {path}" if not args.ids else f"--ids / --ids-file {path}"
    missing = [i for i in ids if i not in project]
    if missing:
        raise ValueError(f"{where}: {len(missing)} id(s) not in project {project.path}: "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    return list(dict.fromkeys(ids))


def _models_line(pipe) -> str:
    kept = ", ".join(f"{v}" for s, v in pipe.models.items() if s != "classifier") or "none"
    line = f"--checkpoint: classifier {pipe.models['classifier']}; keeps the project's {kept}"
    for stage, why in pipe.dropped.items():
        line += f"; drops the project's {stage} ({why})"
    return line


def cmd_train(args, argv) -> int:
    from trainer.cli import run

    _writable_project(args.project)
    return run(args, argv=argv)


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate_project
    from .store import Project

    report = evaluate_project(Project.open(args.project, "r"), args.gt)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.as_table())
    return 0


def cmd_export(args) -> int:
    from .cli_errors import check_writable
    from .export import export_project
    from .store import Project

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file: give a folder (it is created if missing)")
    project = Project.open(args.project, "r")
    out.mkdir(parents=True, exist_ok=True)
    check_writable(out)
    report = export_project(project, out, source=args.source, format=args.format,
                            include_skipped=args.include_skipped, reviewed_only=args.reviewed_only)
    print(report)
    return 0


def cmd_models(args) -> int:
    from .cli_models import run_models

    return run_models(args)


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(Path(args.out), open_viewer=not args.no_viewer, epochs=args.epochs)


def cmd_open(args) -> int:
    from ._qt.launch import open_in_napari

    return open_in_napari(Path(args.project))


def _add_max_pixels(p: argparse.ArgumentParser) -> None:
    from .io import DEFAULT_MAX_PIXELS

    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help="refuse image files with more than N pixels (height x width) before decoding them "
                        f"(decompression bombs); default {DEFAULT_MAX_PIXELS:,} (Pillow's limit); 0: no limit")


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
    _add_background_class(p)
    p.add_argument("--allow-failures", action="store_true",
                   help="exit 0 even when some files or rows could not be ingested")
    _add_max_pixels(p)

    p = sub.add_parser("prelabel", help="compute CAMs and pseudo-masks for every image of a project")
    p.add_argument("images", nargs="?", help="image folder to ingest first (optional for an existing project)")
    p.add_argument("--labels", help="labels CSV for the image folder")
    p.add_argument("--project", required=True, help="project directory (*.zarr), created if missing")
    p.add_argument("--background", action="store_true", help="new project with a background class")
    _add_background_class(p)
    p.add_argument("--checkpoint", help="classifier checkpoint (default: the project's latest); the "
                        "project's AffinityNet and segmenter are kept, its Explainer only if it "
                        "explains this checkpoint (the run says which)")
    p.add_argument("--force", action="store_true", help="recompute images already done")
    p.add_argument("--ids", help="only these image ids (comma-separated)")
    p.add_argument("--ids-file", help="only the image ids listed in this file (one per line)")
    p.add_argument("--batch-size", type=int, default=4,
                   help="images whose CAMs are computed in one batched pass (default: 4)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when present)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--allow-failures", action="store_true", help="exit 0 even when some images failed")
    p.add_argument("--report", help="write a JSON report (done / skipped / failed, per rank) here")
    _add_max_pixels(p)
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
    p.add_argument("--reviewed-only", action="store_true",
                   help="export only images an annotator accepted or corrected")

    from .cli_models import add_models_parser

    add_models_parser(sub)

    p = sub.add_parser("demo", help="build the sample project, prelabel, print quality, open napari")
    p.add_argument("--out", default="wsss-demo", help="folder for the demo projects (default: ./wsss-demo)")
    p.add_argument("--no-viewer", action="store_true", help="do not open napari")
    p.add_argument("--epochs", type=int, default=12, help="classifier epochs on the shapes sample")

    p = sub.add_parser("open", help="open a project in napari with the annotation panel")
    p.add_argument("project")
    return parser


def main(argv: list[str] | None = None) -> int:
    from .cli_errors import USER_ERRORS, describe

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
            "models": cmd_models,
            "open": cmd_open,
        }[args.command](args)
    except USER_ERRORS as e:
        print(f"napari-wsss {args.command}: error: {describe(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
