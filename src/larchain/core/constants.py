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
