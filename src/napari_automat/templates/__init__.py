"""Template structures: sources → zone-axis projections → library file → retrieval."""

from .library import TemplateLibrary, build_library, library_info, load_library
from .projection import Pattern2D, Projection, project, visible_columns
from .retrieve import retrieve

__all__ = ["Pattern2D", "Projection", "TemplateLibrary", "build_library", "library_info", "load_library",
           "project", "retrieve", "visible_columns"]
