"""``PipelineConfig``: every knob of the chain in one place; CLI flags and widget fields map onto it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Optional

#: The denoising methods (``denoise.denoise``), here so that the CLI and the agent's tools name them
#: without importing the filters.
DENOISE_METHODS = ("auto", "fourier", "nlm", "gaussian", "moe", "none")


@dataclass
class PipelineConfig:
    """Settings for :func:`napari_automat.pipeline.run`. Lengths in Å, angles in degrees."""

    #: Element hint such as ``("Sr", "Ti", "O")``; empty means no hint.
    elements: tuple[str, ...] = ()
    #: Override the pixel size [Å/px] (needed when the file has no calibration).
    pixel_size_A: Optional[float] = None
    #: CIF of the compound imaged: an uncalibrated image is calibrated from it (the pixel size at
    #: which one of its projections fits the measured lattice; ``templates.calibrate``). Without it
    #: the element hint serves, through the library's compounds and decorated prototypes.
    reference_cif: Optional[str] = None
    #: Frame of a stack to analyse; ``None`` = register the frames and analyse their average
    #: (:func:`napari_automat.io.stack.average_frames`).
    frame: Optional[int] = None
    #: Analyse only this rectangle ``(y0, y1, x0, x1)`` of the image [px, ends exclusive]; ``None`` = all.
    roi: Optional[tuple[int, int, int, int]] = None
    #: Analyse only inside this polygon ``[[y, x], …]`` [px] (napari draws them): the analysed box is
    #: its bounding box and the columns detected outside it are dropped; ``None`` = no polygon.
    roi_polygon: Optional[list[list[float]]] = None
    #: Without a ``roi``, restrict the analysis to the crystalline region (``detect.region``) when it
    #: covers less than ``DetectParams.crystal_fraction_min`` of the field.
    crystal_region: bool = True
    #: Segment the field into domains by local lattice (``detect.domains``) and, when there are two
    #: or more, run the chain on each; the largest is the main result, ``result.json`` lists all.
    domains: bool = False
    #: One of :data:`DENOISE_METHODS`: ``auto`` (chosen from the spectrum), ``fourier`` (Bragg
    #: filter), ``nlm``, ``gaussian``, ``moe`` (the learned denoiser) or ``none``.
    denoise_method: str = "auto"
    #: Denoising strength multiplier (1 = default; the agent raises it on retries).
    denoise_strength: float = 1.0
    #: Minimum column separation [Å]; ``None`` = from the lattice period in the Fourier transform.
    min_separation_A: Optional[float] = None
    #: Detection threshold relative to the auto-chosen one (lower finds weaker columns).
    threshold_scale: float = 1.0
    #: HAADF Z-contrast exponent: column intensity ∝ Σ Z^n.
    z_exponent: float = 1.7
    #: Signal type when the file does not say: ``HAADF``, ``ADF``, ``ABF`` (dark columns) or ``auto``.
    signal: str = "auto"
    #: How many retrieval candidates to keep.
    top_k: int = 10
    #: Template library file; ``None`` = the packaged one (built and cached on first use).
    library_path: Optional[str] = None
    #: Which retrieved candidate to reconstruct (0 = best).
    candidate_index: int = 0
    #: The agent compares up to this many distinct top candidates (same elements) by formation
    #: energy under the energy model and reorders them (0 or 1: off; needs an energy model).
    stability_candidates: int = 5
    #: Energy backend: ``auto`` (mattersim when its checkpoint is available, else chgnet),
    #: ``mattersim``, ``chgnet`` or ``none``.
    energy_model: str = "auto"
    #: Path to a MatterSim checkpoint (``None`` = MatterSim's own default/download).
    mattersim_checkpoint: Optional[str] = None
    #: Relax positions and cell before reporting energies.
    relax: bool = True
    #: Relaxation stops when the largest force is below this [eV/Å].
    fmax_eV_A: float = 0.05
    #: Relaxation step limit.
    max_relax_steps: int = 200
    #: Relative lattice change during relaxation above which the result is flagged.
    max_lattice_change: float = 0.05
    #: Physical properties of the relaxed structure (``energy.properties``): ``none``, ``fast`` (energy
    #: above the hull, bulk modulus) or ``all`` (also phonons and the elastic tensor).
    properties: str = "none"
    #: Quality gate of the agent after the properties stage: a reconstruction whose energy above the
    #: hull exceeds this [meV/atom] (or that has imaginary phonon modes away from Γ, at level ``all``)
    #: sends the planner to the next candidate; ``None`` = no energy-above-hull gate.
    max_e_above_hull_meV: Optional[float] = 200.0
    #: Compute device for torch models.
    device: str = "cpu"
    #: When the chosen structure says the file's pixel size is off (``decision.calibration_warning``),
    #: run again with the pixel size it implies; the result then records ``calibration.applied``.
    recalibrate: bool = False
    #: When the chosen structure says the scan is sheared or stretched (``decision.scan_distortion_warning``),
    #: undo that distortion on the image and run again; the result records ``calibration.scan_distortion.corrected``.
    correct_scan: bool = False
    #: Overrides of :class:`napari_automat.templates.retrieve.ScoreParams` (field → value); ``None`` = defaults.
    score: Optional[dict] = None
    #: Overrides of :class:`napari_automat.decision.PosteriorParams` (field → value); ``None`` = fitted defaults.
    posterior: Optional[dict] = None
    #: Overrides of :class:`napari_automat.detect.params.DetectParams` (field → value); ``None`` = defaults.
    detect: Optional[dict] = None

    def __post_init__(self):
        if isinstance(self.elements, str):
            self.elements = tuple(self.elements.replace(",", " ").replace(";", " ").split())
        self.elements = tuple(self.elements)
        if self.roi is not None:
            self.roi = tuple(self.roi)
        if self.roi_polygon is not None:
            self.roi_polygon = [[float(c) for c in vertex] for vertex in self.roi_polygon]

    def replace(self, **changes) -> "PipelineConfig":
        values = asdict(self)
        values.update(changes)
        return PipelineConfig(**values)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["elements"] = list(self.elements)
        d["roi"] = None if self.roi is None else list(self.roi)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PipelineConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

