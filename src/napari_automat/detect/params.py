"""``DetectParams``: every number column detection, the lattice fit, motif completion and the
workflow's detection retries are made of. ``PipelineConfig.detect`` overrides fields and
``result.json`` records them (``parameters.detect``). Lengths in Å."""

from __future__ import annotations

from dataclasses import dataclass

from ..model import Parameters


@dataclass(frozen=True)
class DetectParams(Parameters):
    """Detection and lattice numbers (see each field); the defaults are the project's own."""

    #: Peaks: minimum column separation as a fraction of the dominant lattice spacing of the
    #: Fourier transform ...
    separation_per_period: float = 0.4
    #: ... a column stands this many noise deviations above its surroundings ...
    noise_sigmas: float = 5.0
    #: ... and reaches this fraction of the bright columns' contrast (95th percentile).
    relative_contrast: float = 0.1
    #: Lattice: two columns are one lattice point apart within this fraction of the median
    #: nearest-neighbour distance ...
    tolerance: float = 0.25
    #: ... and a translation is a lattice vector when it maps this fraction of columns onto columns.
    min_invariance: float = 0.8
    #: A superlattice from the Bragg spots is taken when it agrees with them within this (relative).
    max_fft_mismatch: float = 0.05
    #: Intensity classes: neighbouring classes differ by this ratio of mean intensities ...
    class_min_ratio: float = 1.25
    #: ... and by this many pooled standard deviations (Ashman's D; k-means halves of one Gaussian
    #: class reach 2.7, of a uniform one 3.5) ...
    class_min_separation: float = 4.0
    #: ... and each holds at least this fraction of the columns.
    class_min_fraction: float = 0.05
    #: Outliers: a column is dim or bright beyond this robust z of log intensity in its sublattice ...
    outlier_z: float = 4.0
    #: ... and at least this relative change ...
    outlier_min_change: float = 0.15
    #: ... among at least this many members.
    outlier_min_members: int = 8
    #: Motif completion: folded-residual peaks at least this far from known sites [Å] ...
    completion_min_distance_A: float = 0.7
    #: ... this many robust deviations above the folded residual's median ...
    completion_min_snr: float = 6.0
    #: ... and this fraction of the weakest known site's folded height ...
    completion_min_fraction: float = 0.08
    #: ... at most this many sites added.
    completion_max_sites: int = 2
    #: An added column whose fit ends farther than this from its predicted place is dropped [Å].
    completion_max_shift_A: float = 0.25
    #: An added site is kept when this fraction of its columns fit, with a median width in
    #: ``completion_width_range`` of the known columns', a median R² of ``completion_min_r2`` ...
    completion_min_fitted: float = 0.8
    completion_width_range: tuple[float, float] = (0.6, 1.6)
    completion_min_r2: float = 0.9
    #: ... and an intensity at least this fraction of the bright columns' (the template library
    #: takes columns under 10% as invisible: adding sites near 10% would make the motif disagree
    #: with templates that leave them out).
    completion_min_visible: float = 0.2
    #: A sublattice is a probe-tail artefact when its median intensity is under this fraction of
    #: the brightest's ...
    artefact_fraction: float = 0.25
    #: ... its median fit R² under this, while the bright sublattices' is over ``clean_r2`` ...
    artefact_r2: float = 0.85
    clean_r2: float = 0.95
    #: ... and its columns sit amid three or more others (third-nearest over nearest distance below this).
    artefact_equidistant: float = 1.15
    #: Workflow retries of detection: (denoise method, strength, threshold scale) tried in turn
    #: (``None``: as configured) ...
    detection_attempts: tuple = ((None, None, None), ("auto", 2.0, 0.8), ("nlm", 3.0, 0.6))
    #: ... when no lattice is found, or when its basis differs from the Fourier transform's by more
    #: than this (relative); the first one is kept if no retry agrees better.
    fft_retry: float = 0.2
    #: Crystalline region (``detect.region``): a tile is crystalline when the mean of its strongest
    #: whitened spectrum bins exceeds this (a tile of noise, amorphous or not, gives 20–65) ...
    region_threshold: float = 80.0
    #: ... the map's tiles span at least this many lattice cells (a power of two pixels, at least
    #: ``region_min_tile_px``) ...
    region_tile_periods: float = 6.0
    region_min_tile_px: int = 64
    #: ... and without a user ROI the analysis keeps to the region when it covers less than this
    #: fraction of the field.
    crystal_fraction_min: float = 0.7
    #: Domains (``detect.domains``): the image's Bragg spots used, at most this many ...
    domain_max_spots: int = 8
    #: ... each with at least this fraction of the strongest spot's excess power.
    domain_min_spot: float = 0.02
    #: Width (Gaussian sigma) of the local spot-amplitude maps, in periods of the longest lattice
    #: spacing: the boundary is resolved to about this.
    domain_sigma_periods: float = 1.0
    #: Spot amplitudes are compared on a log scale after adding this fraction of each spot's strong
    #: level (95th percentile over the field), so a weak or absent spot's noise does not count.
    domain_amplitude_floor: float = 0.25
    #: Two places are one crystal when no spot's floored amplitude differs by more than this factor
    #: (average linkage).
    domain_tolerance: float = 2.0
    #: Domains under this fraction of the analysed field join their nearest neighbour.
    domain_min_fraction: float = 0.05
    #: At most this many sample points are clustered (the rest take the nearest cluster).
    domain_samples: int = 2000
    #: A domain's chain uses only its columns farther than this from another domain [periods of the
    #: longest lattice spacing]: the interface row mixes both (PbTiO3 under SrRuO3: with a quarter
    #: period the Pb and Ti columns fit as one centred lattice; with a whole one the SrRuO3 layer,
    #: four to six cells thick, keeps too few columns for its lattice).
    domain_margin_periods: float = 0.5


DEFAULT_DETECT = DetectParams()
