"""Atom columns and the 2D lattice: detection, sub-pixel refinement, lattice basis and motif."""

from ..geometry2d import reduce_basis
from .lattice import find_lattice
from .peaks import detect_columns
from .refine import refine_columns
from .review import accept_columns
from .spectrum import fft_basis, lattice_period_from_fft

__all__ = ["detect_columns", "refine_columns", "accept_columns", "find_lattice", "lattice_period_from_fft", "fft_basis",
           "reduce_basis"]
