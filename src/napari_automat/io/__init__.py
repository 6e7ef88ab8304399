"""Reading micrographs, writing results, and the registry of sample and real data files."""

from .datasets import fetch, list_datasets, sample_path
from .read import (apply_pixel_size, micrograph_from_array, read_micrograph, read_signals, supported_path,
                   validate_image)
from .write import (read_columns_csv, write_cif, write_columns_csv, write_json, write_text_atomic,
                    write_tiff_calibrated)

__all__ = ["apply_pixel_size", "fetch", "list_datasets", "micrograph_from_array", "read_columns_csv",
           "read_micrograph", "read_signals", "sample_path", "supported_path", "validate_image", "write_cif",
           "write_columns_csv", "write_json", "write_text_atomic", "write_tiff_calibrated"]
