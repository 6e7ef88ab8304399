"""napari-automat: STEM images to crystal structures and energies."""
__version__ = "0.1.0"
