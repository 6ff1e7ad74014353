"""Unit conventions. Internal units are cm, us, MeV, kV/cm; multiply by these to convert in."""

cm = 1.0
mm = 0.1
m = 100.0

us = 1.0
ns = 1.0e-3
ms = 1.0e3
s = 1.0e6

MeV = 1.0
keV = 1.0e-3
GeV = 1.0e3
eV = 1.0e-6

kV_per_cm = 1.0
V_per_cm = 1.0e-3
