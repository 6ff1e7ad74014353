"""Transport of charged particles and photons through the LAr volume, in condensed history.

Charged particles (muons, pions, protons, electrons, positrons) take steps of at most
``step`` cm (sub-voxel). The energy lost in a step is exact continuous slowing down: the
kinetic energy after a step of length ``ds`` is the energy whose CSDA range is ``R(T) - ds``
(:mod:`larchain.sim.stopping`), so ranges match the tables whatever the step. Directions
change by multiple Coulomb scattering: a Gaussian angle per step with the Highland width of
that step, its logarithmic term evaluated at one radiation length (it does not add up over
short steps; this keeps the summed variance equal to Highland's at X0). Discrete secondaries:

* muons: delta rays above ``delta_threshold`` (1/T^2 spectrum, thinned by 1 - beta^2 T/Tmax;
  the continuous loss is the *restricted* one, so the mean loss is unchanged);
* electrons and positrons: bremsstrahlung photons above ``brems_threshold`` (complete
  screening spectrum (4/3 - 4/3 y + y^2)/y per radiation length); softer radiation is
  deposited locally, so energy is conserved;
* a stopping mu+ decays to a Michel electron, a stopping pi+ to a 4.1 MeV mu+, a stopping
  positron annihilates into two 511 keV photons; a stopping mu- is captured by a nucleus or
  decays in orbit and a stopping pi- is captured, with final states from Geant4
  (:mod:`larchain.sim.capture`);
* with ``hadron_interactions``, pions and protons interact inelastically with argon nuclei in
  flight (Geant4 cross-sections and final states, :mod:`larchain.sim.hadronic`): the particle
  ends there and its products (protons, pions, photons, electrons) are transported in turn.

Photons fly straight to their next interaction: Compton scattering (Klein-Nishina, sampled
as in Geant4's G4KleinNishinaCompton), pair conversion (unscreened Bethe-Heitler log rise,
capped at the complete-screening value 7/(9 X0)), or photoabsorption below
``photoabsorption_below``. Together these make the EM cascade: the simplified shower model
(X0 = 14 cm, Moliere radius from the multiple scattering of the cascade electrons) whose gaps
between fragments come from photon flights.

The charged-particle steps run in a compiled kernel (:mod:`larchain.sim.stepping`, one
particle at a time); this module drives it and creates the secondaries in numpy.

Particles leaving the active volume are dropped (their energy is recorded as escaped). All
random numbers are hashes of the particle's key and its step (:mod:`larchain.sim.rng`), so an
event is identical however events are batched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from larchain.core import constants as C
from larchain.sim import capture, hadronic, rng, stepping
from larchain.sim import truth as T
from larchain.sim.stopping import RangeTable

ME = C.MASS_MEV["electron"]
#: Bethe-Bloch constant K = 4 pi N_A r_e^2 m_e c^2 [MeV cm^2/mol] (PDG).
K_BETHE = 0.307075
#: Electron density of LAr [1/cm^3].
ELECTRON_DENSITY = C.LAR_DENSITY_G_CM3 * C.AVOGADRO * C.ARGON_Z / C.ARGON_A
#: Classical electron radius [cm].
R_E = 2.8179403262e-13
#: pi+ -> mu+ nu at rest: muon kinetic energy [MeV]; pion lifetime [us].
PION_DECAY_MUON_T = 4.119
PION_LIFETIME_US = 0.026033
_PAIR_FULL = 28.0 / 9.0 * math.log(183.0 * C.ARGON_Z ** (-1.0 / 3.0)) - 2.0 / 27.0

# random-number streams of the photons (the counter is the photon's step number); the
# charged particles' streams (scattering 2000-2001, secondaries 10-18) are in stepping.py
_S_DIR, _S_FLIGHT, _S_PROC, _S_COMPTON = 20, 30, 40, 50


@dataclass(frozen=True)
class TransportSettings:
    """How finely particles are transported (see the module docstring)."""

    size: tuple[float, float, float]
    step: float = 0.15
    delta_threshold: float = 3.0
    brems_threshold: float = 1.0
    low_energy_threshold: float = 2.0
    photon_cut: float = 0.01
    photoabsorption_below: float = 0.08
    electron_cut: float = 1.0e-3
    max_steps: int = 20000
    hadron_interactions: bool = False


@dataclass
class DepositList:
    """Energy deposits of one batch: step midpoints, energy, step length, time, track row."""

    pos: list[np.ndarray]
    de: list[np.ndarray]
    dx: list[np.ndarray]
    time: list[np.ndarray]
    row: list[np.ndarray]

    @classmethod
    def empty(cls) -> DepositList:
        return cls([], [], [], [], [])

    def add(self, pos, de, dx, time, row) -> None:  # noqa: ANN001
        keep = de > 0
        if keep.any():
            self.pos.append(pos[keep])
            self.de.append(de[keep])
            self.dx.append(dx[keep])
            self.time.append(time[keep])
            self.row.append(row[keep])

    def arrays(self) -> dict[str, np.ndarray]:
        if not self.de:
            return {
                "pos": np.zeros((0, 3)), "de": np.zeros(0), "dx": np.zeros(0),
                "time": np.zeros(0), "row": np.zeros(0, np.int64),
            }
        return {
            "pos": np.concatenate(self.pos), "de": np.concatenate(self.de),
            "dx": np.concatenate(self.dx), "time": np.concatenate(self.time),
            "row": np.concatenate(self.row),
        }


def _exit_distance(pos: np.ndarray, d: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Distance along unit direction ``d`` from ``pos`` (inside) to the volume's boundary."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(d > 0, (size - pos) / d, np.where(d < 0, -pos / d, np.inf))
    return np.maximum(t.min(axis=1), 0.0)


def _perpendicular_basis(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to the unit vectors ``d`` and to each other."""
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    use_x = np.abs(dx) < 0.9  # e1 = d x (1,0,0), else d x (0,1,0)
    e1 = np.stack([np.where(use_x, 0.0, -dz), np.where(use_x, dz, 0.0),
                   np.where(use_x, -dy, dx)], axis=1)
    e1 /= np.sqrt((e1 * e1).sum(axis=1, keepdims=True))
    a, b, c = e1[:, 0], e1[:, 1], e1[:, 2]
    e2 = np.stack([dy * c - dz * b, dz * a - dx * c, dx * b - dy * a], axis=1)
    return e1, e2


def rotate(d: np.ndarray, cos_t: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Directions turned by polar angle acos(cos_t) and azimuth phi about ``d``."""
    e1, e2 = _perpendicular_basis(d)
    sin_t = np.sqrt(np.clip(1.0 - cos_t**2, 0.0, None))
    out = cos_t[:, None] * d + sin_t[:, None] * (
        np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2
    )
    return out / np.sqrt((out * out).sum(axis=1, keepdims=True))


def isotropic(keys: np.ndarray, counter: int | np.ndarray, stream: int) -> np.ndarray:
    cos_t = 2.0 * rng.uniform(keys, counter, stream) - 1.0
    phi = 2.0 * np.pi * rng.uniform(keys, counter, stream + 1)
    s = np.sqrt(1.0 - cos_t**2)
    return np.stack([s * np.cos(phi), s * np.sin(phi), cos_t], axis=1)


def klein_nishina_mu(e: np.ndarray) -> np.ndarray:
    """Compton attenuation coefficient [1/cm]: Klein-Nishina cross-section x electron density."""
    k = np.maximum(e, 1e-6) / ME
    l2 = np.log1p(2 * k)
    sigma = (
        2 * np.pi * R_E**2
        * ((1 + k) / k**2 * (2 * (1 + k) / (1 + 2 * k) - l2 / k) + l2 / (2 * k)
           - (1 + 3 * k) / (1 + 2 * k) ** 2)
    )
    return sigma * ELECTRON_DENSITY


def pair_mu(e: np.ndarray) -> np.ndarray:
    """Pair-production attenuation coefficient [1/cm] (see module docstring)."""
    g = (28.0 / 9.0 * np.log(np.maximum(2 * e / ME, 1.0)) - 218.0 / 27.0) / _PAIR_FULL
    return 7.0 / (9.0 * C.RADIATION_LENGTH_CM) * np.clip(g, 0.0, 1.0) * (e > 2 * ME)


def _sample_compton(keys: np.ndarray, n: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, ...]:
    """Scattered-photon energy fraction eps and 1 - cos(theta), Klein-Nishina (Kahn's
    rejection method). Each attempt draws only for the photons still rejected: the numbers are
    hashed per photon and attempt, so the result does not depend on who else is sampled."""
    k = e / ME
    eps0 = 1.0 / (1.0 + 2.0 * k)
    a1 = -np.log(eps0)
    a2 = 0.5 * (1.0 - eps0**2)
    eps = np.ones_like(e)
    onecost = np.zeros_like(e)
    todo = np.arange(len(e))
    for attempt in range(64):
        if not len(todo):
            break
        s = _S_COMPTON + 4 * attempt
        kt = keys[todo]
        nt = n[todo] if np.ndim(n) else n
        u1, u2, u3 = (rng.uniform(kt, nt, s + i) for i in range(3))
        e0, b1, b2 = eps0[todo], a1[todo], a2[todo]
        first = u1 < b1 / (b1 + b2)
        eps_try = np.where(first, np.exp(-b1 * u2), np.sqrt(e0**2 + (1 - e0**2) * u2))
        oc = (1.0 - eps_try) / (k[todo] * eps_try)
        sint2 = oc * (2.0 - oc)
        ok = 1.0 - eps_try * sint2 / (1.0 + eps_try**2) >= u3
        eps[todo[ok]] = eps_try[ok]
        onecost[todo[ok]] = oc[ok]
        todo = todo[~ok]
    return eps, onecost


class _StepTables:
    """All charged species' CSDA tables stacked ``[species, n]`` on their shared log-spaced
    energy grid: what the compiled stepping kernel interpolates."""

    def __init__(self) -> None:
        tables = [RangeTable.for_particle(T.STOPPING_NAME.get(s, "electron"))
                  for s in range(len(T.SPECIES))]
        lt = tables[0]._lt
        for t in tables:
            if not np.array_equal(t._lt, lt):
                raise RuntimeError("range tables must share one energy grid")
        self.lt = lt
        self.n = len(lt)
        self.lt0 = lt[0]
        self.inv_dlt = (self.n - 1) / (lt[-1] - lt[0])
        self.lr = np.ascontiguousarray(np.stack([t._lr for t in tables]))  # [species, n]
        self.mass = np.array([C.MASS_MEV["photon"], ME, ME, C.MASS_MEV["muon"],
                              C.MASS_MEV["pion"], C.MASS_MEV["proton"]])

    def range_cm(self, species: np.ndarray, t: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            lt = np.log(t)
        lt = np.where(t > 0, lt, self.lt0)
        i = np.clip(((lt - self.lt0) * self.inv_dlt).astype(np.int64) + 1, 1, self.n - 1)
        base = species * self.n
        x0, x1 = self.lt[i - 1], self.lt[i]
        y0, y1 = self.lr.ravel()[base + i - 1], self.lr.ravel()[base + i]
        r = np.exp(y0 + (lt - x0) * ((y1 - y0) / (x1 - x0)))
        return np.where(t > 0, r, 0.0)


class Transport:
    """Transports every object of a :class:`TrackTable`, generation by generation."""

    #: Initial deposit/secondary buffer of the stepping kernel (None: from the ranges); the
    #: kernel resumes with emptied (or bigger) buffers when one fills, so it never matters.
    buffer_size: int | None = None

    def __init__(self, settings: TransportSettings) -> None:
        self.s = settings
        self.size = np.asarray(settings.size, dtype=np.float64)
        self.tables = _StepTables()
        pref = 0.5 * K_BETHE * C.ARGON_Z / C.ARGON_A * C.LAR_DENSITY_G_CM3
        self._consts = np.array([
            settings.step, settings.delta_threshold, settings.brems_threshold,
            settings.electron_cut, settings.max_steps, C.RADIATION_LENGTH_CM, pref, ME,
            C.MASS_MEV["muon"]], dtype=np.float64)
        self.hadrons = hadronic.tables()
        self._h_lt = np.ascontiguousarray(self.hadrons.log_energies)
        self._h_mu = self.hadrons.inverse_mfp(settings.hadron_interactions)
        self.captures = capture.tables()

    # ------------------------------------------------------------------ driver
    def run(self, table: T.TrackTable, rows: np.ndarray, deposits: DepositList) -> None:
        """Transport ``rows`` and, recursively, every secondary they create."""
        pending = np.asarray(rows, dtype=np.int64)
        while len(pending):
            sp = table["species"][pending]
            photons = pending[sp == T.PHOTON]
            charged = pending[sp != T.PHOTON]
            created = []
            if len(photons):
                created.append(self.photons(table, photons, deposits))
            if len(charged):
                created.append(self.charged(table, charged, deposits))
            pending = np.concatenate(created) if created else np.zeros(0, np.int64)

    def _children(self, table: T.TrackTable, parent: np.ndarray, species: np.ndarray,
                  process: int, pos: np.ndarray, direction: np.ndarray, energy: np.ndarray,
                  time: np.ndarray, keys: np.ndarray, new_group: bool, semantic: np.ndarray,
                  fragment: np.ndarray | None = None, charge: np.ndarray | None = None
                  ) -> np.ndarray:
        if len(parent) == 0:
            return np.zeros(0, np.int64)
        signed = {} if charge is None else {"charge": charge}  # else: the species' default
        return table.add(
            **signed, event=table["event"][parent], interaction=table["interaction"][parent],
            species=species, process=np.full(len(parent), process), parent=parent,
            group=np.full(len(parent), -1) if new_group else table["group"][parent],
            fragment=np.full(len(parent), -1) if fragment is None else fragment,
            semantic=semantic, primary=np.zeros(len(parent), bool), key=keys, start=pos,
            direction=direction, energy=energy, time=time,
        )

    # ---------------------------------------------------------------- charged
    def charged(self, table: T.TrackTable, rows: np.ndarray, deposits: DepositList) -> np.ndarray:
        """Step ``rows`` to their end (compiled kernel, :mod:`larchain.sim.stepping`), then
        create their secondaries: delta rays, bremsstrahlung photons and decay products."""
        s = self.s
        species = table["species"][rows].astype(np.int64)
        charge = table["charge"][rows].astype(np.int64)
        h_row = np.ascontiguousarray(hadronic.table_rows(species, charge))
        pos = np.ascontiguousarray(table["start"][rows], dtype=np.float64)
        d = np.ascontiguousarray(table["direction"][rows], dtype=np.float64)
        keys = np.ascontiguousarray(table["key"][rows], dtype=np.uint64)
        t = table["time"][rows]
        n = len(rows)
        tb = self.tables
        end = np.empty((n, 3))
        escaped = np.empty(n)
        stopped = np.empty(n, dtype=np.bool_)
        parts: list[tuple[np.ndarray, ...]] = []
        energy = np.ascontiguousarray(table["energy"][rows], dtype=np.float64)
        cap = self.buffer_size or max(4096, int(tb.range_cm(species, energy).sum() / s.step) + n)
        first = 0
        while first < n:
            buf = (np.empty((cap, 3)), np.empty(cap), np.empty(cap), np.empty(cap, np.int64),
                   np.empty(cap, np.int64), np.empty(cap, np.int8), np.empty(cap, np.int64),
                   np.empty((cap, 3)), np.empty((cap, 3)), np.empty(cap))
            nxt, n_dep, n_sec = stepping.step_charged(
                species, pos, d, energy, keys, tb.lt, tb.lr, tb.mass, self.size, self._consts,
                self._h_lt, self._h_mu, h_row, *buf, end, escaped, stopped, first)
            if nxt < 0:
                raise RuntimeError(f"transport did not finish in {s.max_steps} steps")
            if nxt == first:  # not even one particle fitted: bigger buffers
                cap *= 4
                continue
            parts.append(tuple(a[:n_dep] for a in buf[:4]) + tuple(a[:n_sec] for a in buf[4:]))
            first = nxt
        dep_pos, de, dx, dep_i, sec_i, kind, step_n, sec_pos, sec_dir, sec_e = (
            np.concatenate([q[j] for q in parts]) for j in range(10))
        deposits.add(dep_pos, de, dx, t[dep_i], rows[dep_i])
        table.set("end", rows, end)
        table.set("escaped", rows, escaped)
        created = []
        dl = np.flatnonzero(kind == stepping.DELTA)
        if len(dl):
            j = sec_i[dl]
            created.append(self._children(
                table, rows[j], np.full(len(j), T.ELECTRON), T.DELTA_RAY, sec_pos[dl],
                sec_dir[dl], sec_e[dl], t[j], rng.derive(keys[j], step_n[dl], 1), True,
                np.full(len(j), T.DELTA)))
        br = np.flatnonzero(kind == stepping.BREMS)
        if len(br):
            j = sec_i[br]
            created.append(self._children(
                table, rows[j], np.full(len(j), T.PHOTON), T.BREMS, sec_pos[br], sec_dir[br],
                sec_e[br], t[j], rng.derive(keys[j], step_n[br], 2), False,
                table["semantic"][rows[j]]))
        hd = np.flatnonzero(kind == stepping.HADRONIC)
        if len(hd):
            j = sec_i[hd]
            created.append(self._hadronic(table, rows[j], h_row[j], sec_pos[hd], sec_dir[hd],
                                          sec_e[hd], t[j], keys[j], step_n[hd], deposits))
        stop = np.flatnonzero(stopped)
        created.append(self._at_rest(table, rows[stop], species[stop], charge[stop], end[stop],
                                     t[stop], keys[stop], deposits))
        return np.concatenate(created) if created else np.zeros(0, np.int64)

    def _hadronic(self, table: T.TrackTable, rows: np.ndarray, h_row: np.ndarray,
                  pos: np.ndarray, d: np.ndarray, t_kin: np.ndarray, time: np.ndarray,
                  keys: np.ndarray, step_n: np.ndarray, deposits: DepositList) -> np.ndarray:
        """Inelastic interactions at ``pos``: each product is a new particle (not primary) of
        the same interaction; nuclear fragments deposit on the spot; the rest of the energy
        (neutrons, binding, less a released pion mass) is the parent's ``escaped``."""
        owner, sp, q, energy, local_dir, local = self.hadrons.sample(h_row, t_kin, keys, step_n)
        deposits.add(pos, local, np.full(len(rows), self.s.step), time, rows)
        given = np.bincount(owner, weights=energy, minlength=len(rows)) + local
        table.set("escaped", rows, t_kin - given)
        if not len(owner):
            return np.zeros(0, np.int64)
        direction = rotate(d[owner], local_dir[:, 2], np.arctan2(local_dir[:, 1], local_dir[:, 0]))
        rank = np.arange(len(owner)) - np.searchsorted(owner, owner)
        semantic = np.where(np.isin(sp, (T.PION, T.PROTON)), T.TRACK, T.SHOWER).astype(np.int8)
        return self._children(
            table, rows[owner], sp, T.HADRONIC, pos[owner], direction, energy, time[owner],
            rng.derive(keys[owner], step_n[owner], 3 * 10**6 + rank), True, semantic, charge=q)

    def _at_rest(self, table, rows, species, charge, pos, t, keys, deposits):  # noqa: ANN001, ANN202
        out = []
        mu = (species == T.MUON) & (charge > 0)
        if mu.any():
            k = keys[mu]
            # Michel spectrum of mu+ decay at rest: x^2 (3 - 2x), x = E / (m_mu / 2)
            x = np.ones(mu.sum())
            todo = np.ones(mu.sum(), bool)
            for a in range(64):
                xt = rng.uniform(k, 10**6 + a, 0) ** (1.0 / 3.0)
                ok = todo & (3.0 * rng.uniform(k, 10**6 + a, 1) < 3.0 - 2.0 * xt)
                x = np.where(ok, xt, x)
                todo &= ~ok
                if not todo.any():
                    break
            e_kin = np.maximum(x * C.MASS_MEV["muon"] / 2.0 - ME, 0.0)
            dt = -C.MUON_LIFETIME_US * np.log(rng.uniform(k, 10**6, 2))
            out.append(self._children(
                table, rows[mu], np.full(mu.sum(), T.ELECTRON), T.DECAY, pos[mu],
                isotropic(k, 10**6, 3), e_kin, t[mu] + dt, rng.derive(k, 10**6, 3), True,
                np.full(mu.sum(), T.MICHEL),
            ))
        pi = (species == T.PION) & (charge > 0)
        if pi.any():
            k = keys[pi]
            dt = -PION_LIFETIME_US * np.log(rng.uniform(k, 10**6, 4))
            out.append(self._children(
                table, rows[pi], np.full(pi.sum(), T.MUON), T.DECAY, pos[pi],
                isotropic(k, 10**6, 5), np.full(pi.sum(), PION_DECAY_MUON_T), t[pi] + dt,
                rng.derive(k, 10**6, 4), True, np.full(pi.sum(), T.TRACK),
                charge=np.ones(pi.sum(), np.int8),
            ))
        captured = np.isin(species, (T.MUON, T.PION)) & (charge < 0)
        if captured.any():
            out.append(self._captures(table, rows[captured], species[captured], pos[captured],
                                      t[captured], keys[captured], deposits))
        ep = species == T.POSITRON
        if ep.any():
            k = keys[ep]
            d1 = isotropic(k, 10**6, 6)
            both_rows = np.concatenate([rows[ep], rows[ep]])
            out.append(self._children(
                table, both_rows, np.full(len(both_rows), T.PHOTON), T.ANNIHILATION,
                np.concatenate([pos[ep], pos[ep]]), np.concatenate([d1, -d1]),
                np.full(len(both_rows), ME), np.concatenate([t[ep], t[ep]]),
                np.concatenate([rng.derive(k, 10**6, 5), rng.derive(k, 10**6, 6)]), False,
                table["semantic"][both_rows],
            ))
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def _captures(self, table: T.TrackTable, rows: np.ndarray, species: np.ndarray,
                  pos: np.ndarray, t: np.ndarray, keys: np.ndarray,
                  deposits: DepositList) -> np.ndarray:
        """Stopped mu- and pi- (:mod:`larchain.sim.capture`): each product is a new particle
        of the same interaction, starting after the final state's delay. A mu- decay in orbit
        makes a Michel electron (process ``decay``); capture products (process ``capture``)
        are tracks (protons, pions) or low-energy activity (de-excitation photons, electrons).
        Fragments and soft X-rays deposit on the spot.

        Energy: as for a pion absorbed in flight (:meth:`_hadronic`), what the capture gives
        to fragments and products comes out of the rest mass, so it is booked as negative
        ``escaped`` of the stopped particle; a decay electron counts as a decay product."""
        which = np.where(species == T.MUON, capture.MU_MINUS, capture.PI_MINUS)
        fs = self.captures.sample(which, keys)
        deposits.add(pos, fs["local"], np.full(len(rows), self.s.step), t + fs["delay"], rows)
        owner, sp = fs["owner"], fs["species"]
        # the decay electron of a decay in orbit: its final state's most energetic electron
        electron = fs["decay_in_orbit"][owner] & (sp == T.ELECTRON)
        top = np.full(len(rows), -1.0)
        np.maximum.at(top, owner[electron], fs["energy"][electron])
        dio = electron & (fs["energy"] == top[owner])
        given = np.bincount(owner[~dio], weights=fs["energy"][~dio], minlength=len(rows))
        table.set("escaped", rows, -(fs["local"] + given))
        if not len(owner):
            return np.zeros(0, np.int64)
        track = np.isin(sp, (T.PION, T.PROTON))
        semantic = np.where(dio, T.MICHEL, np.where(track, T.TRACK, T.LOW_ENERGY)).astype(np.int8)
        rank = np.arange(len(owner)) - np.searchsorted(owner, owner)
        kids = []
        for process, sel in ((T.DECAY, dio), (T.CAPTURE, ~dio)):
            o = owner[sel]
            kids.append(self._children(
                table, rows[o], sp[sel], process, pos[o], fs["direction"][sel],
                fs["energy"][sel], t[o] + fs["delay"][o],
                rng.derive(keys[o], capture.AT_REST_COUNTER, 7 * 10**6 + rank[sel]), True,
                semantic[sel], charge=fs["charge"][sel]))
        return np.concatenate(kids)

    # ---------------------------------------------------------------- photons
    def photons(self, table: T.TrackTable, rows: np.ndarray, deposits: DepositList) -> np.ndarray:
        s = self.s
        row = rows.copy()
        pos = table["start"][rows].copy()
        d = table["direction"][rows].copy()
        e = table["energy"][rows].copy()
        t = table["time"][rows].copy()
        keys = table["key"][rows].copy()
        created: list[np.ndarray] = []
        for n in range(s.max_steps):
            if len(row) == 0:
                break
            mu_c = klein_nishina_mu(e)
            mu_p = pair_mu(e)
            mu_t = mu_c + mu_p
            flight = -np.log(rng.uniform(keys, n, _S_FLIGHT)) / mu_t
            exit_d = _exit_distance(pos, d, self.size)
            escape = flight >= exit_d
            pos = pos + np.minimum(flight, exit_d)[:, None] * d
            absorb = ~escape & ((e < s.photoabsorption_below) | (e < s.photon_cut))
            pair = ~escape & ~absorb & (rng.uniform(keys, n, _S_PROC) * mu_t < mu_p)
            compton = ~escape & ~absorb & ~pair
            # photoabsorption: an electron takes the photon's energy
            a = np.flatnonzero(absorb)
            if len(a):
                created.append(self._photo_electrons(
                    table, row[a], T.PHOTOELECTRIC, pos[a], isotropic(keys[a], n, _S_DIR),
                    e[a], t[a], rng.derive(keys[a], n, 7)))
            # pair conversion: electron and positron share one fragment
            p = np.flatnonzero(pair)
            if len(p):
                kin = e[p] - 2 * ME
                split = rng.uniform(keys[p], n, _S_PROC + 1)
                el = self._photo_electrons(
                    table, row[p], T.CONVERSION, pos[p], d[p].copy(), split * kin, t[p],
                    rng.derive(keys[p], n, 8), species=T.ELECTRON)
                po = self._photo_electrons(
                    table, row[p], T.CONVERSION, pos[p], d[p].copy(), (1 - split) * kin, t[p],
                    rng.derive(keys[p], n, 9), species=T.POSITRON, fragment=el,
                    fragment_energy=kin)
                table.set("semantic", el, table["semantic"][po])
                created += [el, po]
            # Compton scattering: the photon goes on with less energy
            c = np.flatnonzero(compton)
            if len(c):
                eps, onecost = _sample_compton(keys[c], n, e[c])
                phi = 2 * np.pi * rng.uniform(keys[c], n, _S_DIR + 2)
                new_d = rotate(d[c], 1.0 - onecost, phi)
                e_new = eps * e[c]
                p_el = e[c, None] * d[c] - e_new[:, None] * new_d
                norm = np.linalg.norm(p_el, axis=1, keepdims=True)
                el_d = np.where(norm > 0, p_el / np.maximum(norm, 1e-300), d[c])
                created.append(self._photo_electrons(
                    table, row[c], T.COMPTON, pos[c], el_d, e[c] - e_new, t[c],
                    rng.derive(keys[c], n, 10)))
                d[c] = new_d
                e[c] = e_new
            done = escape | absorb | pair
            if done.any():
                table.set("end", row[done], pos[done])
                table.set("escaped", row[done], np.where(escape[done], e[done], 0.0))
                keep = ~done
                row, pos, d, e, t, keys = (a[keep] for a in (row, pos, d, e, t, keys))
        else:
            raise RuntimeError(f"photon transport did not finish in {s.max_steps} steps")
        return np.concatenate(created) if created else np.zeros(0, np.int64)

    def _photo_electrons(self, table, parent, process, pos, d, energy, t, keys,  # noqa: ANN001, ANN202
                         species=T.ELECTRON, fragment=None, fragment_energy=None):
        """Electrons set in motion by photons start a new fragment; a soft one (below
        ``low_energy_threshold``) is a low-energy scatter unless it belongs to a Michel."""
        root_sem = table["semantic"][parent]
        frag_e = energy if fragment_energy is None else fragment_energy
        sem = np.where((frag_e < self.s.low_energy_threshold) & (root_sem != T.MICHEL),
                       T.LOW_ENERGY, root_sem).astype(np.int8)
        return self._children(
            table, parent, np.full(len(parent), species), process, pos, d, energy, t, keys,
            False, sem, fragment=table["fragment"][fragment] if fragment is not None else None,
        )
