"""Read micrographs from microscope files into :class:`~napari_automat.model.Micrograph`.

Formats: DigitalMicrograph (dm3, dm4), EMD (Velox and Berkeley), FEI TIA (ser/emi), MRC, TIFF
(DigitalMicrograph, FEI and ImageJ calibration tags), HyperSpy (hspy, hdf5) through rosettasciio,
MATLAB .mat files as StatSTEM and QEM save them (:mod:`.matlab`) and plain png/jpg (uncalibrated). The pixel size is returned in Å per pixel as ``(y, x)``.

Calibration rules (``Micrograph.calibrated``):

* a length unit read from the file (pm, Å, nm, µm, m and spellings such as ``n_m``,
  ``nanometers``, ``micron``) is converted to Å; anisotropic scales are kept;
* a scale stored without any unit (HyperSpy files often leave units unset) is read as nm when it
  lies in 0.001–0.5 on both axes: an atomic-resolution image has 0.05–5 Å/px, so the same number
  read as Å or µm would mean an impossible or a non-atomic image. ``metadata['calibration_note']``
  says so;
* anything else (no scale, unit-less scale outside that range, pixel or print units such as
  inch/cm from ordinary image software, unknown units) gives ``pixel_size_A = (1, 1)`` and
  ``calibrated = False``: the user must set it (:func:`apply_pixel_size`).
"""

from __future__ import annotations

import glob
import logging
import math
import re
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import numpy as np

from ..model import AutomatError, Cancelled, Micrograph, Progress, no_progress

#: rosettasciio plugin module for each extension.
RSCIIO_PLUGINS = {
    "dm3": "digitalmicrograph", "dm4": "digitalmicrograph", "emd": "emd", "ser": "tia", "emi": "tia",
    "mrc": "mrc", "tif": "tiff", "tiff": "tiff", "hspy": "hspy", "hdf5": "hspy",
}
#: Plain image formats read without calibration.
PLAIN_IMAGE_EXTENSIONS = ("png", "jpg", "jpeg")
SUPPORTED_EXTENSIONS = tuple(sorted(RSCIIO_PLUGINS)) + ("mat",) + PLAIN_IMAGE_EXTENSIONS
#: Smallest accepted image side [px].
MIN_SIZE_PX = 16
#: Unit-less scales in this range are read as nm (see module docstring).
INFERRED_NM_RANGE = (0.001, 0.5)

_A_PER_UNIT = {
    "pm": 0.01, "picometer": 0.01, "picometre": 0.01,
    "a": 1.0, "ang": 1.0, "angstrom": 1.0, "angstroem": 1.0,
    "nm": 10.0, "nanometer": 10.0, "nanometre": 10.0,
    "um": 1e4, "micron": 1e4, "micrometer": 1e4, "micrometre": 1e4,
    "m": 1e10, "meter": 1e10, "metre": 1e10,
}
_PRINT_UNITS = {"mm", "cm", "in", "inch", "millimeter", "millimetre", "centimeter", "centimetre",
                "px", "pixel", "pix"}
_NO_UNIT = {"", "undefined", "<undefined>", "none", "unknown", "au", "arb", "arbitrary"}
_SIGNAL_PATTERNS = [("HAADF", r"HAADF\d*"), ("ABF", r"ABF\d*|LAABF\d*"), ("ADF", r"(LA|MA)?ADF\d*"),
                    ("iDPC", r"IDPC"), ("DPC", r"DPC"), ("BF", r"BF\d*"), ("DF", r"DF\d*")]
#: Titles of derived signals (segment differences such as ``A-C``, single segments such as ``DF4-A``).
_DERIVED_TITLE = re.compile(r"[A-D]\s*-\s*[A-D]|\w*\d\s*-\s*[A-D]", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# public API


def supported_path(path: Any) -> bool:
    """True if ``path`` (or every path of a list) is an existing file with a readable extension."""
    try:
        if isinstance(path, (list, tuple)):
            return bool(path) and all(supported_path(p) for p in path)
        p = Path(path)
        return p.suffix.lower().lstrip(".") in SUPPORTED_EXTENSIONS and p.is_file()
    except Exception:  # never raise: napari asks about any path
        return False


def read_micrograph(path: Union[str, Path], progress: Progress = no_progress) -> Micrograph:
    """Read one micrograph (2D image or ``(frame, y, x)`` stack) with its calibration [Å/px].

    Raises :class:`AutomatError` with a one-line reason for missing, empty, damaged or unsupported
    files and for data that are not a usable grayscale image.
    """
    return _read_file(Path(path), progress, every_signal=False)[0]


def read_signals(path: Union[str, Path], progress: Progress = no_progress) -> list[Micrograph]:
    """Every 2D image signal of a file (the detectors of one scan), best for analysis first.

    Order: HAADF, ADF, iDPC, ABF, other detectors, then DPC, segment differences and single
    segments. Calibration [Å/px] and metadata as in :func:`read_micrograph`; ``metadata['title']``
    (else ``'detector'``) names each signal. Pixels are not validated (tiny or constant images are
    listed): call :func:`validate_image` before analysis. A complex (vector) DPC image is returned as
    its magnitude. Files with one image give a list of one, validated as by :func:`read_micrograph`.
    """
    return _read_file(Path(path), progress, every_signal=True)


def _read_file(path: Path, progress: Progress, every_signal: bool) -> list[Micrograph]:
    ext = path.suffix.lower().lstrip(".")
    if ext not in SUPPORTED_EXTENSIONS:
        raise AutomatError(f"unsupported file type '{path.suffix or path.name}': use one of "
                           + ", ".join(SUPPORTED_EXTENSIONS))
    if not path.exists():
        raise AutomatError(f"file not found: {path}")
    if not path.is_file():
        raise AutomatError(f"not a file: {path}")
    if path.stat().st_size == 0:
        raise AutomatError(f"{path.name} is empty (0 bytes)")
    progress(0.0, f"reading {path.name}")
    try:
        if ext in PLAIN_IMAGE_EXTENSIONS:
            micrographs = [_read_plain_image(path)]
        elif ext == "mat":
            from .matlab import read_mat

            micrographs = [read_mat(path)]
        else:
            micrographs = _read_rsciio(path, ext, every_signal)
    except (AutomatError, Cancelled):
        raise
    except Exception as exc:  # any reader failure on a bad file becomes one line for the user
        raise AutomatError(f"cannot read {path.name}: damaged, truncated or not a valid .{ext} file "
                           f"({_one_line(exc)})") from None
    progress(1.0, f"read {path.name}")
    return micrographs


def validate_image(data: Any) -> None:
    """Check that ``data`` is a usable grayscale image ``(y, x)`` or stack ``(frame, y, x)``.

    Raises :class:`AutomatError` for RGB, complex or non-numeric data, images smaller than
    ``MIN_SIZE_PX`` per side, NaN/inf pixels (with their count) and constant images.
    """
    arr = np.asarray(data)
    if arr.dtype.names is not None or (arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] > 4):
        raise AutomatError("RGB image: save the micrograph as a single-channel (grayscale) image")
    if np.iscomplexobj(arr):
        raise AutomatError("complex-valued data: save the amplitude or intensity as a real image")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise AutomatError(f"image data are not numeric (dtype {arr.dtype})")
    if arr.ndim not in (2, 3):
        raise AutomatError(f"expected a 2D image or a stack of 2D frames, got data of shape {arr.shape}")
    h, w = arr.shape[-2:]
    if h < MIN_SIZE_PX or w < MIN_SIZE_PX or (arr.ndim == 3 and arr.shape[0] == 0):
        raise AutomatError(f"image is {h}x{w} pixels: at least {MIN_SIZE_PX}x{MIN_SIZE_PX} are needed")
    if np.issubdtype(arr.dtype, np.floating):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise AutomatError(f"{bad} of {arr.size} pixels are NaN or infinite: "
                               "fill or crop them before analysis")
    frames = arr.reshape(-1, h, w)
    for i, frame in enumerate(frames):
        if frame.min() == frame.max():
            where = f"frame {i} of the stack" if len(frames) > 1 else "image"
            raise AutomatError(f"{where} is constant (every pixel = {frame.flat[0]}): nothing to analyse")


def micrograph_from_array(data: Any, pixel_size_A: Union[None, float, tuple[float, float]] = None) -> Micrograph:
    """A :class:`Micrograph` from an array ``(y, x)`` or ``(frame, y, x)``; pixel size in Å/px.

    Without ``pixel_size_A`` the result is uncalibrated (1 Å/px placeholder).
    """
    arr = _as_image_array(np.asarray(data))
    validate_image(arr)
    micrograph = Micrograph(arr, (1.0, 1.0), False, None, {})
    return micrograph if pixel_size_A is None else apply_pixel_size(micrograph, pixel_size_A)


def apply_pixel_size(micrograph: Micrograph, pixel_size_A: Union[float, tuple[float, float]]) -> Micrograph:
    """The same micrograph with a user-given pixel size [Å/px] (one number or ``(y, x)``)."""
    size = _pixel_pair(pixel_size_A)
    return Micrograph(micrograph.data, size, True, micrograph.path,
                      dict(micrograph.metadata, calibration_note="set by user"), micrograph.true_columns_px)


# ---------------------------------------------------------------------------------------------
# units


def angstrom_per_unit(units: Any) -> Optional[float]:
    """Å per one ``units`` of length (``'nm'`` -> 10), or None when not a known length unit."""
    key = _unit_key(units)
    if key in _A_PER_UNIT:
        return _A_PER_UNIT[key]
    if len(key) > 3 and key.endswith("s") and key[:-1] in _A_PER_UNIT:  # plural words
        return _A_PER_UNIT[key[:-1]]
    return None


def _unit_key(units: Any) -> str:
    if units is None:
        return ""
    s = str(units).strip()
    for ch in ("\u212b", "\u00c5", "\u00e5"):  # angstrom sign, A-ring
        s = s.replace(ch, "a")
    for ch in ("\u00b5", "\u03bc"):  # micro sign, greek mu
        s = s.replace(ch, "u")
    return re.sub(r"[\s_.\-]", "", s.lower())


def _is_reciprocal(units: Any) -> bool:
    s = str(units or "").replace(" ", "")
    return "1/" in s or "^-1" in s or "\u207b\u00b9" in s or _unit_key(s) in {"mrad", "rad", "ev", "kev"}


def _calibration(scales: list[float], units: list[Any]) -> tuple[tuple[float, float], bool, Optional[str]]:
    """Pixel size (y, x) [Å], calibrated flag and an optional note from the two image axes."""
    factors = [angstrom_per_unit(u) for u in units]
    keys = [_unit_key(u) for u in units]
    known = [f for f in factors if f is not None]
    scales = [abs(float(s)) if s is not None and math.isfinite(float(s)) else 0.0 for s in scales]
    if known and all(f is not None or k in _NO_UNIT for f, k in zip(factors, keys)):
        factors = [f if f is not None else known[0] for f in factors]
        size = tuple(s * f for s, f in zip(scales, factors))
        if all(v > 0 for v in size):
            return size, True, None
        return (1.0, 1.0), False, "the file has a zero pixel size: calibration ignored"
    if all(k in _NO_UNIT for k in keys):
        lo, hi = INFERRED_NM_RANGE
        if all(lo <= s <= hi for s in scales):
            return (tuple(10.0 * s for s in scales), True,
                    f"scale {scales[1]:g} stored without a unit: read as nm (unit-less scales in "
                    f"{lo:g}-{hi:g} are taken as nm, typical of atomic-resolution images)")
        if all(s == 1.0 for s in scales):
            return (1.0, 1.0), False, None
        return (1.0, 1.0), False, f"scale {scales[1]:g} stored without a unit: ignored, set the pixel size"
    odd = next(u for u, f in zip(units, factors) if f is None and _unit_key(u) not in _NO_UNIT)
    kind = "print or pixel units" if _unit_key(odd) in _PRINT_UNITS else "an unknown unit"
    return (1.0, 1.0), False, f"calibration in {kind} ('{odd}'): ignored, set the pixel size"


# ---------------------------------------------------------------------------------------------
# readers


def _read_plain_image(path: Path) -> Micrograph:
    import imageio.v3 as iio

    try:
        arr = np.asarray(iio.imread(path))
    except Exception:  # imageio's reasons name its plugins, not the problem
        raise AutomatError(f"cannot read {path.name}: damaged, truncated or not a valid "
                           f"{path.suffix.lstrip('.').upper()} image") from None
    arr = _as_image_array(arr)
    validate_image(arr)
    metadata: dict[str, Any] = {"format": path.suffix.lower().lstrip(".")}
    signal = _recognise_signal(path.stem)
    if signal:
        metadata["signal"] = signal
    return Micrograph(arr, (1.0, 1.0), False, str(path), metadata)


def _read_rsciio(path: Path, ext: str, every_signal: bool) -> list[Micrograph]:
    """The best image of the file, or with ``every_signal`` all its images best first."""
    import importlib

    plugin = importlib.import_module(f"rsciio.{RSCIIO_PLUGINS[ext]}")
    want_name = None
    source = path
    if ext == "ser":  # read through the companion .emi (it holds voltage and detector)
        emi = path.with_name(re.sub(r"_\d+$", "", path.stem) + ".emi")
        if emi.is_file():
            source, want_name = emi, path.name
    elif ext == "emi" and not list(path.parent.glob(f"{glob.escape(path.stem)}_*.ser")):
        raise AutomatError(f"{path.name}: its data file ({path.stem}_1.ser) is missing; "
                           "keep the .ser files next to the .emi")
    with _quiet_readers():
        try:
            signals = plugin.file_reader(str(source))
        except Exception:
            if source == path:
                raise
            signals = plugin.file_reader(str(path))
            want_name = None
    if isinstance(signals, dict):
        signals = [signals]
    if not signals:
        raise AutomatError(f"cannot read {path.name}: no image found, the file is damaged, truncated or "
                           f"not a valid .{ext} file")
    if want_name:
        chosen = [s for s in signals if _get(s, "metadata", "General", "original_filename") == want_name]
        signals = chosen or signals
    images = _image_signals(signals, path)
    images.sort(key=lambda s: _analysis_rank(_metadata_of(s, path)))  # stable: file order within a rank
    fmt = RSCIIO_PLUGINS[ext]
    if not every_signal or len(images) == 1:
        return [_to_micrograph(images[0], path, fmt)]
    return [_to_micrograph(s, path, fmt, validate=False) for s in images]


@contextmanager
def _quiet_readers() -> Iterator[None]:
    """Silence reader warnings and tifffile's log lines about damaged files (errors still raise)."""
    log = logging.getLogger("tifffile")
    was_disabled, log.disabled = log.disabled, True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.disabled = was_disabled


def _image_signals(signals: list[dict], path: Path) -> list[dict]:
    """The image signals (2 signal dims, at most 1 navigation dim, not spectra or diffraction)."""
    images, rejected = [], []
    for s in signals:
        axes = s.get("axes") or []
        n_sig = sum(not a.get("navigate", False) for a in axes) if axes else np.ndim(s["data"])
        n_nav = len(axes) - n_sig if axes else 0
        kind = str(_get(s, "metadata", "Signal", "signal_type") or "").lower()
        if n_sig == 2 and n_nav <= 1 and not any(k in kind for k in ("diffraction", "eels", "eds", "spectr")):
            images.append(s)
        else:
            rejected.append(_describe_shape(n_nav, n_sig, kind))
    if not images:
        what = rejected[0] if rejected else "no data"
        raise AutomatError(f"{path.name} holds no 2D image ({what}): spectra, diffraction and 4D data "
                           "are not supported")
    return images


def _analysis_rank(metadata: dict) -> int:
    """0 (best for column finding) to 5: HAADF, ADF, iDPC, ABF, other detectors, then DPC and
    segment or difference images (titles such as ``DF4-A``, ``A-C``)."""
    title = str(metadata.get("title", ""))
    signal = metadata.get("signal", "")
    if signal == "DPC" or _DERIVED_TITLE.fullmatch(title.strip()):
        return 5
    return {"HAADF": 0, "ADF": 1, "iDPC": 2, "ABF": 3}.get(signal, 4)


def _describe_shape(n_nav: int, n_sig: int, kind: str) -> str:
    if kind:
        return f"a {kind} signal"
    if n_sig == 1:
        return "a spectrum" if n_nav == 0 else f"a spectrum image with {n_nav} navigation dimensions"
    if n_sig == 2 and n_nav >= 2:
        return f"{n_nav + 2}D data such as 4D-STEM"
    return f"{n_sig} signal and {n_nav} navigation dimensions"


def _to_micrograph(signal: dict, path: Path, fmt: str, validate: bool = True) -> Micrograph:
    """One rsciio signal as a Micrograph; without ``validate`` pixels are not checked and a
    complex image becomes its magnitude."""
    axes = signal.get("axes") or []
    data = signal["data"]
    if hasattr(data, "compute"):
        data = data.compute()
    data = np.array(data)  # a copy: memory-mapped readers release the file
    complex_data = not validate and np.iscomplexobj(data)
    if complex_data:
        data = np.abs(data)
    if axes and len(axes) == data.ndim:
        order = [i for i, a in enumerate(axes) if a.get("navigate", False)]
        order += [i for i, a in enumerate(axes) if not a.get("navigate", False)]
        data = np.transpose(data, order)
        image_axes = [axes[i] for i in order[-2:]]
    else:
        image_axes = [{}, {}]
    data = _as_image_array(data)
    if validate:
        validate_image(data)
    metadata = _metadata_of(signal, path)
    metadata["format"] = fmt
    if complex_data:
        metadata["complex_shown_as"] = "magnitude"
    units = [a.get("units") for a in image_axes]
    units = [_imagej_unit(signal) if _unit_key(u) in _NO_UNIT else u for u in units]
    scales = [a.get("scale", 1.0) for a in image_axes]
    if any(_is_reciprocal(u) for u in units):
        raise AutomatError(f"{path.name}: the image axes are in {units[0]}, so this is a diffraction pattern or "
                           "spectrum, not a real-space image")
    size, calibrated, note = _calibration(scales, units)
    metadata["original_units"] = [str(u) if u is not None else "" for u in units]
    metadata["original_scale"] = [float(s) if s is not None else 1.0 for s in scales]
    if note:
        metadata["calibration_note"] = note
    return Micrograph(data, size, calibrated, str(path), metadata)


def _as_image_array(arr: np.ndarray) -> np.ndarray:
    """Make reader output computable: RGB records to channels, grey RGB to one channel,
    float16 to float32 and bool to uint8."""
    if arr.dtype.names is not None:  # TIFF readers return RGB as records
        arr = np.stack([arr[name] for name in arr.dtype.names], axis=-1)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] > 4:
        rgb = arr[..., :3]
        alpha_flat = arr.shape[-1] == 3 or arr[..., 3].min() == arr[..., 3].max()
        if alpha_flat and np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            arr = np.ascontiguousarray(rgb[..., 0])  # a grayscale image saved as RGB
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif arr.dtype == bool:
        arr = arr.astype(np.uint8)
    return arr


# ---------------------------------------------------------------------------------------------
# metadata


def _metadata_of(signal: dict, path: Path) -> dict:
    """voltage_kV, detector, convergence_angle_mrad, signal and title, where the file says."""
    md = signal.get("metadata") or {}
    om = dict(signal.get("original_metadata") or {})
    om["_imagej"] = _imagej_description(signal)
    out: dict[str, Any] = {}
    tem = _get(md, "Acquisition_instrument", "TEM") or _get(md, "Acquisition_instrument", "SEM") or {}
    voltage = _number(tem.get("beam_energy")) if isinstance(tem, dict) else None
    if voltage is None:
        voltage = _first_number(om, ("voltagekv", "hightensionkv", "accelerationvoltage",
                                     "acceleratingvoltage", "hightension", "voltage"))
    if voltage is not None:
        kv = voltage / 1000.0 if voltage >= 1000 else voltage
        if 10 <= kv <= 1500:
            out["voltage_kV"] = float(kv)
    conv = _number(tem.get("convergence_angle")) if isinstance(tem, dict) else None
    if conv is None:
        conv = _first_number(om, ("convergenceanglemrad", "convergenceangle", "convergencesemiangle",
                                  "beamconvergence"))
        if conv is not None and 0 < conv < 0.2:  # stored in rad
            conv *= 1000.0
    if conv is not None and 0.2 <= conv <= 200:
        out["convergence_angle_mrad"] = float(conv)
    title = str(_get(md, "General", "title") or "").strip()
    detector = _first_text(om, ("detector", "signalname", "signal"))
    if detector:
        out["detector"] = detector
    if title:
        out["title"] = title
    # a title names one signal of a multi-detector file; (i)DPC is not read from file names
    for text, dpc in ((title, True), (detector, True), (path.stem, False)):
        found = _recognise_signal(text or "", dpc)
        if found:
            out["signal"] = found
            break
    return out


def _recognise_signal(text: str, dpc: bool = False) -> str:
    """HAADF/ADF/ABF/BF/DF (with ``dpc`` also iDPC/DPC) when a word of ``text`` names it, else ''."""
    tokens = re.split(r"[^A-Z0-9]+", text.upper())
    for name, pattern in _SIGNAL_PATTERNS:
        if (dpc or "DPC" not in name) and any(re.fullmatch(pattern, t) for t in tokens if t):
            return name
    return ""


def _imagej_description(signal: dict) -> dict:
    text = _get(signal, "original_metadata", "ImageDescription")
    if not isinstance(text, str) or not text.startswith("ImageJ="):
        return {}
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def _imagej_unit(signal: dict) -> Optional[str]:
    unit = _imagej_description(signal).get("unit")
    return unit.encode().decode("unicode_escape") if unit and "\\u" in unit else unit


def _walk(tree: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield re.sub(r"[^a-z0-9]", "", str(key).lower()), value
            yield from _walk(value)


def _first_number(tree: dict, keys: tuple[str, ...]) -> Optional[float]:
    for key in keys:
        for k, v in _walk(tree):
            if k == key and _number(v) is not None:
                return _number(v)
    return None


def _first_text(tree: dict, keys: tuple[str, ...]) -> str:
    for key in keys:
        for k, v in _walk(tree):
            if k == key and isinstance(v, str) and v.strip() and _number(v) is None:
                return v.strip()
    return ""


def _number(value: Any) -> Optional[float]:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _pixel_pair(pixel_size_A: Union[float, tuple[float, float]]) -> tuple[float, float]:
    try:
        values = [float(v) for v in np.atleast_1d(np.asarray(pixel_size_A, dtype=float)).ravel()]
    except (TypeError, ValueError):
        raise AutomatError(f"pixel size must be a number of Å per pixel, got {pixel_size_A!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
        raise AutomatError(f"pixel size must be one or two positive numbers of Å per pixel, got {pixel_size_A!r}")
    return values[0], values[1]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
