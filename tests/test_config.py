"""Invalid configs fail before any job runs, with a message naming the key."""

from __future__ import annotations

import copy

import pytest

from larchain.core.config import ConfigError, load_config

from .conftest import REPO, load_yaml, snakemake, write_yaml


def _set(path, value):
    def mutate(c):
        node = c
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value

    return mutate


def _delete(path):
    def mutate(c):
        node = c
        for p in path[:-1]:
            node = node[p]
        del node[path[-1]]

    return mutate


# (id, mutation, text the error must contain: the offending key)
CORPUS = [
    ("unknown-top-level-key", _set(("colour",), "blue"), "colour"),
    ("typo-in-lut-key", _set(("lut", "photon_per_voxel"), 10), "photon_per_voxel"),
    ("wrong-type", _set(("lut", "photons_per_voxel"), "many"), "photons_per_voxel"),
    ("negative-length", _set(("detector", "size", 0), -5.0), "size"),
    ("zero-rayleigh-length", _set(("optics", "rayleigh_length"), 0), "rayleigh_length"),
    ("missing-section", _delete(("detector",)), "detector"),
    ("missing-size", _delete(("detector", "size")), "size"),
    ("two-sizes", _set(("detector", "size"), [20.0, 20.0]), "size"),
    (
        "pd-off-wall",
        _set(("detector", "photodetectors", 0, "center", 0), 3.0),
        "detector.photodetectors[0].center",
    ),
    (
        "pd-too-big-for-wall",
        _set(("detector", "photodetectors", 0, "radius"), 30.0),
        "detector.photodetectors[0]",
    ),
    ("bad-wall-name", _set(("detector", "photodetectors", 0, "wall"), "x"), "wall"),
    ("bad-shape", _set(("detector", "photodetectors", 0, "shape"), "hexagon"), "shape"),
    (
        "efficiency-above-one",
        _set(("detector", "photodetectors", 0, "efficiency"), 1.5),
        "efficiency",
    ),
    ("disk-without-radius", _delete(("detector", "photodetectors", 0, "radius")), "radius"),
    ("no-photodetectors", _set(("detector", "photodetectors"), []), "photodetectors"),
    ("duplicate-names", _set(("detector", "photodetectors", 1, "name"), "pmt_a"), "photodetectors"),
    ("voxel-not-dividing", _set(("lut", "voxel_size"), 7.0), "voxel_size"),
    ("negative-voxel", _set(("lut", "voxel_size"), -1.0), "voxel_size"),
    ("unknown-method", _set(("lut", "method"), "magic"), "method"),
    ("zero-block", _set(("lut", "block_voxels"), 0), "block_voxels"),
    ("unknown-device", _set(("lut", "device"), "tpu"), "device"),
    ("reflectivity-above-one", _set(("detector", "wall_reflectivity"), 2.0), "wall_reflectivity"),
    ("negative-seed", _set(("lut", "seed"), -1), "seed"),
    (
        "figure-detector-out-of-range",
        _set(("lut", "figure"), {"detector": 9}),
        "lut.figure.detector",
    ),
    (
        "missing-scheduler-file",
        _set(("dask",), {"scheduler_file": "/nonexistent/s.json"}),
        "dask.scheduler_file",
    ),
    ("negative-lifetime", _set(("tpc", "lifetime"), -3.0), "lifetime"),
    ("unknown-recombination", _set(("tpc", "recombination"), "onsager"), "recombination"),
    ("zero-voxel-pitch", _set(("readout", "voxel_size"), 0.0), "voxel_size"),
    ("energy-range-one-number", _set(("simulation", "cosmics", "energy"), [5.0]), "energy"),
    ("unknown-visibility", _set(("simulation", "visibility"), "magic"), "visibility"),
    ("truth-not-a-tpc-key", _set(("control", "truth"), {"lifetim": 2.0}), "control.truth.lifetim"),
    ("reco-zero-filters", _set(("reco", "filters"), 0), "filters"),
    ("reco-unknown-keep", _set(("reco", "keep"), "best"), "keep"),
    ("reco-negative-lr-final", _set(("reco", "lr_final"), -1e-4), "lr_final"),
    ("reco-threshold-above-one", _set(("reco", "infer"), {"score_threshold": 1.5}),
     "score_threshold"),
    ("truth-negative", _set(("control", "truth"), {"lifetime": -2.0}), "control.truth.lifetime"),
    (
        "scheduler-address-wrong-type",
        _set(("dask",), {"scheduler_address": 8786}),
        "scheduler_address",
    ),
]


def mutated(base, mutate):
    c = copy.deepcopy(base)
    mutate(c)
    return c


def bracket(key: str) -> str:
    """'detector.size' -> "['detector']['size']" (how Snakemake's validate() names keys)."""
    return "".join(f"['{p}']" for p in key.replace("[", ".[").split(".") if p and p[0] != "[")


@pytest.mark.parametrize("name,mutate,key", CORPUS, ids=[c[0] for c in CORPUS])
def test_load_config_names_the_key(tmp_path, test_config, name, mutate, key):
    path = write_yaml(tmp_path / f"{name}.yaml", mutated(test_config, mutate))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert key in str(err.value)
    assert str(path) in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("name,mutate,key", CORPUS, ids=[c[0] for c in CORPUS])
def test_workflow_rejects_before_any_job(tmp_path, test_config, name, mutate, key):
    path = write_yaml(tmp_path / f"{name}.yaml", mutated(test_config, mutate))
    proc = snakemake(tmp_path, "--cores", "1", configfile=path, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    leaf = key.split(".")[-1].split("[")[0]
    assert key in out or bracket(key) in out or f"'{leaf}'" in out or leaf in out, out
    assert "Building DAG of jobs" not in out
    assert not (tmp_path / "results").exists()


def test_shipped_configs_are_valid():
    for name in ("config.yaml", "test.yaml", "icarus.yaml", "paper.yaml"):
        load_config(REPO / "config" / name)


@pytest.mark.slow
def test_paper_configuration_plans_cleanly(tmp_path):
    """`snakemake --configfile config/paper.yaml -n`: the full-scale DAG is valid."""
    proc = snakemake(tmp_path, "-n", configfile=REPO / "config" / "paper.yaml")
    for rule in ("lut_build", "lut_figure", "siren_train", "siren_eval"):
        assert rule in proc.stdout


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("detector: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_defaults_are_filled(tmp_path):
    minimal = {
        "detector": load_yaml(REPO / "config" / "test.yaml")["detector"],
        "optics": {},
        "lut": {"voxel_size": 10.0},
    }
    c = load_config(write_yaml(tmp_path / "min.yaml", minimal))
    assert c["optics"]["rayleigh_length"] == 99.9
    assert c["lut"]["method"] == "nee" and c["lut"]["device"] == "auto"
