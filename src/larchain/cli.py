"""The ``larchain`` command line: inspect and verify artifacts, check configs.

Subcommands::

    larchain artifacts list   [--root results] [--stage STAGE]
    larchain artifacts show   REF [--root results] [--json]
    larchain artifacts verify [REF ...] [--all] [--root results]
    larchain config check     FILE
    larchain --version

Exit codes: 0 success; 1 an artifact failed verification (or its manifest is unreadable);
2 usage errors (bad arguments, unknown or ambiguous REF, invalid config). Expected errors
are reported as one line on stderr, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from larchain import __version__
from larchain.core.artifacts import (
    MANIFEST,
    RESULTS,
    ArtifactError,
    find_artifacts,
    read_manifest,
    resolve,
    verify,
)

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2

STATUS_OK = "ok"
STATUS_INCOMPLETE = "INCOMPLETE (no manifest)"
STATUS_CORRUPT = "CORRUPT"
SHA_SHORT = 12
UPSTREAM_SHORT = 8


def _err(message: str) -> None:
    """One-line error on stderr, prefixed with the program name."""
    print(f"larchain: error: {message}", file=sys.stderr)


def human_size(n: int) -> str:
    """``1536`` -> ``'1.5 KiB'``; bytes below 1 KiB are printed exactly."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _dir_size(directory: Path) -> int:
    """Total bytes of the regular files under ``directory`` (recursive, links not followed)."""
    total = 0
    for dirpath, _dirnames, filenames in os.walk(directory):
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            total += st.st_size
    return total


def quick_status(directory: Path) -> tuple[str, dict[str, Any] | None]:
    """Status from the manifest's presence and file sizes only (no hashing), plus the manifest."""
    if not (directory / MANIFEST).exists():
        return STATUS_INCOMPLETE, None
    try:
        manifest = read_manifest(directory)
    except ArtifactError:
        return STATUS_CORRUPT, None
    if not isinstance(manifest, dict) or manifest.get("id") != directory.name:
        return STATUS_CORRUPT, manifest if isinstance(manifest, dict) else None
    files = manifest.get("files")
    if not isinstance(files, dict):
        return STATUS_CORRUPT, manifest
    for rel, info in files.items():
        try:
            size = (directory / rel).stat().st_size
        except OSError:
            return STATUS_CORRUPT, manifest
        if not isinstance(info, dict) or size != info.get("bytes"):
            return STATUS_CORRUPT, manifest
    return STATUS_OK, manifest


def _upstream_short(upstream: Any) -> str:
    """``{'lut': '0123abcd...'}`` -> ``'lut:0123abcd'``; ``'-'`` when there is none."""
    if not isinstance(upstream, Mapping) or not upstream:
        return "-"
    return ",".join(f"{k}:{str(v)[:UPSTREAM_SHORT]}" for k, v in sorted(upstream.items()))


def _table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces (last column not padded)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths[:-1], strict=True)] + [r[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def cmd_artifacts_list(args: argparse.Namespace) -> int:
    """One row per artifact directory, sorted by stage then creation time."""
    dirs = [
        d for d in find_artifacts(args.root) if args.stage is None or d.parent.name == args.stage
    ]
    if not dirs:
        where = f"{args.root}/" + (f"{args.stage}/" if args.stage else "")
        print(f"no artifacts under {where}", file=sys.stderr)
        return EXIT_OK
    entries = []
    for d in dirs:
        status, manifest = quick_status(d)
        m = manifest or {}
        created = m.get("created")
        entries.append(
            (
                d.parent.name,
                created is None,  # artifacts without a creation time last within their stage
                str(created or "-"),
                d.name,
                status,
                human_size(_dir_size(d)),
                _upstream_short(m.get("upstream")),
            )
        )
    entries.sort(key=lambda e: (e[0], e[1], e[2], e[3]))
    rows = [("STAGE", "ID", "STATUS", "CREATED", "SIZE", "UPSTREAM")]
    rows += [
        (stage, id_, status, created, size, up)
        for stage, _, created, id_, status, size, up in entries
    ]
    print(_table(rows))
    return EXIT_OK


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


def format_manifest(directory: Path, manifest: Mapping[str, Any]) -> str:
    """A human-readable summary of one artifact's manifest."""
    import yaml

    status, _ = quick_status(directory)
    wall = manifest.get("wall_time_s")
    lines = [
        f"artifact:     {directory}",
        f"stage:        {manifest.get('stage', '?')}",
        f"id:           {manifest.get('id', '?')}",
        f"status:       {status} (sizes only; 'larchain artifacts verify' re-hashes)",
        f"code version: {manifest.get('code_version', '?')}",
        f"seed:         {manifest.get('seed')}",
        f"created:      {manifest.get('created', '?')}",
        f"wall time:    {wall:.3f} s" if isinstance(wall, int | float) else f"wall time:    {wall}",
    ]
    upstream = manifest.get("upstream") or {}
    lines.append("upstream:" + ("" if upstream else "     -"))
    for k, v in sorted(upstream.items()):
        lines.append(f"  {k}: {v}")
    config = manifest.get("config") or {}
    lines.append("config:" + ("" if config else "       {}"))
    if config:
        dumped = yaml.safe_dump(config, sort_keys=False, default_flow_style=None)
        lines.append(_indent(dumped.rstrip()))
    files = manifest.get("files") or {}
    total = sum(int(info.get("bytes", 0)) for info in files.values())
    lines.append(f"files:        {len(files)}, {human_size(total)}")
    if files:
        width = max(len(rel) for rel in files)
        for rel, info in sorted(files.items()):
            size = human_size(int(info.get("bytes", 0)))
            sha = str(info.get("sha256", ""))[:SHA_SHORT]
            lines.append(f"  {rel:<{width}}  {size:>10}  {sha}")
    packages = manifest.get("packages") or {}
    if packages:
        lines.append("packages:")
        width = max(len(k) for k in packages)
        for k, v in packages.items():
            lines.append(f"  {k:<{width}}  {v}")
    extra = manifest.get("extra")
    if extra:
        lines.append("extra:")
        lines.append(
            _indent(yaml.safe_dump(extra, sort_keys=False, default_flow_style=None).rstrip())
        )
    return "\n".join(lines)


def cmd_artifacts_show(args: argparse.Namespace) -> int:
    """Print one artifact's manifest, summarised or (``--json``) raw."""
    try:
        directory = resolve(args.ref, args.root)
    except ArtifactError as exc:
        _err(str(exc))
        return EXIT_USAGE
    try:
        manifest = read_manifest(directory)
    except ArtifactError as exc:
        _err(str(exc))
        return EXIT_FAIL
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        print(format_manifest(directory, manifest))
    return EXIT_OK


def cmd_artifacts_verify(args: argparse.Namespace) -> int:
    """Re-hash every file of the chosen artifacts against their manifests."""
    if not args.refs and not args.all:
        _err("artifacts verify: give one or more REF, or --all")
        return EXIT_USAGE
    if args.all:
        dirs = find_artifacts(args.root)
        if not dirs:
            print(f"no artifacts under {args.root}/", file=sys.stderr)
            return EXIT_OK
    else:
        dirs = []
        for ref in args.refs:
            try:
                d = resolve(ref, args.root)
            except ArtifactError as exc:
                _err(str(exc))
                return EXIT_USAGE
            if d not in dirs:
                dirs.append(d)
    failed = 0
    for d in dirs:
        problems = verify(d)
        if problems:
            failed += 1
            print(f"FAIL {d}")
            for p in problems:
                print(f"  {p}")
        else:
            print(f"OK {d}")
    if len(dirs) > 1:
        print(f"{len(dirs) - failed} ok, {failed} failed", file=sys.stderr)
    return EXIT_FAIL if failed else EXIT_OK


def cmd_config_check(args: argparse.Namespace) -> int:
    """Validate a YAML config (schema + cross-key checks)."""
    from larchain.core.config import load_config

    try:
        load_config(args.file)
    except (ValueError, OSError) as exc:  # ConfigError is a ValueError
        _err(str(exc))
        return EXIT_USAGE
    print(f"ok: {args.file}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree; each leaf parser sets ``func``."""
    parser = argparse.ArgumentParser(
        prog="larchain", description="Inspect larchain artifacts and check configs."
    )
    parser.add_argument("--version", action="version", version=f"larchain {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    art = sub.add_parser("artifacts", help="list, show and verify artifacts")
    art_sub = art.add_subparsers(dest="action", required=True, metavar="ACTION")

    def root_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--root", default=str(RESULTS), help="results directory (default: %(default)s)"
        )

    p = art_sub.add_parser("list", help="one row per artifact (fast: no hashing)")
    root_arg(p)
    p.add_argument("--stage", help="only this stage")
    p.set_defaults(func=cmd_artifacts_list)

    p = art_sub.add_parser("show", help="summarise one artifact's manifest")
    p.add_argument("ref", metavar="REF", help="artifact path, id or unique id prefix")
    root_arg(p)
    p.add_argument("--json", action="store_true", help="print the raw manifest")
    p.set_defaults(func=cmd_artifacts_show)

    p = art_sub.add_parser("verify", help="re-hash artifact files against their manifests")
    p.add_argument("refs", nargs="*", metavar="REF", help="artifact path, id or unique id prefix")
    p.add_argument("--all", action="store_true", help="verify every artifact under --root")
    root_arg(p)
    p.set_defaults(func=cmd_artifacts_verify)

    cfg = sub.add_parser("config", help="config utilities")
    cfg_sub = cfg.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = cfg_sub.add_parser("check", help="validate a YAML config (schema + cross-key checks)")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_config_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``larchain`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BrokenPipeError:  # e.g. `larchain artifacts list | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
