"""Artifact ids cover exactly what a stage reads; manifests catch damaged files."""

from __future__ import annotations

import copy
import json

import pytest

import larchain.lut
from larchain.core.artifacts import (
    ArtifactError,
    ArtifactSpec,
    atomic_path,
    require,
    select,
    verify,
    write_manifest,
)
from larchain.core.config import load_config

from .conftest import REPO


def lut_id(config: dict) -> str:
    mod = larchain.lut
    return ArtifactSpec(
        "lut", select(config, mod.CONFIG_KEYS, mod.EXCLUDE_KEYS), mod.CODE_VERSION
    ).id


@pytest.fixture
def config() -> dict:
    return load_config(REPO / "config" / "config.yaml")


@pytest.mark.parametrize(
    "path,value",
    [
        (("lut", "device"), "cpu"),
        (("lut", "figure", "detector"), 3),
        (("dask", "scheduler_address"), "tcp://127.0.0.1:8786"),
    ],
)
def test_unrelated_keys_do_not_change_the_lut_id(config, path, value):
    changed = copy.deepcopy(config)
    node = changed
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    assert lut_id(changed) == lut_id(config)


@pytest.mark.parametrize(
    "path,value",
    [
        (("lut", "photons_per_voxel"), 1234),
        (("lut", "seed"), 99),
        (("optics", "rayleigh_length"), 60.0),
        (("detector", "wall_reflectivity"), 0.1),
        (("lut", "method"), "analog"),
    ],
)
def test_read_keys_change_the_lut_id_and_reverting_restores_it(config, path, value):
    changed = copy.deepcopy(config)
    node = changed
    for p in path[:-1]:
        node = node[p]
    old = node[path[-1]]
    node[path[-1]] = value
    assert lut_id(changed) != lut_id(config)
    node[path[-1]] = old
    assert lut_id(changed) == lut_id(config)


def test_code_version_and_upstream_enter_the_id(config):
    sub = select(config, ["lut"])
    base = ArtifactSpec("x", sub, "1")
    assert ArtifactSpec("x", sub, "2").id != base.id
    assert ArtifactSpec("x", sub, "1", upstream={"lut": "abc"}).id != base.id
    assert ArtifactSpec.from_dict(base.to_dict()).id == base.id
    tampered = {**base.to_dict(), "id": "0" * 16}
    with pytest.raises(ArtifactError, match="does not match"):
        ArtifactSpec.from_dict(tampered)


def make_artifact(tmp_path):
    spec = ArtifactSpec("demo", {"a": 1}, "1", root=str(tmp_path / "results"))
    d = tmp_path / "results" / "demo" / spec.id
    d.mkdir(parents=True)
    (d / "data.bin").write_bytes(bytes(range(256)) * 10)
    write_manifest(spec, [d / "data.bin"], seed=3, wall_time_s=1.5)
    return spec, d


def test_manifest_records_provenance(tmp_path):
    spec, d = make_artifact(tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    assert m["id"] == spec.id and m["seed"] == 3 and m["config"] == {"a": 1}
    assert m["files"]["data.bin"]["bytes"] == 2560
    assert "torch" in m["packages"] and "python" in m["packages"]
    assert verify(d) == []
    assert require(d)["id"] == spec.id


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "no_manifest"])
def test_damaged_artifacts_are_refused(tmp_path, damage):
    _, d = make_artifact(tmp_path)
    f = d / "data.bin"
    if damage == "truncate":
        f.write_bytes(f.read_bytes()[:100])
    elif damage == "flip":
        data = bytearray(f.read_bytes())
        data[7] ^= 1
        f.write_bytes(bytes(data))
    elif damage == "delete":
        f.unlink()
    else:
        (d / "manifest.json").unlink()
    assert verify(d)
    with pytest.raises(ArtifactError, match="refusing upstream artifact"):
        require(d)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole"


def test_integral_floats_and_key_order_do_not_change_the_id(config):
    as_ints = copy.deepcopy(config)
    as_ints["detector"]["size"] = [int(s) for s in config["detector"]["size"]]
    reordered = {k: config[k] for k in reversed(list(config))}
    assert lut_id(as_ints) == lut_id(config) == lut_id(reordered)
