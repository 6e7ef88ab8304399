"""The chain in order: read → denoise → detect → lattice → retrieve → reconstruct → energy.

Stage order lives here only. Each stage is a function ``stage(result, config, progress)`` that
reads earlier fields of a :class:`PipelineResult` and fills its own; :func:`run` calls them in
order, the agent calls them one by one with quality gates in between.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from .config import PipelineConfig
from .model import (AutomatError, Columns, EnergyReport, Lattice2D, Micrograph, Progress,
                    Reconstruction, TemplateHit, no_progress)

#: A column lattice that differs from the Fourier transform by more than this (relative) is
#: reported, and no answer built on it is stated as confident.
FFT_MISMATCH_WARN = 0.05
#: Minimum number of columns for a lattice fit to mean anything.
MIN_COLUMNS = 9
#: Version of the ``result.json`` layout (DESIGN.md); raised when a key changes meaning.
SCHEMA_VERSION = 2
UNCALIBRATED = ("the image has no spatial calibration, so lattice parameters cannot be compared with "
                "structures: set the pixel size in Å (--pixel-size, or the calibration widget), or name the "
                "compound (--elements or --reference-cif) to derive it from the structure")


@dataclass
class PipelineResult:
    """Everything the chain produced so far for one image (later fields may be ``None``)."""

    micrograph: Micrograph
    config: PipelineConfig = field(default_factory=PipelineConfig)
    denoised: Optional[Micrograph] = None
    denoise_info: dict = field(default_factory=dict)
    columns: Optional[Columns] = None
    columns_source: str = "detected"
    lattice: Optional[Lattice2D] = None
    #: The lattice and columns before motif completion (``detect.complete``), when sites were added.
    first_pass: Optional[tuple] = None
    #: Readings of the columns that retrieval scored side by side: name → (lattice, columns).
    readings: dict = field(default_factory=dict)
    hits: list[TemplateHit] = field(default_factory=list)
    #: Index into ``hits`` of the candidate the reconstruction was built from.
    chosen_index: int = 0
    reconstruction: Optional[Reconstruction] = None
    energy: Optional[EnergyReport] = None
    #: The ``result.json`` ``properties`` block (``energy.properties.compute_properties``), None when not computed.
    properties: Optional[dict] = None
    #: Which planner drove the run (``{planner, model, endpoint_host, steps, fallback, transcript_file}``).
    agent: Optional[dict] = None
    timings_s: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: With ``config.domains``: one ``result.json`` entry per domain (:func:`by_domain`) and the
    #: domain labels ``(y, x)`` in the full image's frame (0: not analysed).
    domains: Optional[list[dict]] = None
    domain_labels: Optional[np.ndarray] = None

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    @property
    def analysed(self) -> Micrograph:
        """The image the columns are measured on: the denoised one when present."""
        return self.denoised if self.denoised is not None else self.micrograph

    @property
    def image(self) -> Optional[Micrograph]:
        """:attr:`analysed`, or None for a session of columns with no image behind them (drawn by hand)."""
        return self.analysed if np.asarray(self.analysed.data).size else None

    @property
    def score_params(self):
        from .templates.retrieve import ScoreParams

        return ScoreParams.from_dict(self.config.score)

    @property
    def detect_params(self):
        from .detect.params import DetectParams

        return DetectParams.from_dict(self.config.detect)

    @property
    def posterior_params(self):
        from .decision import PosteriorParams

        return PosteriorParams.from_dict(self.config.posterior)

    @property
    def decision(self):
        """How sure the answer is (:class:`napari_automat.decision.Decision`), None before retrieval."""
        from .decision import decide

        return decide(self.hits, bool(self.config.elements), self.chosen_index, self.posterior_params,
                      caveats=self.caveats(), column_classes=self.column_classes())

    def column_classes(self) -> list[float]:
        """Intensities of the measured motif sites relative to the brightest, brightest first."""
        values = [m.intensity for m in (self.lattice.motif if self.lattice is not None else [])
                  if np.isfinite(m.intensity) and m.intensity > 0]
        return [v / max(values) for v in sorted(values, reverse=True)] if values else []

    def caveats(self) -> list[str]:
        """Quality checks that failed: the posterior assumes the columns and the structure are sound,
        so a confident answer is withheld when they are not."""
        out = []
        lat = self.lattice
        if lat is not None and np.isfinite(lat.fft_mismatch) and lat.fft_mismatch > FFT_MISMATCH_WARN:
            out.append(f"the column lattice is {100 * lat.fft_mismatch:.0f}% off the Fourier transform")
        if self.energy is not None and abs(self.energy.lattice_change_pct) > 100 * self.config.max_lattice_change:
            out.append(f"relaxation changed the lattice by {self.energy.lattice_change_pct:+.1f}%")
        return out

    @property
    def calibration(self) -> Optional[dict]:
        """What the chosen structure says about the pixel size (``decision.calibration``); for an image
        calibrated from a structure (:func:`calibrated_from_structure`) also that pixel size and source."""
        from .decision import calibration

        derived = self.micrograph.metadata.get("structure_calibration")
        if not self.hits or self.lattice is None:
            if not derived:
                return None
            cal = {"scale_factor": 1.0, "shear": None,
                   "scale_sigma": round(derived["pixel_size_sigma_A"] / derived["pixel_size_A"], 5)}
        else:
            cal = calibration(self.hits, min(self.chosen_index, len(self.hits) - 1), self.lattice, self.score_params)
        if self.micrograph.metadata.get("scan_corrected") and cal.get("scan_distortion") is not None:
            cal["scan_distortion"]["corrected"] = self.micrograph.metadata["scan_corrected"]
        before = self.micrograph.metadata.get("recalibrated_from_A")
        if before:  # relative to the file's pixel size, with the recalibration in it
            cal["scale_factor"] = round(cal["scale_factor"] * self.micrograph.mean_pixel_size_A / float(np.mean(before)), 5)
            cal["applied"] = True
        if derived:  # the pixel size is the structure's; scale_factor says how the chosen hit agrees with it
            cal.update(source=derived["source"], applied=True, pixel_size_A=derived["pixel_size_A"],
                       pixel_size_sigma_A=derived["pixel_size_sigma_A"], from_structure=derived)
        return cal

    def cif_comments(self) -> list[str]:
        """What a reader of the CIF must know: where the lattice and the positions come from, and how sure."""
        from . import __version__

        rec, cal, decision = self.reconstruction, self.calibration, self.decision
        zone = " ".join(str(int(v)) for v in rec.zone_axis)
        lines = [f"napari-automat {__version__}: reconstructed from {self.micrograph.path or 'an image'}",
                 f"template {rec.template_id} seen along [{zone}]: in-plane lattice from the image, "
                 "out-of-plane lattice and positions from the template"]
        if cal is not None:
            how = (f"recalibrated x {cal['scale_factor']:.4f} against {cal['against']}" if cal["applied"] else
                   f"as measured with the file's pixel size (calibration factor {cal['scale_factor']:.4f} "
                   f"+- {cal['scale_sigma']:.4f} against {cal['against']})")
            lines.append(f"lattice {how}")
        if decision is not None:
            lines.append(decision.line())
        return lines

    def software(self) -> dict:
        from . import __version__

        digest = None
        try:
            from .templates.library import load_library

            digest = load_library(self.config.library_path).content_hash()
        except Exception:  # noqa: BLE001 - provenance must not break saving a result
            pass
        return {"name": "napari-automat", "version": __version__, "template_library_hash": digest}

    @property
    def origin_px(self) -> np.ndarray:
        """``(y, x)`` [px] of the analysed crop's corner in the full image (0 without a crop)."""
        roi = self.micrograph.metadata.get("roi")
        return np.zeros(2) if roi is None else np.array([roi[0], roi[2]], float)

    def full_frame_columns(self) -> Optional[Columns]:
        """The columns with positions in the full image's pixel frame (as written to the outputs)."""
        if self.columns is None:
            return None
        return replace(self.columns, positions_px=self.columns.positions_px + self.origin_px)

    def to_dict(self) -> dict:
        """The ``result.json`` document (keys fixed by DESIGN.md); positions in the full image's frame."""
        m = self.micrograph
        lat = self.lattice.to_dict() if self.lattice is not None else None
        if lat is not None:
            lat["origin_px"] = [float(v) for v in np.asarray(lat["origin_px"]) + self.origin_px]
        columns = self.full_frame_columns()
        decision = self.decision
        retrieval = [h.to_dict() for h in self.hits]
        if decision is not None:
            for row, p, ll in zip(retrieval, decision.hit_probability, decision.hit_log_likelihood):
                row.update(probability=round(p, 4), log_likelihood=round(ll, 4))
        return {
            "schema_version": SCHEMA_VERSION,
            "software": self.software(),
            "input": {"path": m.path, "shape": list(m.shape), "pixel_size_A": float(m.mean_pixel_size_A),
                      "pixel_size_yx_A": [float(v) for v in m.pixel_size_A],
                      "calibrated": bool(m.calibrated), "frame": m.metadata.get("frame", 0),
                      **{k: m.metadata[k] for k in ("frames_used", "frames_total", "residual_drift_px", "full_shape",
                                                    "roi_source", "crystalline_fraction", "roi_polygon")
                         if k in m.metadata},
                      "roi": m.metadata.get("roi"),
                      "metadata": m.to_dict()["metadata"]},
            "denoise": self.denoise_info or None,
            "columns": dict(columns.to_dict(), source=self.columns_source) if columns is not None else None,
            "lattice2d": lat,
            "calibration": self.calibration,
            "retrieval": retrieval,
            "decision": None if decision is None else decision.to_dict(),
            "structure": dict(self.reconstruction.to_dict(), template_id=self.reconstruction.template_id,
                              zone_axis=list(self.reconstruction.zone_axis), symprec_A=self.reconstruction.symprec_A,
                              warnings=list(self.reconstruction.warnings))
            if self.reconstruction is not None else None,
            "domains": self.domains,
            "energy": self.energy.to_dict() if self.energy is not None else None,
            "properties": self.properties,
            "agent": self.agent,
            "timings_s": {k: round(float(v), 3) for k, v in self.timings_s.items()},
            "warnings": list(self.warnings),
            "config": self.config.to_dict(),
            "parameters": {"score": self.score_params.to_dict(), "posterior": self.posterior_params.to_dict(),
                           "detect": self.detect_params.to_dict()},
        }

    def save(self, outdir: Union[str, Path]) -> dict[str, Path]:
        """Write ``structure.cif``, ``structure_primitive.cif``, ``columns.csv``, ``overview.png`` and
        ``result.json`` into ``outdir`` (each file written atomically). Returns the paths written."""
        from .io import write
        from .report import save_overview

        outdir = Path(outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        if self.reconstruction is not None:
            paths["cif"] = outdir / "structure.cif"
            write.write_cif(paths["cif"], self.reconstruction.structure, symprec=self.reconstruction.symprec_A,
                            comments=self.cif_comments())
            paths["cif_primitive"] = outdir / "structure_primitive.cif"
            write.write_cif(paths["cif_primitive"], self.reconstruction.structure.get_primitive_structure(),
                            symprec=self.reconstruction.symprec_A)
        if self.energy is not None and self.energy.relaxed_structure is not None:
            paths["cif_relaxed"] = outdir / "structure_relaxed.cif"
            write.write_cif(paths["cif_relaxed"], self.energy.relaxed_structure, symprec=0.01)
        if self.columns is not None:
            paths["columns"] = outdir / "columns.csv"
            write.write_columns_csv(paths["columns"], self.full_frame_columns())
        paths["overview"] = outdir / "overview.png"
        save_overview(self, paths["overview"])
        paths["result"] = outdir / "result.json"
        write.write_json(paths["result"], self.to_dict())
        return paths


def load_micrograph(source: Union[str, Path, Micrograph], config: PipelineConfig,
                    progress: Progress = no_progress) -> Micrograph:
    """Read ``source`` (unless already a Micrograph), apply the pixel-size override, pick the frame
    of a stack (``config.frame``) or register and average its frames (``config.frame = None``), and
    crop to ``config.roi`` (unless ``source`` is a crop already)."""
    from .io.read import apply_pixel_size, read_micrograph, validate_image

    micrograph = source if isinstance(source, Micrograph) else read_micrograph(source, sub_progress(progress, 0, 0.3))
    if config.pixel_size_A is not None:
        if not config.pixel_size_A > 0:
            raise AutomatError(f"pixel size must be positive, got {config.pixel_size_A} Å")
        micrograph = apply_pixel_size(micrograph, config.pixel_size_A)
    if config.frame is not None:
        micrograph = micrograph.frame(config.frame)
    elif micrograph.is_stack:
        from .io.stack import average_frames

        micrograph = average_frames(micrograph, sub_progress(progress, 0.3, 1.0, "frames: "))
    if config.roi is not None and config.roi_polygon is not None:
        raise AutomatError("give a rectangle ROI or a polygon, not both")
    if config.roi is not None and "roi" not in micrograph.metadata:
        micrograph = micrograph.crop(checked_roi(config.roi, micrograph.shape), roi_source="user")
    if config.roi_polygon is not None and "roi" not in micrograph.metadata:
        micrograph = polygon_crop(micrograph, config.roi_polygon)
    validate_image(micrograph.data)
    return micrograph


def checked_roi(roi, shape) -> tuple[int, int, int, int]:
    """``roi = (y0, y1, x0, x1)`` [px] as integers, or an AutomatError when it is not a non-empty
    rectangle inside an image of ``shape`` ``(h, w)``."""
    try:
        y0, y1, x0, x1 = (int(v) for v in roi)
        if any(int(v) != float(v) for v in roi):
            raise ValueError
    except (TypeError, ValueError):
        raise AutomatError(f"the ROI must be four whole pixel numbers y0:y1,x0:x1, got {roi!r}") from None
    h, w = shape[-2:]
    if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
        raise AutomatError(f"the ROI y {y0}:{y1}, x {x0}:{x1} is empty or outside the {h}x{w} px image")
    return y0, y1, x0, x1


def polygon_crop(micrograph: Micrograph, vertices) -> Micrograph:
    """The bounding box of the polygon ``vertices`` ``[[y, x], …]`` [px], its ``crystal_mask`` the
    pixels inside (detection drops the columns outside); ``roi_polygon`` records the vertices."""
    from .detect.region import polygon_region

    try:
        bbox, mask = polygon_region(vertices, micrograph.shape[-2:])
    except ValueError as exc:
        raise AutomatError(f"the ROI polygon {exc}") from None
    return micrograph.crop(bbox, roi_source="user", crystal_mask=mask,
                           roi_polygon=[[float(c) for c in vertex] for vertex in vertices])


def crystal_crop(micrograph: Micrograph, params=None) -> Micrograph:
    """Record the crystalline fraction (``detect.region``) and, when it is below
    ``params.crystal_fraction_min`` (:class:`~.detect.params.DetectParams`), crop to the region's
    bounding box; the crop's ``crystal_mask`` (metadata, not written to result.json) then says
    which pixels are crystalline.

    The map's tiles span ``params.region_tile_periods`` cells (the longer basis vector of the whole
    image's Bragg spots); an image not two tiles wide, or without a clear lattice, is taken whole and
    its fraction is not measured (None): a finely sampled crystal filling the field must not be
    cut to a few tiles that happen to hold too few periods."""
    from .detect.params import DEFAULT_DETECT
    from .detect.region import crystalline_region
    from .detect.spectrum import fft_basis

    params = params or DEFAULT_DETECT
    tile_px = None
    basis = fft_basis(micrograph.data, micrograph.mean_pixel_size_A) if micrograph.calibrated else None
    if basis is not None:
        cell_A = max(float(np.linalg.norm(v)) for v in basis)
        if cell_A > 0:
            periods_px = params.region_tile_periods * cell_A / micrograph.mean_pixel_size_A
            tile_px = max(params.region_min_tile_px, 2 ** int(np.ceil(np.log2(periods_px))))
    if tile_px is None or min(micrograph.shape[-2:]) < 2 * tile_px:
        return micrograph.with_data(micrograph.data, crystalline_fraction=None)
    region = crystalline_region(micrograph.data, tile_px=tile_px, threshold=params.region_threshold)
    fraction = round(region.fraction, 4)
    if not 0 < fraction < params.crystal_fraction_min:
        return micrograph.with_data(micrograph.data, crystalline_fraction=fraction)
    y0, y1, x0, x1 = region.bbox
    return micrograph.crop(region.bbox, roi_source="crystal", crystalline_fraction=fraction,
                           crystal_mask=region.mask[y0:y1, x0:x1])


def denoise_stage(result: PipelineResult, config: PipelineConfig, progress: Progress = no_progress) -> None:
    from .denoise import denoise

    result.denoised, result.denoise_info = denoise(result.micrograph, method=config.denoise_method,
                                                   strength=config.denoise_strength, progress=progress)


def detect_stage(result: PipelineResult, config: PipelineConfig, progress: Progress = no_progress) -> None:
    from .detect import detect_columns

    result.columns = detect_columns(result.analysed, min_separation_A=config.min_separation_A,
                                    threshold_scale=config.threshold_scale, signal=config.signal,
                                    progress=progress, params=result.detect_params)
    result.columns_source = "detected"
    mask = result.micrograph.metadata.get("crystal_mask")
    if mask is not None and result.columns.count:  # drop columns outside the crystal (corners of its box)
        iy, ix = np.clip(np.rint(result.columns.positions_px).astype(int), 0, np.array(mask.shape) - 1).T
        result.columns = result.columns.subset(mask[iy, ix])


def lattice_stage(result: PipelineResult, config: PipelineConfig, progress: Progress = no_progress) -> None:
    from .detect import find_lattice

    if result.columns is None or result.columns.count < MIN_COLUMNS:
        n = 0 if result.columns is None else result.columns.count
        raise AutomatError(f"only {n} atom columns found; at least {MIN_COLUMNS} are needed for a lattice")
    if result.columns_source == "detected":
        from .detect.complete import find_lattice_completed

        result.lattice, result.columns, changes = find_lattice_completed(result.columns, result.analysed, progress,
                                                                         result.detect_params)
        if changes["dropped"]:
            result.warn(f"{changes['dropped']} faint maxima that fit no column shape (where the tails of surrounding "
                        "columns add up) were dropped")
        if changes["sites"]:
            result.first_pass = changes["first_pass"]
            result.warn(f"{len(changes['sites'])} motif site(s) the detection had merged into brighter neighbours "
                        "were found from the cell-averaged residual and added")
    else:  # columns given by the user stay where they are; points added by hand get their intensity measured
        from .detect.review import measure_added

        image = result.image
        result.columns = measure_added(result.columns, image)
        result.lattice, result.columns = find_lattice(result.columns, image=None if image is None else image.data,
                                                      progress=progress, params=result.detect_params)
    if np.isfinite(result.lattice.fft_mismatch) and result.lattice.fft_mismatch > FFT_MISMATCH_WARN:
        result.warn(f"the column lattice differs from the Fourier transform by "
                    f"{100 * result.lattice.fft_mismatch:.0f}%: check the detected columns")


def retrieve_stage(result: PipelineResult, config: PipelineConfig, progress: Progress = no_progress) -> None:
    """Score every reading of the columns (:func:`column_readings`) against the library, pool the hits
    with the readings' priors, and take the reading of the best hit."""
    from .templates import load_library, retrieve
    from .templates.retrieve import pool_readings

    if result.lattice is None:
        raise AutomatError("no lattice to retrieve templates for")
    if not result.micrograph.calibrated:
        raise AutomatError(UNCALIBRATED)
    from .detect.signal import shows_light_columns

    library = load_library(config.library_path, progress=progress)
    params = result.score_params
    light = shows_light_columns(config.signal, result.micrograph)
    readings = column_readings(result, params)
    scored = []
    for k, (name, lattice, columns, prior) in enumerate(readings):
        hits = retrieve(lattice, elements=config.elements, library=library, top_k=config.top_k,
                        z_exponent=config.z_exponent, light_columns=light, params=params,
                        progress=sub_progress(progress, k / len(readings), (k + 1) / len(readings)))
        for hit in hits:
            hit.details["reading"] = name
        scored.append((hits, prior))
    result.readings = {name: (lattice, columns) for name, lattice, columns, _ in readings}
    result.first_pass = None
    result.hits = pool_readings(scored, config.top_k, params.prior_weight)
    if not result.hits:
        raise AutomatError("no template matches the measured lattice "
                           f"(a={result.lattice.a_A:.3f} Å, b={result.lattice.b_A:.3f} Å, "
                           f"gamma={result.lattice.gamma_deg:.1f}°)")
    _take_reading(result, result.hits[0])
    chosen = result.hits[0].details["reading"]
    if chosen != readings[0][0]:
        best_of = {name: max((h.score for h in hits), default=0.0) / prior
                   for (hits, prior), (name, *_) in zip(scored, readings)}
        result.warn(f"the reading '{chosen}' explains the image best (best template score "
                    f"{best_of[chosen]:.2f}, against {best_of[readings[0][0]]:.2f} for '{readings[0][0]}')")
    if light is None and result.hits[0].details.get("light_columns"):
        result.warn("the signal is not recorded; the image fits templates best with their light columns "
                    "visible, as in ABF or iDPC")
    from .templates.overlay import add_image_residuals

    add_image_residuals(result.hits, result.lattice, result.image, result.columns)


#: Names of the readings of detected columns.
AS_DETECTED, WITH_COMPLETION, FIRST_PASS = "as detected", "with the completed motif sites", "without the completed sites"
WITHOUT_FAINT = "without the faint motif sites"


def column_readings(result: PipelineResult, params) -> list[tuple[str, Lattice2D, Columns, float]]:
    """The ways the columns can be read, each ``(name, lattice, columns, prior)``, the primary first:
    the columns with the motif sites that completion added (or as detected), without those sites
    (``params.first_pass_prior``), and each of those without its motif sites under
    ``params.faint_site`` of the brightest (``params.faint_dropped_prior``). Columns the user gave
    are read only as they are."""
    primary = WITH_COMPLETION if result.first_pass is not None else AS_DETECTED
    readings = [(primary, result.lattice, result.columns, 1.0)]
    if result.columns_source != "detected":
        return readings
    if result.first_pass is not None:
        readings.append((FIRST_PASS, *result.first_pass, params.first_pass_prior))
    for name, lattice, columns, prior in list(readings):
        dropped = _without_faint_sites(lattice, columns, result.image, params.faint_site, result.detect_params)
        if dropped is not None and not any(c.count == dropped[1].count for _, _, c, _ in readings):
            label = WITHOUT_FAINT if name == primary else f"{name}, {WITHOUT_FAINT}"
            readings.append((label, *dropped, prior * params.faint_dropped_prior))
    return readings


def _without_faint_sites(lattice: Lattice2D, columns: Columns, image: Optional[Micrograph],
                         fraction: float, detect_params) -> Optional[tuple[Lattice2D, Columns]]:
    """The lattice refitted without the motif sites under ``fraction`` of the brightest, or None when
    there are none, all are, or the bright columns alone make no lattice."""
    from .detect import find_lattice

    brightest = max((m.intensity for m in lattice.motif), default=0.0)
    faint = [m.sublattice for m in lattice.motif if m.intensity < fraction * brightest]
    if not faint or len(faint) == len(lattice.motif):
        return None
    kept = columns.subset(np.flatnonzero(~np.isin(columns.sublattice, faint)))
    if kept.count < MIN_COLUMNS:
        return None
    try:
        return find_lattice(kept, image=image, params=detect_params)
    except AutomatError:  # the bright columns alone are no lattice
        return None


def _take_reading(result: PipelineResult, hit: TemplateHit) -> None:
    """Make ``hit``'s reading of the columns the result's lattice and columns."""
    name = hit.details.get("reading")
    if name in result.readings:
        result.lattice, result.columns = result.readings[name]


def stability_stage(result: PipelineResult, config: PipelineConfig, progress: Progress = no_progress) -> None:
    """Reorder the top distinct candidates by image score × stability (``energy.stability``); nothing
    to do without an energy model or with fewer than two candidates to compare."""
    if config.energy_model == "none" or config.stability_candidates < 2 or not result.hits:
        return
    from .energy.stability import rerank_by_stability

    if result.lattice is None:
        raise AutomatError("no lattice to reconstruct the candidates on")
    result.hits = rerank_by_stability(result.hits, result.lattice, model=config.energy_model,
                                      max_candidates=config.stability_candidates,
                                      checkpoint=config.mattersim_checkpoint, device=config.device, progress=progress,
                                      params=result.score_params)


def reconstruct_stage(result: PipelineResult, config: PipelineConfig, progress: Progress = no_progress) -> None:
    from .reconstruct import reconstruct

    if not result.hits:
        raise AutomatError("no retrieved template to reconstruct from")
    from .reconstruct.labels import label_columns

    index = min(max(config.candidate_index, 0), len(result.hits) - 1)
    _take_reading(result, result.hits[index])
    result.reconstruction = reconstruct(result.hits[index], result.lattice, progress=progress)
    result.chosen_index = index
    result.columns, result.reconstruction.z_contrast = label_columns(result.columns, result.lattice,
                                                                     result.hits[index])
    for text in result.reconstruction.warnings:
        result.warn(text)
    from .decision import calibration_warning, scan_distortion_warning

    cal = result.calibration
    text = calibration_warning(cal)
    if text and not result.micrograph.metadata.get("recalibrated_from_A"):
        result.warn(text)
    text = scan_distortion_warning(cal)
    if text:
        result.warn(text)


def energy_stage(result: PipelineResult, config: PipelineConfig, progress: Progress = no_progress) -> None:
    if config.energy_model == "none":
        result.energy = None
        return
    from .energy import compute_energy

    if result.reconstruction is None:
        raise AutomatError("no reconstructed structure to compute the energy of")
    result.energy = compute_energy(result.reconstruction.structure, model=config.energy_model,
                                   relax=config.relax, fmax_eV_A=config.fmax_eV_A,
                                   max_steps=config.max_relax_steps, checkpoint=config.mattersim_checkpoint,
                                   device=config.device, progress=progress)
    for text in result.energy.warnings:
        result.warn(text)


def properties_stage(result: PipelineResult, config: PipelineConfig, progress: Progress = no_progress) -> None:
    """Properties of the relaxed structure at ``config.properties`` (``none``: nothing), with the
    model and force limit of the energy stage."""
    if config.properties == "none":
        result.properties = None
        return
    from .energy.properties import compute_properties
    from .templates.library import load_library

    if result.energy is None:
        raise AutomatError("properties need the energy stage: set an energy model")
    energy = result.energy
    structure = energy.relaxed_structure if energy.relaxed_structure is not None else result.reconstruction.structure
    if not energy.relaxed:
        result.warn("properties computed on the unrelaxed structure (relax is off): phonons and moduli are unreliable")
    result.properties = compute_properties(structure, config.properties, model=energy.model,
                                           energy_per_atom_eV=energy.energy_per_atom_eV, fmax_eV_A=config.fmax_eV_A,
                                           library=load_library(config.library_path),
                                           checkpoint=config.mattersim_checkpoint,
                                           device=config.device, progress=progress)
    for text in result.properties["warnings"]:
        result.warn(text)


#: Stage name → function, in chain order (the relative cost sets each stage's share of progress).
STAGES: dict[str, tuple[Callable[[PipelineResult, PipelineConfig, Progress], None], float]] = {
    "denoise": (denoise_stage, 1.0),
    "detect": (detect_stage, 1.0),
    "lattice": (lattice_stage, 0.5),
    "retrieve": (retrieve_stage, 1.0),
    "stability": (stability_stage, 1.0),
    "reconstruct": (reconstruct_stage, 0.5),
    "energy": (energy_stage, 4.0),
}
#: Stages after the chain that the planner adds when the config asks for them (outside ``STAGES``,
#: whose every stage the agent's gates check).
AFTER_STAGES = {"properties": (properties_stage, 2.0)}


def sub_progress(progress: Progress, start: float, stop: float, prefix: str = "") -> Progress:
    """A callback mapping a stage's 0..1 onto ``start..stop`` of the whole run."""

    def report(fraction: float, message: str = "") -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        progress(start + (stop - start) * fraction, f"{prefix}{message}" if message else prefix.rstrip(": "))

    return report


def run_stage(result: PipelineResult, name: str, config: Optional[PipelineConfig] = None,
              progress: Progress = no_progress) -> PipelineResult:
    """Run one named stage on ``result`` (timed; the time goes into ``result.timings_s``)."""
    func, _ = STAGES[name] if name in STAGES else AFTER_STAGES[name]
    t0 = time.perf_counter()
    try:
        func(result, config or result.config, progress)
    finally:
        result.timings_s[name] = result.timings_s.get(name, 0.0) + time.perf_counter() - t0
    return result


def start(source: Union[str, Path, Micrograph], config: Optional[PipelineConfig] = None,
          progress: Progress = no_progress, columns: Optional[Columns] = None) -> PipelineResult:
    """Read the input and make the result that stages fill in; ``columns`` = user-supplied columns."""
    config = config or PipelineConfig()
    t0 = time.perf_counter()
    micrograph = load_micrograph(source, config, progress)
    if (columns is None and config.roi is None and config.crystal_region
            and not {"roi", "crystalline_fraction"} & micrograph.metadata.keys()):  # not on a restart
        from .detect.params import DetectParams

        micrograph = crystal_crop(micrograph, DetectParams.from_dict(config.detect))
    result = PipelineResult(micrograph, config)
    result.timings_s["read"] = time.perf_counter() - t0
    if not micrograph.calibrated:
        result.warn("the image has no spatial calibration: lengths are in pixels until the pixel size is set")
    elif config.reference_cif and "structure_calibration" not in micrograph.metadata:
        result.warn("the image has a pixel size: the reference CIF, which calibrates images without one, is not used")
    if micrograph.metadata.get("roi_source") == "crystal":
        result.warn(f"the crystal covers {100 * micrograph.metadata['crystalline_fraction']:.0f}% of the field; "
                    f"analysed that region only (y, x px {micrograph.metadata['roi']}; --roi overrides)")
    if columns is not None:
        result.columns, result.columns_source = columns, "user"
    return result


def run(source: Union[str, Path, Micrograph], config: Optional[PipelineConfig] = None,
        progress: Progress = no_progress, columns: Optional[Columns] = None,
        stop_after: Optional[str] = None,
        say: Callable[[str, str, Optional[dict]], None] = lambda role, text, data=None: None) -> PipelineResult:
    """Run the whole chain on one image: the one workflow that the CLI, batch, the agent's rules
    planner and the napari agent widget run too (``agent.planner.plan``: the stages in order with
    their quality gates — detection retries, the Fourier-transform check, the stability check,
    the next candidate when one cannot be reconstructed).

    ``columns``: user-edited columns to use instead of detecting (denoise still runs, so the
    lattice check sees the filtered image). ``stop_after``: name of the last stage to run.
    ``say(role, text, data)`` receives the transcript.
    """
    from .agent.planner import plan

    if stop_after is not None and stop_after not in STAGES:
        raise AutomatError(f"unknown stage {stop_after!r}; stages are {', '.join(STAGES)}")
    config = config or PipelineConfig()
    result = start(source, config, sub_progress(progress, 0.0, 0.02, "read: "), columns)
    if wants_domains(result):
        return by_domain(result, lambda crop, p: run(crop, config, p, stop_after=stop_after, say=say), say, progress)
    begin = 0.02
    if not result.micrograph.calibrated and stop_after not in ("denoise", "detect", "lattice"):
        result, begin = calibrated_from_structure(result, say, sub_progress(progress, 0.02, 0.3)), 0.3
    plan(result, say, sub_progress(progress, begin, 1.0), stop_after=stop_after)
    return rerun_corrected(result, say, progress)


def rerun_corrected(result: PipelineResult, say: Callable[[str, str, Optional[dict]], None] = lambda *a: None,
                    progress: Progress = no_progress) -> PipelineResult:
    """After the chain: run it again on the image with what the chosen structure says is off undone,
    as the config asks (``correct_scan``: :func:`scan_corrected`, then ``recalibrate``:
    :func:`recalibrated`); ``result`` itself when nothing is to be redone. Both workflows end here
    (:func:`run` and ``agent.run_agent``)."""
    return recalibrated(scan_corrected(result, say, progress), say, progress)


def calibrated_from_structure(result: PipelineResult,
                              say: Callable[[str, str, Optional[dict]], None] = lambda *a: None,
                              progress: Progress = no_progress) -> PipelineResult:
    """For an uncalibrated image whose compound is given (``config.reference_cif``, else
    ``config.elements``): the lattice measured in pixels (the planner up to the lattice), the pixel
    size the compound implies (:func:`structure_calibration`) and a fresh result at that pixel size,
    its chain still to run, warned that its lattice comes from the structure. Raises the
    :data:`UNCALIBRATED` error when no compound is given."""

    from .agent.planner import plan
    from .io.read import apply_pixel_size

    config = result.config
    if not (config.elements or config.reference_cif):
        raise AutomatError(UNCALIBRATED)
    t0 = time.perf_counter()
    say("planner", "no spatial calibration: measuring the lattice in pixels to derive the pixel size from "
                   f"{'the reference CIF' if config.reference_cif else 'the hinted compound'}", None)
    plan(result, say, sub_progress(progress, 0.0, 0.6), stop_after="lattice")
    cal = structure_calibration(result, sub_progress(progress, 0.6, 1.0))
    say("planner", cal.summary(), cal.to_dict())
    micrograph = apply_pixel_size(result.micrograph, cal.pixel_size_A)
    micrograph.metadata.update(structure_calibration=cal.to_dict(), calibration_note=f"derived from {cal.best.label}")
    columns = replace(result.columns, pixel_size_A=micrograph.pixel_size_A) if result.columns_source == "user" else None
    again = start(micrograph, config, columns=columns)
    again.timings_s["calibrate"] = time.perf_counter() - t0
    again.warn(cal.warning())
    return again


def structure_calibration(result: PipelineResult, progress: Progress = no_progress):
    """The pixel size [Å/px] at which the compound of ``result.config`` (``reference_cif``, else
    ``elements``) fits the measured lattice, scored on every reading of the columns
    (:func:`napari_automat.templates.calibrate.calibrate_pixel_size`); the lattice stage runs first
    when it has not. Raises the :data:`UNCALIBRATED` error when no compound is given."""
    from .detect.signal import shows_light_columns
    from .templates.calibrate import calibrate_pixel_size

    config = result.config
    if not (config.elements or config.reference_cif):
        raise AutomatError(UNCALIBRATED)
    if result.lattice is None:
        run_stage(result, "lattice", progress=sub_progress(progress, 0.0, 0.2))
    library = None
    if not config.reference_cif:
        from .templates import load_library

        library = load_library(config.library_path)
    readings = [(lattice, prior) for _, lattice, _, prior in column_readings(result, result.score_params)]
    return calibrate_pixel_size(readings, result.micrograph.mean_pixel_size_A, elements=config.elements,
                                reference=config.reference_cif, library=library,
                                light_columns=shows_light_columns(config.signal, result.micrograph),
                                z_exponent=config.z_exponent, params=result.score_params,
                                posterior=result.posterior_params, progress=sub_progress(progress, 0.2, 1.0))


def recalibrated(result: PipelineResult, say: Callable[[str, str, Optional[dict]], None] = lambda *a: None,
                 progress: Progress = no_progress) -> PipelineResult:
    """With ``config.recalibrate``, the chain run again on the same image with the pixel size that the
    chosen structure implies, when the file's is significantly off (``decision.calibration_warning``);
    else ``result`` itself (also when the pixel size already comes from a structure)."""

    from .agent.planner import plan
    from .decision import calibration_warning
    from .io.read import apply_pixel_size

    cal = result.calibration
    if not result.config.recalibrate or result.reconstruction is None or calibration_warning(cal) is None \
            or result.micrograph.metadata.get("recalibrated_from_A") \
            or result.micrograph.metadata.get("structure_calibration"):
        return result
    old = tuple(float(v) for v in result.micrograph.pixel_size_A)
    new = tuple(v * cal["scale_factor"] for v in old)
    micrograph = apply_pixel_size(result.micrograph, new)
    micrograph.metadata.update(recalibrated_from_A=list(old), calibration_note=f"recalibrated against {cal['against']}")
    columns = replace(result.columns, pixel_size_A=new) if result.columns_source == "user" else None
    say("planner", f"the pixel size looks off by × {cal['scale_factor']:.3f} against {cal['against']}: "
                   "running again with the recalibrated pixel size", None)
    again = start(micrograph, result.config.replace(pixel_size_A=None), columns=columns)
    plan(again, say, progress)
    again.warn(f"pixel size recalibrated from {np.mean(old):.4f} to {np.mean(new):.4f} Å/px against "
               f"{cal['against']}: the structure is written with the recalibrated lattice")
    return again


def scan_corrected(result: PipelineResult, say: Callable[[str, str, Optional[dict]], None] = lambda *a: None,
                   progress: Progress = no_progress) -> PipelineResult:
    """With ``config.correct_scan``, the chain run again on the image with the scan distortion that
    the chosen structure reveals undone (``detect.scan.undistort_scan``), when it is significant
    (``decision.scan_distortion_warning``); else ``result`` itself (also for the user's columns, which
    were measured on the distorted image, and for an image corrected already)."""
    from .agent.planner import plan
    from .decision import scan_distortion_warning
    from .detect.scan import undistort_scan

    cal = result.calibration
    m = result.micrograph
    if not result.config.correct_scan or result.reconstruction is None or result.columns_source == "user" \
            or scan_distortion_warning(cal) is None or m.metadata.get("scan_corrected"):
        return result
    dist = cal["scan_distortion"]
    corrected = {"shear": dist["shear"], "aspect": dist["aspect"], "against": cal["against"]}
    metadata = {"scan_corrected": corrected}
    if m.metadata.get("crystal_mask") is not None:
        metadata["crystal_mask"] = undistort_scan(np.asarray(m.metadata["crystal_mask"]), dist["shear"],
                                                  dist["aspect"], order=0)
    image = Micrograph(undistort_scan(m.data, dist["shear"], dist["aspect"]).astype(np.float32), m.pixel_size_A,
                       m.calibrated, m.path, dict(m.metadata, **metadata), None)
    say("planner", f"the scan looks sheared by {100 * dist['shear']:+.1f}% and stretched by "
                   f"{100 * dist['aspect']:+.1f}% against {cal['against']}: running again on the corrected image",
        None)
    again = start(image, result.config)
    try:
        plan(again, say, progress)
    except AutomatError as exc:  # the uncorrected answer stands rather than none
        result.warn(f"the scan-corrected image gave no answer ({exc}): the result is the uncorrected image's")
        return result
    again.warn(f"scan distortion undone before detection (shear {100 * dist['shear']:+.1f}%, slow/fast "
               f"{100 * dist['aspect']:+.1f}%, against {cal['against']}): positions are in the corrected image")
    return again


def wants_domains(result: PipelineResult) -> bool:
    """Whether ``result`` (just started) is to be segmented into domains: ``config.domains`` on, the
    columns not given by the user, and the image not a domain already."""
    return result.config.domains and result.columns is None and "domain" not in result.micrograph.metadata


def by_domain(result: PipelineResult, run_one: Callable[[Micrograph, Progress], PipelineResult],
              say: Callable[[str, str, Optional[dict]], None] = lambda *a: None,
              progress: Progress = no_progress) -> PipelineResult:
    """Segment ``result``'s image into domains (``detect.domains``) and run the chain on each:
    ``run_one(micrograph, progress)`` gets each domain's bounding box, with ``crystal_mask`` (detection
    drops columns outside it) the domain less ``detect_params.domain_margin_periods`` along its
    interfaces. The result of the largest domain whose chain
    succeeded is returned, with every domain's entry in ``domains`` and the labels in
    ``domain_labels``; one domain (or none) is the whole image's chain with its entry."""
    from .detect.domains import segment_domains

    t0 = time.perf_counter()
    m = result.micrograph
    found = segment_domains(m.data, m.pixel_size_A, m.metadata.get("crystal_mask"), result.detect_params)
    seconds = time.perf_counter() - t0
    say("planner", f"{len(found.domains)} domain(s) by local lattice: " + "; ".join(
        f"{d.label}: {100 * d.area_fraction:.0f}% of the field" for d in found.domains), None)
    if len(found.domains) < 2:
        runs = [run_one(m.with_data(m.data, domain=1 if found.domains else 0), progress)]
    else:
        runs = []
        for k, d in enumerate(found.domains):
            margin = result.detect_params.domain_margin_periods * found.period_px
            crop = _domain_crop(m, found.core(d.label, margin), d)
            try:
                runs.append(run_one(crop, sub_progress(progress, k / len(found.domains), (k + 1) / len(found.domains),
                                                       f"domain {d.label}: ")))
            except AutomatError as error:
                say("planner", f"domain {d.label}: {error}", None)
                runs.append(error)
    done = [r for r in runs if isinstance(r, PipelineResult)]
    if not done:
        raise runs[0]
    main = done[0]
    main.domains = [_domain_entry(d, r, found, result.origin_px) for d, r in zip(found.domains, runs)]
    main.domain_labels = _full_frame(found.labels, m)
    main.timings_s["domains"] = seconds
    main.warnings = list(dict.fromkeys(result.warnings + main.warnings))
    if len(found.domains) > 1:
        main.warn(f"{len(found.domains)} domains by local lattice; the main result is domain {runs.index(main) + 1} "
                  f"({100 * found.domains[runs.index(main)].area_fraction:.0f}% of the field), all under 'domains'")
    return main


def _domain_crop(m: Micrograph, inside: np.ndarray, domain) -> Micrograph:
    """The bounding box of ``domain`` with ``inside`` (the pixels to use) as its crystal mask, its
    ``roi`` in the full image's frame."""
    y0, y1, x0, x1 = domain.bbox
    crop = m.crop(domain.bbox, roi_source="domain", domain=domain.label, crystal_mask=inside[y0:y1, x0:x1])
    if "roi" in m.metadata:  # a crop of a crop: place it in the full image
        oy, ox = m.metadata["roi"][0], m.metadata["roi"][2]
        crop.metadata.update(roi=[y0 + oy, y1 + oy, x0 + ox, x1 + ox], full_shape=m.metadata["full_shape"])
    return crop


def _full_frame(labels: np.ndarray, m: Micrograph) -> np.ndarray:
    """``labels`` of the analysed image placed in the full image (zeros outside its ``roi``)."""
    if "roi" not in m.metadata:
        return labels
    y0, y1, x0, x1 = m.metadata["roi"]
    full = np.zeros(m.metadata["full_shape"][-2:], labels.dtype)
    full[y0:y1, x0:x1] = labels
    return full


def _domain_entry(domain, run, found, origin_px) -> dict:
    """One ``result.json`` ``domains`` entry: the domain's map entry (``detect.domains.Domain``), its
    interfaces, and the lattice and structure its chain gave (or the error that stopped it)."""
    entry = domain.to_dict(origin_px)
    entry["interfaces"] = [i.to_dict(origin_px) for i in found.interfaces if domain.label in i.labels]
    if not isinstance(run, PipelineResult):
        return dict(entry, lattice2d=None, structure=None, error=str(run))
    d = run.to_dict()
    s = d["structure"]
    structure = None if s is None else {
        "formula": s["reduced_formula"], "spacegroup": s["spacegroup_symbol"], "template_id": s["template_id"],
        "probability": d["retrieval"][run.chosen_index].get("probability")}
    return dict(entry, lattice2d=d["lattice2d"], columns=(d["columns"] or {}).get("count"), structure=structure)
