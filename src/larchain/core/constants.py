"""Physical constants of liquid argon used by more than one stage, with their sources.

Kept apart from the code that uses them (larnd-sim style) so that a reviewer can check
every number in one place. Units: cm, us, MeV, kV/cm.
"""

#: Rayleigh scattering length of LAr scintillation light at 128 nm [cm].
#: LArSoft default (Grace et al., NIM A 867 (2017) 204; older configs used 55-60 cm).
RAYLEIGH_LENGTH_CM = 99.9

#: Bulk absorption length of 128 nm light in LAr [cm] (LArSoft default, 20 m).
ABSORPTION_LENGTH_CM = 2000.0

#: Refractive index of LAr at 128 nm (Babicz et al., NIM A 936 (2019) 178; LArSoft default).
REFRACTIVE_INDEX_128NM = 1.357

#: Effective detection efficiency of an ICARUS 8-inch PMT with TPB coating (icaruscode).
ICARUS_PMT_EFFICIENCY = 0.121

#: Radius of an 8-inch PMT photocathode [cm] (8 in = 20.32 cm diameter).
PMT_8INCH_RADIUS_CM = 10.16

#: LAr density at 87 K [g/cm^3] (PDG atomic and nuclear properties).
LAR_DENSITY_G_CM3 = 1.396

# --- Charged-particle energy loss in LAr (PDG "Atomic and nuclear properties", argon liquid) ---

#: Atomic number and mass of argon [g/mol].
ARGON_Z = 18
ARGON_A = 39.948
#: Avogadro's number [1/mol] (SI exact).
AVOGADRO = 6.02214076e23
#: Mean excitation energy of argon [MeV] (PDG: 188.0 eV).
ARGON_I_MEV = 188.0e-6
#: Sternheimer density-effect parameters for liquid argon (PDG table; Sternheimer,
#: Berger & Seltzer, At. Data Nucl. Data Tables 30 (1984) 261): -C, x0, x1, a, k, delta0.
STERNHEIMER_LAR = {
    "C": 5.2146, "x0": 0.2000, "x1": 3.0000, "a": 0.19559, "k": 3.0000, "delta0": 0.0
}
#: Radiation length of LAr [cm] (PDG: 19.55 g/cm^2 / 1.396 g/cm^3).
RADIATION_LENGTH_CM = 14.0
#: Moliere radius of LAr [cm] (PDG: 9.043 cm).
MOLIERE_RADIUS_CM = 9.043
#: Critical energy of electrons in LAr [MeV] (PDG, Rossi definition: 32.84 MeV).
CRITICAL_ENERGY_MEV = 32.84
#: Minimum-ionising dE/dx in LAr (PDG): 1.508 MeV cm^2/g = 2.105 MeV/cm.
MIP_DEDX_MEV_CM = 2.105

#: Particle masses [MeV] (PDG 2024).
MASS_MEV = {
    "electron": 0.51099895,
    "muon": 105.6583755,
    "pion": 139.57039,
    "proton": 938.27208816,
    "photon": 0.0,
}
#: Muon lifetime at rest [us] (PDG; mu- capture in argon shortens it to ~0.6 us, ignored).
MUON_LIFETIME_US = 2.1969811

# --- Ionisation, scintillation and recombination (BACKGROUND.md sources) ---

#: Energy per ionisation electron [MeV] (23.6 eV).
W_ION_MEV = 23.6e-6
#: Energy per scintillation photon at zero field [MeV] (19.5 eV): photons = dE/W_ph - electrons.
W_PH_MEV = 19.5e-6
#: Modified box recombination (ArgoNeuT, JINST 8 (2013) P08005): alpha, beta
#: [(kV/cm)(g/cm^2)/MeV].
BOX_ALPHA = 0.93
BOX_BETA = 0.212
#: Birks recombination (ICARUS, NIM A 523 (2004) 275): A_B, k_B [(kV/cm)(g/cm^2)/MeV].
BIRKS_AB = 0.800
BIRKS_KB = 0.0486

# --- Charge transport ---

#: Nominal drift field [kV/cm].
DRIFT_FIELD_KV_CM = 0.5
#: LAr temperature [K].
LAR_TEMPERATURE_K = 87.0
#: Electron lifetime [us] (Module-0 / 2x2: 2.2-2.6 ms; 3 ms default here).
ELECTRON_LIFETIME_US = 3000.0
#: Longitudinal and transverse diffusion coefficients [cm^2/us] (4.0 and 8.8 cm^2/s; larnd-sim).
DIFFUSION_L_CM2_US = 4.0e-6
DIFFUSION_T_CM2_US = 8.8e-6

# --- Electron drift and pixel readout (appended for larchain.sim) ---

#: Electron mobility mu(E, T) = (a0 + a1 E + a2 E^1.5 + a3 E^2.5)
#: / (1 + (a1/a0) E + a4 E^2 + a5 E^3) * (T/T0)^-1.5 [cm^2/(V s), E in kV/cm]: coefficients
#: a0..a5 of Li et al., NIM A 816 (2016) 160 (arXiv:1508.07059; fit to world data incl.
#: Walkowiak, NIM A 449 (2000) 288), as summarised on https://lar.bnl.gov/properties/trans.html
#: and used by larnd-sim (larndsim/consts/detector.py, ELECTRON_MOBILITY_PARAMS).
ELECTRON_MOBILITY_PARAMS = (551.6, 7158.3, 4440.43, 4.29, 43.63, 0.2053)
#: Reference temperature T0 of the mobility's (T/T0)^-1.5 scaling [K] (lar.bnl.gov; larnd-sim).
ELECTRON_MOBILITY_T0_K = 89.0
#: Pixel self-trigger threshold [electrons] (LArPix-v2 DISCRIMINATION_THRESHOLD, larnd-sim
#: larndsim/consts/detector.py).
PIXEL_THRESHOLD_ELECTRONS = 5000.0
#: Uncorrelated pixel noise rms [electrons] (LArPix-v2 UNCORRELATED_NOISE_CHARGE, larnd-sim).
PIXEL_NOISE_ELECTRONS = 500.0
