"""Energies of structures from machine-learned potentials (MatterSim, CHGNet).

``compute_energy`` relaxes a structure and reports energy, forces, stress and the formation
energy against elemental references computed with the same model (cached per model).
Importing this package is cheap: torch, ASE, MatterSim and CHGNet load on first use.
"""

from .backends import get_calculator, resolve_model
from .compute import compute_energy
from .references import build_reference_cache, elemental_references, formation_energy_per_atom

__all__ = ["build_reference_cache", "compute_energy", "elemental_references", "formation_energy_per_atom",
           "get_calculator", "resolve_model"]
