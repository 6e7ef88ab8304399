"""Registry of named data files: samples shipped in the package and third-party real files.

Real files (experimental STEM images and small reader-coverage files) are not part of the
package. :func:`fetch` finds them in the folder named by ``$AUTOMAT_DATA_DIR`` (layout
``real/…`` and ``formats/…``), checked against their sha256, or else downloads them once with
pooch from their public repositories into a cache (``$AUTOMAT_CACHE_DIR`` or the user cache).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..model import AutomatError

_OPENNCEM = "https://raw.githubusercontent.com/ercius/openNCEM/749ec1a8456f6c84f21021908ad5019b041fb42b/ncempy/data/"
_ATOMAP = ("https://raw.githubusercontent.com/atomap-dev/atomap/68fbd1382f6679fd795162baa8257f3dbf309cfc/"
           "atomap/tests/datasets/")
_TEMUL = ("https://raw.githubusercontent.com/PinkShnack/TEMUL/a65e917b3ebff7bcd22bff879ab7d28b00b81d1e/"
          "publication_examples/PTO_supercrystal_hadjimichael/data/")
_RSCIIO = ("https://raw.githubusercontent.com/hyperspy/rosettasciio/bc254db14cd7d4d23169b11aeb622a0a7eac1fbe/"
           "rsciio/tests/data/tiff/")
_ATTR_ATOMAP = "Atomap (atomap-dev/atomap, atomap/tests/datasets), Nord et al., Adv. Struct. Chem. Imag. 3, 9 (2017)"
_ATTR_NCEM = "openNCEM / ncempy (ercius/openNCEM, ncempy/data), NCEM, Lawrence Berkeley National Laboratory"
_ATTR_TEMUL = ("TEMUL toolkit (PinkShnack/TEMUL, publication_examples/PTO_supercrystal_hadjimichael), "
               "Hadjimichael et al., Nat. Mater. 20, 495 (2021)")
_ATTR_RSCIIO = "RosettaSciIO test data (hyperspy/rosettasciio, rsciio/tests/data/tiff)"


@dataclass(frozen=True)
class Dataset:
    """One registered file: ``path`` relative to the data folder, its sha256 and public URL."""

    name: str
    path: str
    sha256: str
    url: str
    description: str
    attribution: str
    licence: str = "GPL-3.0"
    companions: tuple[str, ...] = ()


_REGISTRY = {d.name: d for d in [
    Dataset("atomap_adf", "real/atomap_test_ADF_cropped.hdf5",
            "18265d654b6e36d0575dcff14aaf0dbdd65236ade92e1383d4a6cd0c70bf0cdb", _ATOMAP + "test_ADF_cropped.hdf5",
            "SrTiO3 ADF-STEM, 400x380, 9.33 pm/px (HyperSpy file, scale stored without unit)", _ATTR_ATOMAP),
    Dataset("atomap_abf", "real/atomap_test_ABF_cropped.hdf5",
            "cc975b58b2179dcb543fccb6796f10b7e24e372614fb63d51e0f782c5a7bc4a6", _ATOMAP + "test_ABF_cropped.hdf5",
            "SrTiO3 ABF-STEM of the same region as atomap_adf (O columns visible), 9.33 pm/px", _ATTR_ATOMAP),
    Dataset("ncem_sto_emi", "real/ncempy_16_STOimage.emi",
            "65e9fe0a08e0d6242bcd0427d47b720b973ef6644617fb814fcbb4d191c2bb68", _OPENNCEM + "16_STOimage.emi",
            "SrTiO3 [001] STEM, 80 kV, 1024x1024, 10.01 pm/px (FEI TIA; data in ncem_sto_ser)", _ATTR_NCEM,
            companions=("ncem_sto_ser",)),
    Dataset("ncem_sto_ser", "real/ncempy_16_STOimage_1.ser",
            "fff04a8cea794061b371c264ec9a65b5efde01d358415c4f782d77fe6c6f67dd", _OPENNCEM + "16_STOimage_1.ser",
            "pixel data of ncem_sto_emi (FEI TIA .ser)", _ATTR_NCEM),
    Dataset("temul_pto_sro", "real/temul_Cropped_PTO-SRO_Aligned.hspy",
            "434f40eb5ddb57b975760950329dece54d49e17576bc9cd82385412a82d0c931", _TEMUL + "Cropped_PTO-SRO_Aligned.hspy",
            "PbTiO3/SrRuO3 HAADF-STEM, 300 kV, drift-aligned, 224x1312, 15.0 pm/px", _ATTR_TEMUL),
    Dataset("temul_pto_positions", "real/temul_PTO_atom_positions1.npy",
            "ca9248cc7b4b7d3393b3be4da0d85f51af55d21f0b5b881f5aa0ac7296501b4f", _TEMUL + "atom_positions1.npy",
            "465 reference column positions (x, y) [px] in temul_pto_sro, found by Atomap", _ATTR_TEMUL),
    Dataset("ncem_dm3", "formats/ncempy_dmTest_float32_nonSquare_diffPixelSize.dm3",
            "8753b2480d6c5189d3a9110e6f0944cd2a5f9bf7d953f35f7739c51be72730f7",
            _OPENNCEM + "dmTest_float32_nonSquare_diffPixelSize.dm3",
            "DigitalMicrograph 3 test ramp 64x128, y 2 Å/px, x 1 nm/px", _ATTR_NCEM),
    Dataset("ncem_dm4", "formats/ncempy_dmTest_float32_nonSquare_diffPixelSize.dm4",
            "340533262146bfb4ce52b53a936a1f4cf10439abd849b8741f03cb8b7d600f6d",
            _OPENNCEM + "dmTest_float32_nonSquare_diffPixelSize.dm4",
            "DigitalMicrograph 4 test ramp 64x128, y 2 Å/px, x 1 nm/px", _ATTR_NCEM),
    Dataset("ncem_velox_emd", "formats/ncempy_STEM_HAADF_Diffraction_Micro.emd",
            "14dafd175da7cf786b2e08c3d527d5a77568857536f9c792d7bd2b79a02ea16a",
            _OPENNCEM + "STEM%20HAADF%20Diffraction%20Micro.emd",
            "Velox EMD, low-magnification HAADF 128x128, 87.4 nm/px", _ATTR_NCEM),
    Dataset("ncem_mrc", "formats/ncempy_temp.mrc",
            "a3ebbbdafd6c417fc02de9ce7a814ca4e6fddd120f1bf50b74ab8bbfe7cba0bd", _OPENNCEM + "temp.mrc",
            "MRC stack 3x128x128 float32, 0.2 nm/px", _ATTR_NCEM),
    Dataset("rsciio_dm_tif", "formats/rsciio_test_loading_image_saved_with_DM.tif",
            "e8d966494793142176f39e0c66fd4911d33d083136178458e08212bae5f029d4",
            _RSCIIO + "test_loading_image_saved_with_DM.tif",
            "TIFF written by DigitalMicrograph, 68x68 int32, 0.1687 µm/px in tags", _ATTR_RSCIIO),
]}

#: Samples shipped inside the package (``napari_automat/data``).
SAMPLES = {
    "srtio3": {"file": "srtio3_001_haadf.tif",
               "description": "simulated HAADF-STEM image of SrTiO3 [001] (calibrated ImageJ TIFF)",
               "attribution": "napari-automat (simulated)", "licence": "BSD-3-Clause"},
}


def data_dir() -> Path | None:
    """The local data folder from ``$AUTOMAT_DATA_DIR``, or None when unset."""
    value = os.environ.get("AUTOMAT_DATA_DIR", "").strip()
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """Where downloaded files are kept: ``$AUTOMAT_CACHE_DIR`` or the user cache."""
    value = os.environ.get("AUTOMAT_CACHE_DIR", "").strip()
    if value:
        return Path(value).expanduser()
    import pooch

    return Path(pooch.os_cache("napari-automat")) / "datasets"


def get_dataset(name: str) -> Dataset:
    """The registry entry called ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise AutomatError(f"unknown dataset '{name}': choose one of {', '.join(_REGISTRY)}") from None


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(name: str) -> Path:
    """Local path of the registered file ``name`` (companion files fetched alongside).

    Uses ``$AUTOMAT_DATA_DIR/<path>`` when present (after checking its sha256), otherwise the
    download cache. Raises :class:`AutomatError` when the file is absent and cannot be downloaded.
    """
    entry = get_dataset(name)
    for companion in entry.companions:
        fetch(companion)
    root = data_dir()
    if root is not None and (root / entry.path).is_file():
        local = root / entry.path
        if sha256_of(local) != entry.sha256:
            raise AutomatError(f"{local} does not match the registered sha256 of dataset '{name}': "
                               "the file is changed or damaged")
        return local
    return _download(entry)


def _download(entry: Dataset) -> Path:
    import pooch

    try:
        return Path(pooch.retrieve(entry.url, known_hash=f"sha256:{entry.sha256}", fname=Path(entry.path).name,
                                   path=cache_dir(), progressbar=False))
    except Exception as exc:
        raise AutomatError(f"dataset '{entry.name}' is not available locally and could not be downloaded "
                           f"({type(exc).__name__}); when offline, set AUTOMAT_DATA_DIR to a folder holding "
                           f"{entry.path}") from None


def sample_path(name: str = "srtio3") -> Path:
    """Path of a sample image shipped with the package."""
    if name not in SAMPLES:
        raise AutomatError(f"unknown sample '{name}': choose one of {', '.join(SAMPLES)}")
    path = Path(__file__).resolve().parent.parent / "data" / SAMPLES[name]["file"]
    if not path.is_file():
        raise AutomatError(f"sample '{name}' is missing from this installation ({path})")
    return path


def list_datasets() -> list[dict]:
    """Every sample and registered file: name, kind, file, description, attribution, licence."""
    out = [{"name": name, "kind": "sample", "file": s["file"], "description": s["description"],
            "attribution": s["attribution"], "licence": s["licence"]} for name, s in SAMPLES.items()]
    out += [{"name": d.name, "kind": d.path.split("/")[0], "file": d.path, "description": d.description,
             "attribution": d.attribution, "licence": d.licence, "url": d.url, "sha256": d.sha256}
            for d in _REGISTRY.values()]
    return out
