"""Image simulation: abTEM STEM (HAADF/ABF/iDPC), the fast incoherent model, acquisition noise.

abTEM, ase and pymatgen are imported inside the functions that need them.
"""

from .abtem_sim import orient_structure, simulate_stem
from .geometry import ProjectedCell, projected_cell
from .incoherent import incoherent_image
from .noise import add_dose_noise, background, drift, scan_jitter

__all__ = ["simulate_stem", "orient_structure", "incoherent_image", "projected_cell", "ProjectedCell",
           "add_dose_noise", "scan_jitter", "drift", "background"]
