"""Template + measured 2D lattice → symmetry-constrained 3D structure; its CIF summary."""

from .build import reconstruct
from .cif import structure_summary

__all__ = ["reconstruct", "structure_summary"]
