"""Hash-versioned artifacts: ``results/<stage>/<id>/`` with a ``manifest.json``.

An artifact's id is a hash of exactly what determines its content: the config keys the
stage reads, the ids of its upstream artifacts, and the stage's code version. So an
unrelated config change leaves the id (and the directory Snakemake looks for) unchanged,
and reverting a change finds the old directory again: nothing re-runs.

Outputs are written to a temporary name and renamed into place; the manifest, written
last, lists the sha256 of every output. An artifact without a manifest, or whose files do
not match it, is refused by :func:`require` (downstream stages call it on their inputs).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
ID_LENGTH = 16
RESULTS = Path("results")
_PACKAGES = (
    "larchain",
    "torch",
    "numpy",
    "scipy",
    "dask",
    "distributed",
    "xarray",
    "h5py",
    "h5netcdf",
    "snakemake",
)


class ArtifactError(RuntimeError):
    """A missing, incomplete or corrupt artifact."""


def canonical_json(obj: Any) -> bytes:
    """Stable JSON for hashing: sorted keys, no whitespace, ints and floats kept distinct."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def canonical(obj: Any) -> Any:
    """A plain-type deep copy with dict keys sorted and integral floats written as ints, so
    that equal configs (``60`` or ``60.0`` cm) have equal ids and equal ``repr`` (Snakemake
    compares params by their representation)."""

    def norm(x: Any) -> Any:
        if isinstance(x, dict):
            return {str(k): norm(v) for k, v in sorted(x.items())}
        if isinstance(x, list | tuple):
            return [norm(v) for v in x]
        if isinstance(x, float) and x.is_integer() and abs(x) < 2**53:
            return int(x)
        return x

    return norm(json.loads(json.dumps(obj)))


def select(config: Mapping[str, Any], keys: Sequence[str], exclude: Sequence[str] = ()) -> dict:
    """The config subset a stage reads: top-level sections (or dotted keys) minus exclusions."""
    out: dict[str, Any] = {}
    for key in keys:
        node: Any = config
        parts = key.split(".")
        for p in parts:
            node = node[p]
        dst = out
        for p in parts[:-1]:
            dst = dst.setdefault(p, {})
        dst[parts[-1]] = canonical(node)
    for key in exclude:
        parts = key.split(".")
        dst = out
        for p in parts[:-1]:
            dst = dst.get(p, {})
        dst.pop(parts[-1], None)
    return canonical(out)


@dataclass(frozen=True)
class ArtifactSpec:
    """What a stage will produce: its id follows from config subset, upstream ids, code."""

    stage: str
    config: dict[str, Any]
    code_version: str
    upstream: dict[str, str] = field(default_factory=dict)
    root: str = str(RESULTS)

    @property
    def id(self) -> str:
        payload = {
            "stage": self.stage,
            "config": self.config,
            "upstream": self.upstream,
            "code_version": self.code_version,
        }
        return hashlib.sha256(canonical_json(payload)).hexdigest()[:ID_LENGTH]

    @property
    def path(self) -> str:
        return f"{self.root}/{self.stage}/{self.id}"

    def to_dict(self) -> dict[str, Any]:
        return canonical(
            {
                "stage": self.stage,
                "id": self.id,
                "config": self.config,
                "code_version": self.code_version,
                "upstream": dict(self.upstream),
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], root: str = str(RESULTS)) -> ArtifactSpec:
        spec = cls(d["stage"], dict(d["config"]), d["code_version"], dict(d["upstream"]), root)
        if "id" in d and d["id"] != spec.id:
            raise ArtifactError(
                f"artifact spec id {d['id']} does not match its content ({spec.id})"
            )
        return spec


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json_atomic(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def write_manifest(
    spec: ArtifactSpec,
    files: Sequence[str | Path],
    *,
    seed: int | None,
    wall_time_s: float,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Record provenance and the sha256 of every output; written last, atomically."""
    directory = Path(spec.path)
    entries = {}
    for f in files:
        p = Path(f)
        rel = (
            p.relative_to(directory) if p.is_absolute() or str(p).startswith(str(directory)) else p
        )
        full = directory / rel
        entries[str(rel)] = {"sha256": sha256_file(full), "bytes": full.stat().st_size}
    manifest = {
        **spec.to_dict(),
        "seed": seed,
        "wall_time_s": round(wall_time_s, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "packages": package_versions(),
        "argv": sys.argv[:1],
        "files": entries,
        **({"extra": dict(extra)} if extra else {}),
    }
    path = directory / MANIFEST
    write_json_atomic(path, manifest)
    return path


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.exists():
        raise ArtifactError(f"{directory}: no {MANIFEST} (artifact incomplete or not an artifact)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: corrupt manifest ({exc})") from None


def verify(directory: str | Path) -> list[str]:
    """Re-hash every file listed in the manifest; return a list of problems (empty: intact)."""
    directory = Path(directory)
    try:
        manifest = read_manifest(directory)
    except ArtifactError as exc:
        return [str(exc)]
    problems = []
    if directory.name != manifest.get("id"):
        problems.append(
            f"{directory}: directory name differs from manifest id {manifest.get('id')}"
        )
    for rel, info in manifest.get("files", {}).items():
        f = directory / rel
        if not f.exists():
            problems.append(f"{f}: missing")
            continue
        if f.stat().st_size != info["bytes"]:
            problems.append(f"{f}: {f.stat().st_size} bytes, manifest says {info['bytes']}")
            continue
        if sha256_file(f) != info["sha256"]:
            problems.append(f"{f}: sha256 differs from the manifest (modified or corrupt)")
    return problems


def require(directory: str | Path) -> dict[str, Any]:
    """Refuse a missing, incomplete or corrupt upstream artifact with a clear message."""
    problems = verify(directory)
    if problems:
        raise ArtifactError(
            f"refusing upstream artifact {directory}: "
            + "; ".join(problems)
            + ". Delete it and re-run the workflow to rebuild it."
        )
    return read_manifest(directory)


def find_artifacts(root: str | Path = RESULTS) -> list[Path]:
    """Every artifact directory under ``root`` (``<root>/<stage>/<id>``), complete or not."""
    root = Path(root)
    if not root.exists():
        return []
    return sorted(
        d
        for stage in root.iterdir()
        if stage.is_dir()
        for d in stage.iterdir()
        if d.is_dir() and not d.name.startswith(".")
    )


def resolve(ref: str, root: str | Path = RESULTS) -> Path:
    """An artifact directory from a path, an id, or a unique id prefix."""
    p = Path(ref)
    if p.is_dir():
        return p
    matches = [d for d in find_artifacts(root) if d.name.startswith(ref)]
    if not matches:
        raise ArtifactError(f"no artifact matching {ref!r} under {root}/")
    if len(matches) > 1:
        raise ArtifactError(f"{ref!r} is ambiguous: " + ", ".join(str(m) for m in matches))
    return matches[0]
