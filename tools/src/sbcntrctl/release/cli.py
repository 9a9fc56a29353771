"""``sbcntrctl release``: what each job of the release workflow runs.

spec IMAGE --commit SHA [--registry R]   the image's Dockerfile, context, ref, build
                                         platform and cache scope (key=value lines
                                         for $GITHUB_OUTPUT)
dockle REF --out FILE                    Dockle's JSON report of a local image
verdict IMAGE --trivy F --dockle F       the scan gate (accepted findings aside)
push IMAGE --commit SHA --registry R --out FILE
                                         push once, record the digest
deploy ENV --commit SHA --digests F...   deploy backend then frontend, pinned by digest,
                                         printing each deployment stage
smoke ENV|URL                            pages and API answer 200 with their content, then a load
rollback ENV SERVICE                     back to the last revision that ran
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from sbcntrctl.deploy import ecs
from sbcntrctl.deploy.cli import stage
from sbcntrctl.infra.stacks import env_name
from sbcntrctl.release import images, registry, rollout, scan, smoke

ACTIONS = ("spec", "dockle", "verdict", "push", "deploy", "smoke", "rollback")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    image_help = "the image to release"
    commit_help = "the commit the image is built from (its tag)"
    spec = actions.add_parser("spec", help="an image's Dockerfile, context and ref")
    spec.add_argument("image", choices=images.IMAGES, help=image_help)
    spec.add_argument("--commit", required=True, help=commit_help)
    spec.add_argument("--registry", default="", help="the registry host (default: none, local)")
    dockle = actions.add_parser("dockle", help="run Dockle on a local image")
    dockle.add_argument("ref", help="the local image's reference")
    dockle.add_argument("--out", type=Path, required=True, help="where to write Dockle's JSON")
    verdict = actions.add_parser("verdict", help="the scan gate (accepted findings aside)")
    verdict.add_argument("image", choices=images.IMAGES, help=image_help)
    verdict.add_argument("--trivy", type=Path, required=True, help="Trivy's JSON report")
    verdict.add_argument("--dockle", type=Path, required=True, help="Dockle's JSON report")
    verdict.add_argument(
        "--accepted",
        type=Path,
        default=scan.ACCEPTED_FILE,
        help="the accepted findings, each with a reason",
    )
    push = actions.add_parser("push", help="push once and record the digest")
    push.add_argument("image", choices=images.IMAGES, help=image_help)
    push.add_argument("--commit", required=True, help=commit_help)
    push.add_argument("--registry", required=True, help="the ECR registry host")
    push.add_argument("--out", type=Path, required=True, help="where to record the digest")
    deploy = actions.add_parser("deploy", help="deploy backend then frontend, pinned by digest")
    deploy.add_argument("environment", type=env_name, help="the environment (infra/)")
    deploy.add_argument("--commit", required=True, help="the commit the digests were pushed for")
    deploy.add_argument(
        "--digests", type=Path, nargs="+", required=True, help="the records push wrote"
    )
    deploy.add_argument(
        "--wait",
        type=float,
        help="seconds each service's deployment may take (default: 900, plus the bake times "
        "and lifecycle hook timeouts of a BLUE_GREEN or CANARY deployment)",
    )
    deploy.add_argument(
        "--apply-capacity",
        action="store_true",
        help="set each scalable target's min/max from scaling.json (default: keep the current "
        "ones, except when the schedule that set them is removed)",
    )
    deploy.add_argument("--dir", type=Path, default=ecs.DEFAULT_DIR, help="the taskdefs folder")
    smoke_ = actions.add_parser(
        "smoke", help="pages and API answer 200 with their content, then a short load"
    )
    smoke_.add_argument("target", help="an environment name or the frontend's base URL")
    smoke_.add_argument("--seconds", type=int, default=30, help="length of the load")
    smoke_.add_argument("--rps", type=float, default=5, help="the load's rate (req/s)")
    rollback = actions.add_parser("rollback", help="back to the last revision that ran")
    rollback.add_argument("environment", type=env_name, help="the environment (infra/)")
    rollback.add_argument("service", choices=("frontend", "backend"), help="the service")


def run(args: argparse.Namespace) -> int:
    try:
        return _ACTIONS[args.action](args)
    except images.ReleaseError as exc:
        print(f"release {args.action}: {exc}", file=sys.stderr)
        return 2


def _spec(args: argparse.Namespace) -> int:
    image = images.image(args.image)
    print(f"dockerfile={image.dockerfile}")
    print(f"context={image.context}")
    print(f"repository={image.repository}")
    print(f"ref={image.ref(args.commit, args.registry)}")
    print(f"platform={images.PLATFORM}")
    print(f"cache-scope={image.cache_scope}")
    return 0


def _dockle(args: argparse.Namespace) -> int:
    scan.run_dockle(args.ref, args.out)
    print(f"dockle report: {args.out}")
    return 0


def _verdict(args: argparse.Namespace) -> int:
    result = scan.verdict(
        args.image,
        images.read_json(args.trivy, "a Trivy JSON report"),
        images.read_json(args.dockle, "a Dockle JSON report"),
        scan.load_accepted(args.accepted),
    )
    print(scan.render(args.image, result))
    return 0 if result.ok else 1


def _push(args: argparse.Namespace) -> int:
    image = images.image(args.image)
    image_digest, pushed = registry.push(image, args.commit, args.registry)
    registry.write_record(args.out, image, args.commit, image_digest)
    what = "pushed" if pushed else "already in ECR (immutable tag), not pushed again"
    print(f"{image.ref(args.commit, args.registry)}: {what}; {image_digest}")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    digests = registry.read_records(args.digests, args.commit)
    lines = rollout.deploy(
        args.environment,
        args.commit,
        digests,
        args.wait,
        args.dir,
        progress=stage,
        apply_capacity=args.apply_capacity,
    )
    for line in lines:
        print(line)
    return 0


def _smoke(args: argparse.Namespace) -> int:
    url = args.target if "://" in args.target else rollout.frontend_url(args.target)
    for line in smoke.check_pages(url):
        print(line)
    with tempfile.TemporaryDirectory(prefix="smoke-") as report_dir:
        status = smoke.run_load(url, args.seconds, args.rps, Path(report_dir))
    print(f"smoke load against {url}: {'passed' if status == 0 else 'THRESHOLD MISSED'}")
    return status


def _rollback(args: argparse.Namespace) -> int:
    print(rollout.rollback(args.environment, args.service, progress=stage))
    return 0


_ACTIONS = {
    "spec": _spec,
    "dockle": _dockle,
    "verdict": _verdict,
    "push": _push,
    "deploy": _deploy,
    "smoke": _smoke,
    "rollback": _rollback,
}
