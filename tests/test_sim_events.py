"""Simulation stage: transport and events against independent truth, files, determinism."""

from __future__ import annotations

import copy
import hashlib

import numpy as np
import pytest
import torch
import yaml

from larchain.core import constants as C
from larchain.core.config import validate_schema
from larchain.sim import rng, storage
from larchain.sim import truth as T
from larchain.sim.build import build_sample, setup_from_config
from larchain.sim.generator import generate_event
from larchain.sim.simulate import simulate_events
from larchain.sim.transport import (
    ELECTRON_DENSITY,
    DepositList,
    Transport,
    TransportSettings,
    klein_nishina_mu,
)
from tests.conftest import REPO
from tests.test_sim_stopping import PDG_MUON, PSTAR_PROTON, RHO

BIG = (400.0, 400.0, 800.0)


def shoot(species: int, energy: float, n: int, size=BIG, start=None, direction=(0, 0, 1.0),
          seed: int = 99, charge: int | None = None, **settings):
    """Transport n identical primaries (one event each) in a LAr box (charge: the species'
    default, mu+ and pi+, unless given)."""
    start = start if start is not None else (size[0] / 2, size[1] / 2, 50.0)
    table = T.TrackTable()
    extra = {} if charge is None else {"charge": np.full(n, charge)}
    rows = table.add(**extra,
        event=np.arange(n), interaction=np.zeros(n, int), species=np.full(n, species),
        process=np.zeros(n), parent=np.full(n, -1), group=np.full(n, -1),
        fragment=np.full(n, -1), semantic=np.zeros(n), primary=np.ones(n, bool),
        key=rng.derive(np.uint64(seed), np.arange(n)), start=np.tile(start, (n, 1)),
        direction=np.tile(direction, (n, 1)), energy=np.full(n, energy), time=np.zeros(n),
    )
    deposits = DepositList.empty()
    Transport(TransportSettings(size=size, **settings)).run(table, rows, deposits)
    return table.as_dict(), deposits.arrays()


def _path_length(tab, dep):
    prim = tab["primary"][dep["row"]]
    return np.bincount(tab["event"][dep["row"]][prim], weights=dep["dx"][prim])


@pytest.mark.parametrize("t_mev", [50.0, 100.0, 200.0])
def test_proton_track_length_is_the_pstar_csda_range(t_mev):
    ref = {t: r for t, _, r in PSTAR_PROTON}[t_mev] / RHO
    tab, dep = shoot(T.PROTON, t_mev, 4)
    np.testing.assert_allclose(_path_length(tab, dep), ref, rtol=0.02)


@pytest.mark.parametrize("t_mev", [100.0, 250.0])
def test_muon_mean_track_length_is_the_pdg_csda_range(t_mev):
    """With explicit delta rays the muon's path fluctuates; its mean is the CSDA range."""
    ref = {t: r for t, _, r in PDG_MUON}[t_mev] / RHO
    tab, dep = shoot(T.MUON, t_mev, 100)
    length = _path_length(tab, dep)
    assert abs(length.mean() - ref) < max(3 * length.std() / 10, 0.0) + 0.02 * ref
    assert length.std() > 0  # deltas make the range straggle


def energy_balance(tab, dep, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per event: (deposited + escaped, primary kinetic energy + decay energy released - rest
    mass of pairs created + rest mass annihilated). Interactions and captures book what they
    take from or give out of rest masses in ``escaped``, so the two must agree."""
    ev = tab["event"]
    deposited = np.bincount(ev[dep["row"]], weights=dep["de"], minlength=n)
    escaped = np.bincount(ev, weights=tab["escaped"], minlength=n)
    proc = tab["process"]
    source = np.bincount(ev, weights=np.where(np.isin(proc, (T.PRIMARY, T.DECAY)),
                                               tab["energy"], 0.0), minlength=n)
    pairs = np.bincount(ev, weights=(proc == T.CONVERSION) & (tab["species"] == T.POSITRON),
                        minlength=n)
    annihilations = np.bincount(ev, weights=proc == T.ANNIHILATION, minlength=n) / 2
    return deposited + escaped, source - 2 * C.MASS_MEV["electron"] * (pairs - annihilations)


def test_energy_is_conserved():
    for species, energy in ((T.ELECTRON, 500.0), (T.MUON, 300.0), (T.PHOTON, 200.0),
                            (T.PION, 150.0)):
        tab, dep = shoot(species, energy, 5, size=(100.0, 100.0, 200.0), seed=species)
        np.testing.assert_allclose(*energy_balance(tab, dep, 5), rtol=1e-9, atol=1e-9)


def test_michel_spectrum():
    """mu+ decay at rest: kinetic energies up to m_mu/2 - m_e, mean total energy 0.7 m_mu/2."""
    tab, _ = shoot(T.MUON, 150.0, 400)
    michel = tab["process"] == T.DECAY
    assert michel.sum() == 400 and np.all(tab["semantic"][michel] == T.MICHEL)
    e_total = tab["energy"][michel] + C.MASS_MEV["electron"]
    w = C.MASS_MEV["muon"] / 2
    assert e_total.max() <= w + 1e-9
    assert abs(e_total.mean() / w - 0.7) < 3 * 0.18 / np.sqrt(400) + 0.005


def test_multiple_scattering_follows_highland():
    """1 GeV muons over one radiation length: projected angle RMS = 13.6/(beta c p)."""
    x0 = C.RADIATION_LENGTH_CM
    size = (400.0, 400.0, 50.0 + x0)
    tab, dep = shoot(T.MUON, 1000.0, 600, size=size, delta_threshold=1e6)
    p = np.sqrt(1000.0 * (1000.0 + 2 * C.MASS_MEV["muon"]))
    beta = p / (1000.0 + C.MASS_MEV["muon"])
    # exit direction from the last two deposits of each muon
    prim = tab["primary"][dep["row"]]
    ev, pos = tab["event"][dep["row"]][prim], dep["pos"][prim]
    order = np.argsort(ev, kind="stable")  # deposits come step by step, all events at once
    ev, pos = ev[order], pos[order]
    last = np.flatnonzero(np.r_[ev[1:] != ev[:-1], True])
    d = pos[last] - pos[last - 1]
    theta_x = np.arctan2(d[:, 0], d[:, 2])
    expected = 13.6 / (beta * p)  # the log term vanishes at x = X0 (beta ~ 1)
    assert abs(theta_x.std() / expected - 1) < 0.1


def test_klein_nishina_total_cross_section():
    """sigma_KN per electron at 1 MeV = 0.2112 b (textbook value, e.g. Evans 1955)."""
    sigma = klein_nishina_mu(np.array([1.0]))[0] / ELECTRON_DENSITY
    assert abs(sigma / 0.2112e-24 - 1) < 0.005


@pytest.mark.parametrize("energy", [0.2, 1.0, 10.0])
def test_compton_sampling_follows_klein_nishina(energy):
    """The sampled scattered-photon energy fraction eps against the Klein-Nishina
    differential cross-section dsigma/deps ~ (1/eps + eps)(1 - eps sin^2(theta)/(1 + eps^2)),
    integrated numerically in ten bins (chi-square); the angle agrees with the kinematics."""
    from scipy.integrate import quad
    from scipy.stats import chi2

    from larchain.sim.transport import ME, _sample_compton

    n = 100_000
    keys = rng.derive(np.arange(n, dtype=np.uint64), 1)
    eps, onecost = _sample_compton(keys, 0, np.full(n, energy))
    k = energy / ME
    eps0 = 1 / (1 + 2 * k)

    def dsigma(e: float) -> float:
        oc = (1 - e) / (k * e)
        return (1 / e + e) * (1 - e * oc * (2 - oc) / (1 + e * e))

    edges = np.linspace(eps0, 1.0, 11)
    p = np.array([quad(dsigma, a, b)[0] for a, b in zip(edges[:-1], edges[1:], strict=True)])
    expected = n * p / p.sum()
    observed = np.histogram(eps, bins=edges)[0]
    assert observed.sum() == n  # every photon accepted within the attempts
    stat = float(((observed - expected) ** 2 / expected).sum())
    assert stat < chi2.ppf(0.999, 9)
    np.testing.assert_allclose(onecost, (1 - eps) / (k * eps), rtol=1e-12)
    # the numbers belong to each photon: sampling a subset gives that subset's values
    sub = np.arange(0, n, 7)
    eps_sub, _ = _sample_compton(keys[sub], 0, np.full(len(sub), energy))
    np.testing.assert_array_equal(eps_sub, eps[sub])


def test_em_shower_depth_and_width():
    """1 GeV electrons: the longitudinal maximum near the PDG t_max = ln(E/Ec) - 0.5 X0; most
    energy within a few Moliere radii (measured value recorded in BENCHMARKS.md)."""
    tab, dep = shoot(T.ELECTRON, 1000.0, 20)
    z = (dep["pos"][:, 2] - 50.0) / C.RADIATION_LENGTH_CM
    h, edges = np.histogram(z, bins=np.arange(0, 30, 1.0), weights=dep["de"])
    t_max = 0.5 * (edges[np.argmax(h)] + edges[np.argmax(h) + 1])
    assert abs(t_max - (np.log(1000.0 / C.CRITICAL_ENERGY_MEV) - 0.5)) <= 1.0
    r = np.hypot(dep["pos"][:, 0] - 200.0, dep["pos"][:, 1] - 200.0)
    order = np.argsort(r)
    cum = np.cumsum(dep["de"][order])
    r90 = r[order][np.searchsorted(cum, 0.9 * cum[-1])] / C.MOLIERE_RADIUS_CM
    assert 0.8 < r90 < 2.0
    assert abs(dep["de"].sum() + tab["escaped"].sum() - 20 * 1000.0) < 1e-6


def _config(**sim):
    with open(REPO / "config" / "test.yaml") as f:
        cfg = yaml.safe_load(f)
    cfg = validate_schema(cfg)
    cfg["detector"]["size"] = [60.0, 60.0, 100.0]
    cfg["detector"]["photodetectors"] = [
        {"wall": "x-", "center": [0.0, 30.0, 50.0], "shape": "disk", "radius": 5.0,
         "efficiency": 0.2}]
    cfg["simulation"].update(sim)
    return cfg


def _make(cfg):
    size = np.asarray(cfg["detector"]["size"])
    return lambda ev, local, out: generate_event(cfg["simulation"], size, cfg["simulation"]["seed"],
                                                 ev, local, out)


def test_event_does_not_depend_on_its_batch():
    cfg = _config()
    setup = setup_from_config(cfg, 0)
    alone = simulate_events(setup, [4], _make(cfg))["events"][0]
    batch = simulate_events(setup, [2, 3, 4, 5], _make(cfg))["events"][2]
    for k, v in alone["voxels"].items():
        np.testing.assert_array_equal(v, batch["voxels"][k])
    for k, v in alone["particles"].items():
        np.testing.assert_array_equal(v, batch["particles"][k])


def test_labels_are_consistent():
    cfg = _config(events=4)
    setup = setup_from_config(cfg, 0)
    events = simulate_events(setup, range(4), _make(cfg))["events"]
    for ev in events:
        vox, part = ev["voxels"], ev["particles"]
        assert len(vox["charge"]) > 0 and np.all(vox["charge"] >= 2000.0 - 5 * 500.0)
        # every voxel's particle exists; its type/primary/interaction agree with the table
        assert vox["particle"].max() < len(part["id"])
        np.testing.assert_array_equal(vox["particle_type"], part["type"][vox["particle"]])
        np.testing.assert_array_equal(vox["primary"], part["primary"][vox["particle"]])
        np.testing.assert_array_equal(vox["interaction"], part["interaction"][vox["particle"]])
        np.testing.assert_array_equal(np.bincount(vox["particle"], minlength=len(part["id"])),
                                      part["n_voxels"])
        # coordinates unique and inside the grid
        assert len(np.unique(vox["coords"], axis=0)) == len(vox["coords"])
        assert vox["coords"].min() >= 0
        # energy bookkeeping: deposits + escaped balance the sources (see transport test)
        assert ev["deposited_energy"] > 0
        # Michel electrons are not primaries; muons that decay have a Michel child
        michel = part["process"] == T.DECAY
        assert not np.any(part["primary"][michel])


def _sha(paths):
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_one_and_two_workers_write_identical_files(tmp_path):
    cfg = _config(events=4, events_per_shard=2)
    out = {}
    for workers in (1, 2):
        d = tmp_path / f"w{workers}"
        build_sample(cfg, "simulation", d, visibility_dir=None, n_detectors=0, threads=workers,
                     dask_cfg={"processes": False})
        out[workers] = _sha(storage.shard_paths(d))
    assert out[1] == out[2] and len(out[1]) == 2


def test_files_read_back_lazily_and_batch(tmp_path):
    cfg = _config(events=3, events_per_shard=2)
    idx = build_sample(cfg, "simulation", tmp_path, visibility_dir=None, n_detectors=0,
                       threads=1, dask_cfg={"processes": False})
    assert idx["samples"]["events"]["events"] == 3
    ds = storage.EventDataset(tmp_path)
    assert len(ds) == 3 and [ds[i]["index"] for i in range(3)] == [0, 1, 2]
    setup = setup_from_config(cfg, 0)
    direct = simulate_events(setup, [2], _make(cfg))["events"][0]
    np.testing.assert_array_equal(ds[2]["coords"].numpy(), direct["voxels"]["coords"])
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2,
                                         collate_fn=storage.collate_sparse)
    batches = list(loader)
    assert sum(len(b["index"]) for b in batches) == 3
    assert batches[0]["coords"].shape[1] == 4
    with pytest.raises(IndexError, match="out of range"):
        ds[3]
    with pytest.raises(FileNotFoundError, match="nope"):
        storage.EventDataset(tmp_path / "nope")


def test_class_fractions_in_documented_range():
    """Default-config physics: every class present; fractions in the ranges documented in
    config/README.md (PILArNet: 37/39/0.7/1.8/22 %)."""
    with open(REPO / "config" / "config.yaml") as f:
        cfg = validate_schema(yaml.safe_load(f))
    setup = setup_from_config(cfg, 0)
    events = simulate_events(setup, range(16), _make(cfg))["events"]
    sem = np.concatenate([e["voxels"]["semantic"] for e in events])
    frac = np.bincount(sem, minlength=5) / len(sem)
    lo = np.array([0.10, 0.25, 0.002, 0.005, 0.01])
    hi = np.array([0.60, 0.80, 0.10, 0.08, 0.30])
    assert np.all(frac > lo) and np.all(frac < hi), frac


def test_control_samples(tmp_path):
    cfg = _config()
    cfg = copy.deepcopy(cfg)
    idx = build_sample(cfg, "control", tmp_path, visibility_dir=None, n_detectors=0, threads=1,
                       dask_cfg={"processes": False})
    assert set(idx["samples"]) == {"crossing_muons", "stopping_muons", "stopping_protons"}
    size = np.asarray(cfg["detector"]["size"])
    cross = storage.EventDataset(tmp_path, "crossing_muons")
    for i in range(len(cross)):
        ev = cross.raw(i)
        p = ev["particles"]
        assert p["start"][0][0] < 1e-3 and abs(p["end"][0][0] - size[0]) < 1e-3
        assert 0 <= ev["interactions"]["time"][0] <= cfg["control"]["t0_max"]
        assert len(ev["deposits"]["de"]) > 0
    for sample in ("stopping_muons", "stopping_protons"):
        ds = storage.EventDataset(tmp_path, sample)
        for i in range(len(ds)):
            ev = ds.raw(i)
            # the primary stops inside: nothing escapes from it
            assert np.all((ev["particles"]["end"][0] > 0) & (ev["particles"]["end"][0] < size))


def test_stepping_kernel_resumes_when_its_buffers_fill():
    """Tiny kernel buffers (a particle that overflows is rolled back and stepped again with
    emptied or bigger buffers) give exactly the deposits and secondaries of large ones."""
    def run(buffer_size):
        table = T.TrackTable()
        n = 6
        rows = table.add(
            event=np.arange(n), interaction=np.zeros(n, int),
            species=np.array([T.MUON, T.ELECTRON, T.PROTON, T.MUON, T.PION, T.ELECTRON]),
            process=np.zeros(n), parent=np.full(n, -1), group=np.full(n, -1),
            fragment=np.full(n, -1), semantic=np.zeros(n), primary=np.ones(n, bool),
            key=rng.derive(np.uint64(3), np.arange(n)),
            start=np.tile((50.0, 50.0, 50.0), (n, 1)), direction=np.tile((0.0, 0.6, 0.8), (n, 1)),
            energy=np.array([400.0, 300, 80, 60, 90, 40]), time=np.zeros(n),
        )
        tr = Transport(TransportSettings(size=(100.0, 100.0, 200.0)))
        tr.buffer_size = buffer_size
        tr.run(table, rows, deposits := DepositList.empty())
        return table.as_dict(), deposits.arrays()

    (tab_a, dep_a), (tab_b, dep_b) = run(None), run(7)
    assert len(dep_a["de"]) > 1000 and len(tab_a["energy"]) > 6
    for k in dep_a:
        np.testing.assert_array_equal(dep_a[k], dep_b[k])
    for k in ("species", "process", "parent", "start", "direction", "energy", "end", "escaped"):
        np.testing.assert_array_equal(tab_a[k], tab_b[k])


def test_kernel_random_numbers_are_those_of_the_rng_module():
    from larchain.sim import stepping

    keys = rng.derive(np.uint64(8), np.arange(50))
    for counter, stream in ((0, 0), (7, 13), (123_456, 2001)):
        want = rng.uniform(keys, counter, stream)
        got = np.array([stepping.uniform(k, counter, stream) for k in keys])
        np.testing.assert_array_equal(got, want)


def test_counter_based_random_numbers():
    """Uniform on (0, 1), uncorrelated across counters and streams, reproducible."""
    keys = rng.derive(np.uint64(5), np.arange(200_000))
    a, b, c = rng.uniform(keys, 3), rng.uniform(keys, 4), rng.uniform(keys, 3, 1)
    assert 0 < a.min() and a.max() < 1
    assert abs(a.mean() - 0.5) < 0.003 and abs(a.var() * 12 - 1) < 0.01
    for other in (b, c):
        assert abs(np.corrcoef(a, other)[0, 1]) < 0.01
    np.testing.assert_array_equal(a, rng.uniform(keys, 3))
    n = rng.normal(keys, 9)
    assert abs(n.mean()) < 0.01 and abs(n.std() - 1) < 0.01
