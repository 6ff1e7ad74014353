"""The ``larchain`` CLI: artifacts list/show/verify and config check, on real files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from larchain import __version__
from larchain.cli import human_size, main
from larchain.core.artifacts import ArtifactSpec, write_manifest

CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"


def make_artifact(
    results: Path,
    stage: str = "lut",
    config: dict | None = None,
    upstream: dict[str, str] | None = None,
    files: dict[str, bytes] | None = None,
) -> Path:
    """A real artifact directory: files on disk plus a manifest written by write_manifest."""
    spec = ArtifactSpec(
        stage,
        config if config is not None else {"lut": {"voxel_size": 7.5, "seed": 1}},
        "v1",
        upstream or {},
        root=str(results),
    )
    directory = Path(spec.path)
    directory.mkdir(parents=True)
    files = files if files is not None else {"lut.h5": b"\x00" * 2048, "sub/meta.txt": b"hello\n"}
    for rel, data in files.items():
        (directory / rel).parent.mkdir(parents=True, exist_ok=True)
        (directory / rel).write_bytes(data)
    write_manifest(spec, list(files), seed=42, wall_time_s=1.25, extra={"note": "test"})
    return directory


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results"


def test_human_size() -> None:
    assert human_size(0) == "0 B"
    assert human_size(1023) == "1023 B"
    assert human_size(1536) == "1.5 KiB"
    assert human_size(3 * 1024**3) == "3.0 GiB"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_no_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "required" in capsys.readouterr().err


def test_list_ok_incomplete_corrupt(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lut = make_artifact(results)
    reco = make_artifact(
        results, stage="reco", config={"reco": {"x": 1}}, upstream={"lut": lut.name}
    )
    incomplete = results / "lut" / "deadbeefdeadbeef"
    incomplete.mkdir()
    (incomplete / "partial.h5").write_bytes(b"abc")
    corrupt = make_artifact(results, config={"lut": {"voxel_size": 5.0}})
    with open(corrupt / "lut.h5", "ab") as f:
        f.write(b"x")

    assert main(["artifacts", "list", "--root", str(results)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["STAGE", "ID", "STATUS"]
    by_id = {line.split()[1]: line for line in lines[1:]}
    assert set(by_id) == {lut.name, reco.name, incomplete.name, corrupt.name}
    assert " ok " in by_id[lut.name]
    assert "INCOMPLETE (no manifest)" in by_id[incomplete.name]
    assert "CORRUPT" in by_id[corrupt.name]
    assert f"lut:{lut.name[:8]}" in by_id[reco.name]
    on_disk = sum(f.stat().st_size for f in lut.rglob("*") if f.is_file())  # incl. manifest
    assert f"  {human_size(on_disk)}  " in by_id[lut.name]
    # sorted by stage: all lut rows before the reco row
    stages = [line.split()[0] for line in lines[1:]]
    assert stages == sorted(stages)

    assert main(["artifacts", "list", "--root", str(results), "--stage", "reco"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [r.split()[1] for r in rows] == [reco.name]


def test_list_empty_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["artifacts", "list", "--root", str(tmp_path / "nothing")]) == 0
    assert "no artifacts" in capsys.readouterr().err


def test_show_summary_and_json(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = make_artifact(results)
    assert main(["artifacts", "show", d.name[:6], "--root", str(results)]) == 0
    out = capsys.readouterr().out
    assert d.name in out
    assert "voxel_size: 7.5" in out
    assert "lut.h5" in out and "sub/meta.txt" in out
    assert "seed:         42" in out
    assert "python" in out

    assert main(["artifacts", "show", str(d), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["id"] == d.name
    assert manifest["config"] == {"lut": {"voxel_size": 7.5, "seed": 1}}


def test_show_unknown_and_incomplete(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_artifact(results)
    assert main(["artifacts", "show", "zzzz", "--root", str(results)]) == 2
    err = capsys.readouterr().err
    assert "no artifact matching 'zzzz'" in err and "Traceback" not in err
    incomplete = results / "lut" / "0000000000000000"
    incomplete.mkdir()
    assert main(["artifacts", "show", str(incomplete)]) == 1
    assert "no manifest.json" in capsys.readouterr().err


def test_verify_intact(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = make_artifact(results)
    assert main(["artifacts", "verify", d.name, "--root", str(results)]) == 0
    assert capsys.readouterr().out.strip() == f"OK {d}"
    assert main(["artifacts", "verify", "--all", "--root", str(results)]) == 0


def _truncate(f: Path) -> None:
    f.write_bytes(f.read_bytes()[:-10])


def _flip_byte(f: Path) -> None:
    data = bytearray(f.read_bytes())
    data[100] ^= 0xFF
    f.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (_truncate, "manifest says 2048"),
        (_flip_byte, "sha256 differs"),
        (Path.unlink, "missing"),
    ],
    ids=["truncated", "same-size-modified", "deleted"],
)
def test_verify_detects_damage(
    results: Path, capsys: pytest.CaptureFixture[str], damage: Callable[[Path], None], expected: str
) -> None:
    good = make_artifact(results, config={"lut": {"voxel_size": 5.0}})
    bad = make_artifact(results)
    size_before = (bad / "lut.h5").stat().st_size
    damage(bad / "lut.h5")
    if damage is _flip_byte:
        assert (bad / "lut.h5").stat().st_size == size_before

    assert main(["artifacts", "verify", bad.name, "--root", str(results)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"FAIL {bad}")
    assert expected in out

    assert main(["artifacts", "verify", "--all", "--root", str(results)]) == 1
    out = capsys.readouterr().out
    assert f"OK {good}" in out and f"FAIL {bad}" in out


def test_verify_usage_errors(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = make_artifact(results)
    assert main(["artifacts", "verify", "--root", str(results)]) == 2
    assert "--all" in capsys.readouterr().err
    assert main(["artifacts", "verify", d.name, "nope", "--root", str(results)]) == 2
    captured = capsys.readouterr()
    assert "no artifact matching 'nope'" in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""  # refs are resolved before anything is verified


def test_config_check_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(CONFIG)]) == 0
    assert capsys.readouterr().out.strip() == f"ok: {CONFIG}"


def test_config_check_bad_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = yaml.safe_load(CONFIG.read_text())
    config["detector"]["size"] = [-1, 60, 120]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    assert main(["config", "check", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "detector.size" in captured.err
    assert len(captured.err.strip().splitlines()) == 1


def test_config_check_missing_and_invalid_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "check", str(tmp_path / "absent.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("detector: [unclosed\n")
    assert main(["config", "check", str(broken)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
