"""The DAG end to end on the tiny test config: artifacts, partial re-runs, determinism,
refusal of damaged artifacts, and the quality gates (lint, format)."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess

import numpy as np
import pytest
import xarray as xr

from larchain.cli import main as cli

from .conftest import BIN, REPO, load_yaml, snakemake, write_yaml

pytestmark = pytest.mark.slow


def jobs_planned(workdir, configfile) -> dict[str, int]:
    """Job counts per rule from a dry run (empty: nothing to do)."""
    out = snakemake(workdir, "-n", configfile=configfile).stdout
    counts: dict[str, int] = {}
    if "Nothing to be done" in out:
        return counts
    table = out.split("Job stats:")[1].split("total")[0]
    for line in table.splitlines()[3:]:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One real run of the workflow on config/test.yaml (2 cores, 2 Dask workers)."""
    wd = tmp_path_factory.mktemp("wf")
    cfg = write_yaml(wd / "test.yaml", load_yaml(REPO / "config" / "test.yaml"))
    snakemake(wd, "--cores", "2", configfile=cfg)
    (art,) = list((wd / "results" / "lut").iterdir())
    return wd, cfg, art


def only(wd, stage):
    (d,) = list((wd / "results" / stage).iterdir())
    return d


def test_run_produces_a_verified_lut_artifact(run):
    wd, _, art = run
    assert (art / "figures" / "visibility_slice.png").stat().st_size > 10_000
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["stage"] == "lut" and manifest["id"] == art.name
    assert manifest["seed"] == 7 and "lut.nc" in manifest["files"]
    assert cli(["artifacts", "verify", "--all", "--root", str(wd / "results")]) == 0
    with xr.open_dataset(art / "lut.nc", engine="h5netcdf") as ds:
        assert ds["visibility"].dims == ("x", "y", "z", "detector")
        assert ds.sizes == {"x": 2, "y": 2, "z": 4, "detector": 2, "xyz": 3}
        assert ds["x"].attrs["units"] == "cm"
        assert list(ds["x"].values) == [5.0, 15.0]
        vis, err = ds["visibility"].values, ds["visibility_error"].values
        assert np.all(vis > 0) and np.all(vis < 1) and np.all(err > 0) and np.all(err < vis)
        assert ds.attrs["photons_per_voxel"] == 200 and ds.attrs["method"] == "nee"
        assert json.loads(ds.attrs["geometry"])["photodetectors"][0]["name"] == "pmt_a"


SIM_RULES = {"simulate": 1, "simulate_control": 1, "simulation_figures": 1}
PARTICLE_RULES = {"particle_train": 1, "particle_infer": 1, "particle_eval": 1}
RECO_RULES = {"reco_train": 1, "reco_infer": 1, "reco_eval": 1, **PARTICLE_RULES}
CALIB_RULES = {"calibrate": 1, "calibration_coverage": 1, "calibration_figures": 1}


def test_rerun_and_partial_reruns(run, tmp_path):
    wd, cfg, art = run
    assert jobs_planned(wd, cfg) == {}
    base = load_yaml(cfg)
    # a figure option: the LUT id is unchanged, only the figure is redone
    fig = copy.deepcopy(base)
    fig["lut"]["figure"] = {"detector": 1, "axis": "y"}
    assert jobs_planned(wd, write_yaml(tmp_path / "fig.yaml", fig)) == {"lut_figure": 1, "all": 1}
    # where the LUT runs is not part of what it is
    dev = copy.deepcopy(base)
    dev["lut"]["device"] = "auto"
    dev["dask"] = {"scheduler_address": None}
    assert jobs_planned(wd, write_yaml(tmp_path / "dev.yaml", dev)) == {}
    # a physics change makes a new LUT, and so a new SIREN and evaluation downstream;
    # reverting finds the old artifacts again
    phys = copy.deepcopy(base)
    phys["optics"]["rayleigh_length"] = 60.0
    planned = jobs_planned(wd, write_yaml(tmp_path / "phys.yaml", phys))
    assert planned == {
        "lut_build": 1, "lut_figure": 1, "siren_train": 1, "siren_eval": 1,
        **SIM_RULES, **RECO_RULES, **CALIB_RULES, "all": 1,
    }
    assert jobs_planned(wd, write_yaml(tmp_path / "revert.yaml", base)) == {}
    # a SIREN hyper-parameter leaves the LUT untouched: only SIREN and what depends on it
    # (the simulation takes its light from the SIREN)
    hyper = copy.deepcopy(base)
    hyper["siren"]["hidden_features"] = 12
    planned = jobs_planned(wd, write_yaml(tmp_path / "hyper.yaml", hyper))
    assert planned == {"siren_train": 1, "siren_eval": 1, **SIM_RULES, **RECO_RULES,
                       **CALIB_RULES, "all": 1}
    # detector physics: new events and control samples; LUT and SIREN untouched
    tpc = copy.deepcopy(base)
    tpc["tpc"]["lifetime"] = 2000.0
    planned = jobs_planned(wd, write_yaml(tmp_path / "tpc.yaml", tpc))
    assert planned == {**SIM_RULES, **RECO_RULES, **CALIB_RULES, "all": 1}
    # the control samples alone: and the calibration that fits them
    ctl = copy.deepcopy(base)
    ctl["control"]["stopping_protons"] = 5
    planned = jobs_planned(wd, write_yaml(tmp_path / "ctl.yaml", ctl))
    assert planned == {"simulate_control": 1, "simulation_figures": 1, **CALIB_RULES, "all": 1}
    # how many events the display shows is not part of the events
    sfig = copy.deepcopy(base)
    sfig["simulation"]["figure"] = {"events": 1}
    planned = jobs_planned(wd, write_yaml(tmp_path / "sfig.yaml", sfig))
    assert planned == {"simulation_figures": 1, "all": 1}
    # reconstruction: training options retrain; inference options re-infer; evaluation
    # options re-evaluate only. Calibration: fit options refit (and redo the toys, which use
    # them); coverage options redo the toys only; figure options the figures only
    for key, value, expected in (
        (("reco", "epochs"), 3, RECO_RULES),
        (("reco", "infer", "score_threshold"), 0.7,
         {"reco_infer": 1, "reco_eval": 1, **PARTICLE_RULES}),
        (("reco", "eval", "point_within"), 2.0, {"reco_eval": 1}),
        (("reco", "device"), "auto", {}),
        (("particles", "epochs", "particles"), 3, PARTICLE_RULES),
        (("particles", "infer", "events_per_shard"), 2,
         {"particle_infer": 1, "particle_eval": 1}),
        (("particles", "eval", "baseline", "eps"), 1.5, {"particle_eval": 1}),
        (("calibration", "adam", "steps"), 3, CALIB_RULES),
        (("calibration", "device"), "auto", {}),
        (("calibration", "coverage", "toys"), 3,
         {"calibration_coverage": 1, "calibration_figures": 1}),
        (("calibration", "figure", "t_bin"), 25.0, {"calibration_figures": 1}),
    ):
        changed = copy.deepcopy(base)
        node = changed
        for k in key[:-1]:
            node = node[k]
        node[key[-1]] = value
        planned = jobs_planned(wd, write_yaml(tmp_path / f"{key[-1]}.yaml", changed))
        assert planned == ({**expected, "all": 1} if expected else {}), key
    # an evaluation option re-runs only the evaluation
    ev = copy.deepcopy(base)
    ev["siren_eval"]["threshold"] = 2e-6
    assert jobs_planned(wd, write_yaml(tmp_path / "ev.yaml", ev)) == {"siren_eval": 1, "all": 1}
    # where SIREN trains is not part of what it is
    sdev = copy.deepcopy(base)
    sdev["siren"]["device"] = "auto"
    assert jobs_planned(wd, write_yaml(tmp_path / "sdev.yaml", sdev)) == {}


def test_siren_artifacts_chain_to_the_lut(run):
    wd, _, lut = run
    siren, ev = only(wd, "siren"), only(wd, "siren_eval")
    m_siren = json.loads((siren / "manifest.json").read_text())
    m_eval = json.loads((ev / "manifest.json").read_text())
    assert m_siren["upstream"] == {"lut": lut.name}
    assert m_eval["upstream"] == {"lut": lut.name, "siren": siren.name}
    assert set(m_siren["files"]) == {"model.safetensors", "model.json", "metrics.csv"}
    assert m_siren["extra"]["parameters"] > 0
    assert json.loads((siren / "model.json").read_text())["hidden_features"] == 8
    metrics = json.loads((ev / "metrics.json").read_text())
    for key in (
        "bias_mean",
        "bias_median",
        "bias_p90",
        "bias_p99",
        "compression",
        "throughput_points_x_detectors_per_s",
        "table_noise_floor_mean",
    ):
        assert key in metrics
    for fig in ("comparison.png", "bias.png", "training.png"):
        assert (ev / "figures" / fig).stat().st_size > 10_000
    assert cli(["artifacts", "verify", "--all", "--root", str(wd / "results")]) == 0


def test_same_config_same_bytes_with_one_or_two_workers(run, tmp_path):
    wd, cfg, art = run
    snakemake(tmp_path, "--cores", "1", configfile=cfg)
    other = tmp_path / "results" / "lut" / art.name
    assert sha256(other / "lut.nc") == sha256(art / "lut.nc")
    siren = only(wd, "siren")
    again = tmp_path / "results" / "siren" / siren.name
    assert sha256(again / "model.safetensors") == sha256(siren / "model.safetensors")
    for stage, pattern in (("simulation", "*.h5"), ("control", "*.h5"), ("reco_infer", "*.h5"),
                           ("particles", "chain.*"), ("particle_infer", "*.h5"),
                           ("calibration", "*.*"), ("calibration_coverage", "toys.json")):
        art_dir = only(wd, stage)
        files = sorted(p.name for p in art_dir.glob(pattern) if p.name != "manifest.json")
        assert files
        for name in files:
            other = tmp_path / "results" / stage / art_dir.name / name
            assert sha256(other) == sha256(art_dir / name), (stage, name)


def test_simulation_artifacts(run):
    """The events and control samples chain to the SIREN and read back as labelled events."""
    from larchain.sim.storage import EventDataset

    wd, _, _ = run
    siren, sim, ctl = only(wd, "siren"), only(wd, "simulation"), only(wd, "control")
    m_sim = json.loads((sim / "manifest.json").read_text())
    m_ctl = json.loads((ctl / "manifest.json").read_text())
    assert m_sim["upstream"] == {"visibility": siren.name}
    assert m_ctl["upstream"] == {"visibility": siren.name}
    assert m_ctl["extra"]["true_tpc"]["lifetime"] == 2600
    events = EventDataset(sim)
    assert len(events) == 6
    raw = events.raw(0)
    assert raw["pe"].shape == (2,) and np.all(raw["pe"] >= 0)
    assert set(raw["voxels"]) >= {"coords", "charge", "semantic", "fragment", "particle"}
    for fig in ("event_display.png", "class_fractions.png", "dedx_residual_range.png",
                "recombination.png"):
        assert (sim / "figures" / fig).stat().st_size > 10_000


def test_reco_artifacts(run):
    """Model, predictions and evaluation chain to the events; metrics name every class and
    hold the baseline next to the network."""
    wd, _, _ = run
    sim, reco = only(wd, "simulation"), only(wd, "reco")
    infer, ev = only(wd, "reco_infer"), only(wd, "reco_eval")
    assert json.loads((reco / "manifest.json").read_text())["upstream"] == {"simulation": sim.name}
    assert json.loads((infer / "manifest.json").read_text())["upstream"] == {
        "reco": reco.name, "simulation": sim.name}
    metrics = json.loads((ev / "metrics.json").read_text())
    for model in ("uresnet", "baseline_pca"):
        assert set(metrics[model]["recall"]) == {
            "shower", "track", "michel", "delta", "low_energy"}
    assert metrics["events"] == json.loads((reco / "split.json").read_text())["holdout"]
    assert metrics["ppn"]["true_points"] > 0
    for fig in ("confusion.png", "prediction_display.png", "point_residuals.png"):
        assert (ev / "figures" / fig).stat().st_size > 10_000


def test_particle_artifacts(run):
    """The particle chain trains on stage 1's training events, reconstructs every event into
    the documented tables, and is scored next to the baseline on the held-out events."""
    from larchain.sim.storage import EventDataset

    wd, _, _ = run
    sim, reco, infer = only(wd, "simulation"), only(wd, "reco"), only(wd, "reco_infer")
    chain, rec, ev = only(wd, "particles"), only(wd, "particle_infer"), only(wd, "particle_eval")
    assert json.loads((chain / "manifest.json").read_text())["upstream"] == {
        "predictions": infer.name, "simulation": sim.name}
    assert json.loads((ev / "manifest.json").read_text())["upstream"] == {
        "reconstruction": rec.name, "predictions": infer.name, "simulation": sim.name}
    events, out = EventDataset(sim), EventDataset(rec, "particles")
    assert len(out) == len(events) == 6
    for i in range(len(events)):
        truth, r = events.raw(i)["voxels"], out.raw(i)
        assert len(r["voxels"]["particle"]) == len(truth["coords"])
        n_part = len(r["particles"]["id"])
        assert set(np.unique(r["voxels"]["particle"])) == set(range(n_part))
        assert set(r["particles"]["interaction"]) == set(range(len(r["interactions"]["id"])))
        assert r["particles"]["start"].shape == (n_part, 3)
        assert np.all(r["particles"]["energy"] >= 0) and np.all(r["particles"]["type"] < 5)
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["events"] == json.loads((reco / "split.json").read_text())["holdout"]
    for model in ("learned", "baseline"):
        for level in ("fragment", "particle", "interaction"):
            assert -1 <= metrics[model][level]["ari"]["mean"] <= 1
    for fig in ("particle_display.png", "pid_confusion.png", "clustering_scores.png"):
        assert (ev / "figures" / fig).stat().st_size > 10_000


def test_calibration_artifacts(run):
    """The fit chains to the control samples and the visibility, reports every free
    parameter with an error and a truth, writes a usable detector config; the coverage
    study holds one fit per toy and the pull summary."""
    import yaml as pyyaml

    from larchain.core.config import check_config

    wd, cfg, _ = run
    ctl, siren = only(wd, "control"), only(wd, "siren")
    cal, cov = only(wd, "calibration"), only(wd, "calibration_coverage")
    upstream = {"control": ctl.name, "visibility": siren.name}
    for art in (cal, cov):
        assert json.loads((art / "manifest.json").read_text())["upstream"] == upstream
    summary = json.loads((cal / "calibration.json").read_text())
    assert summary["events"] == 14
    free = {"lifetime", "box_alpha", "box_beta", "drift_velocity", "light_yield"}
    assert free <= set(summary["parameters"])
    for name in free:
        row = summary["parameters"][name]
        assert row["error"] > 0 and np.isfinite(row["value"]) and row["truth"] is not None
    assert summary["parameters"]["lifetime"]["truth"] == 2600.0
    assert {h["phase"] for h in summary["history"]} == {"adam", "lbfgs", "newton"}
    assert "lifetime" in summary["baselines"]
    tpc = pyyaml.safe_load((cal / "tpc.yaml").read_text())["tpc"]
    assert tpc["lifetime"] == pytest.approx(summary["parameters"]["lifetime"]["value"])
    merged = load_yaml(REPO / "config" / "config.yaml")
    for key, section in load_yaml(cfg).items():
        merged[key] = {**merged.get(key, {}), **section} if isinstance(section, dict) else section
    check_config({**merged, "tpc": tpc})
    toys = json.loads((cov / "toys.json").read_text())
    assert [t["toy"] for t in toys["toys"]] == [0, 1]
    assert toys["summary"]["lifetime"]["n"] == 2
    for fig in ("convergence.png", "pulls.png", "correlation.png", "dqdx_drift_time.png",
                "pe_per_detector.png", "closed_loop.png"):
        assert (cov / "figures" / fig).stat().st_size > 10_000


def test_truncated_lut_is_detected_and_refused_downstream(run, tmp_path):
    wd, cfg, art = run
    copy_wd = tmp_path / "wd"
    shutil.copytree(wd, copy_wd, ignore=shutil.ignore_patterns(".snakemake"))
    snakemake(copy_wd, "--cores", "1", "--touch", configfile=cfg)
    lut = copy_wd / "results" / "lut" / art.name / "lut.nc"
    lut.write_bytes(lut.read_bytes()[:1000])
    assert cli(["artifacts", "verify", "--all", "--root", str(copy_wd / "results")]) == 1
    (copy_wd / "results" / "lut" / art.name / "figures" / "visibility_slice.png").unlink()
    proc = snakemake(copy_wd, "--cores", "1", configfile=cfg, check=False)
    assert proc.returncode != 0
    # whichever downstream job ran first (the figure, SIREN training) refused the LUT
    logs = [p.read_text() for p in (copy_wd / "logs").rglob("*.log")]
    assert any("refusing upstream artifact" in t and "manifest says" in t for t in logs)


def test_report_contains_every_figure_with_its_caption(run):
    wd, cfg, _ = run
    snakemake(wd, "--report", str(wd / "report.html"), configfile=cfg)
    html = (wd / "report.html").read_text(errors="replace")
    for fig in ("visibility_slice.png", "comparison.png", "bias.png", "training.png",
                "event_display.png", "class_fractions.png", "dedx_residual_range.png",
                "recombination.png", "confusion.png", "prediction_display.png",
                "point_residuals.png", "particle_display.png", "pid_confusion.png",
                "clustering_scores.png", "convergence.png", "pulls.png", "correlation.png",
                "dqdx_drift_time.png", "pe_per_detector.png", "closed_loop.png"):
        assert fig in html
    for caption in ("Photon visibility", "relative bias", "SIREN training",
                    "semantic class", "residual range", "Recombination survival",
                    "Coverage study", "Closed loop"):
        assert caption in html


def test_snakemake_lint_is_clean():
    proc = subprocess.run(
        [str(BIN / "snakemake"), "--lint"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_snakefmt_is_clean():
    proc = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_is_clean():
    proc = subprocess.run(
        [str(BIN / "ruff"), "check", "src", "tests", "benchmarks", "workflow/scripts"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
