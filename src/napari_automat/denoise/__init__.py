"""Denoising: periodic (Bragg) Fourier filter for lattice images, non-local means otherwise."""

from .core import METHODS, choose_method, denoise

__all__ = ["denoise", "choose_method", "METHODS"]
