"""STEM image simulation with abTEM (PRISM): HAADF, ABF and iDPC along a zone axis.

One orthogonal period of the projected crystal is scanned at the probe's Nyquist sampling inside
a tiled potential (so the probe does not see its own periodic images); STEM images are band-limited
to twice the aperture frequency, so the period is then Fourier-interpolated onto the requested
field, pixel size and rotation exactly. Column positions come from the same geometry.
"""

from __future__ import annotations

import math

import numpy as np

from ..extras import require
from ..model import AutomatError, Micrograph, Progress, no_progress
from .geometry import ProjectedCell, cluster_columns, field_columns, field_points, field_shape, zone_frame
from .noise import add_dose_noise, as_rng
from .render import blur_periodic, integrate_gradient, sample_periodic

#: Default detector angles: HAADF in mrad; ABF and iDPC as fractions of the convergence semi-angle.
DETECTORS = {"HAADF": (70.0, 200.0), "ABF": (0.5, 1.0), "iDPC": (0.25, 1.0)}
#: Minimum size of the probe window (tiled potential / PRISM interpolation) [Å].
PROBE_WINDOW_A = 7.5


def orient_structure(structure, zone_axis, max_repetitions: int = 8):
    """Orient a pymatgen ``Structure`` with lattice direction ``zone_axis`` along ``z``.

    Returns ``(atoms, info)``: an ``ase.Atoms`` with an orthogonal periodic cell (beam along ``z``,
    the first in-plane lattice vector along ``x``) and ``info`` with ``transform`` (integer rows of
    the unimodular cell used, third = zone axis), ``cell_A`` ``(Lx, Ly, Lz)``, ``strain`` (largest
    relative distortion abTEM had to apply to make the cell orthogonal; 0 when exact) and ``warnings``.
    """
    import ase

    require("sim", "abtem")
    from abtem.atoms import orthogonalize_cell

    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    transform, rotation = zone_frame(lattice, zone_axis)
    new_lattice = transform @ lattice @ rotation.T
    frac = np.mod(np.asarray(structure.frac_coords, dtype=float) @ np.linalg.inv(transform), 1.0)
    warnings = []
    numbers = []
    for site in structure:
        species, occ = max(site.species.items(), key=lambda item: item[1])
        numbers.append(species.Z)
        if len(site.species) > 1 or occ < 0.999:
            warnings.append(f"partial occupancy at {site.species}: simulated as {species.symbol}")
    atoms = ase.Atoms(numbers=numbers, scaled_positions=frac, cell=new_lattice, pbc=True)
    try:
        ortho, affine = orthogonalize_cell(atoms, max_repetitions=max_repetitions, return_transform_matrix=True)
    except RuntimeError as exc:
        raise AutomatError(f"cannot build an orthogonal cell along {list(zone_axis)}: {exc}") from None
    stretch = np.linalg.svd(affine, compute_uv=False)
    strain = float(np.max(np.abs(stretch - 1.0)))
    if strain > 1e-3:
        warnings.append(f"no orthogonal cell within {max_repetitions} repetitions: cell strained by {strain:.1%}")
    info = {"transform": transform.tolist(), "cell_A": [float(v) for v in np.diag(ortho.cell)],
            "strain": strain, "warnings": sorted(set(warnings))}
    return ortho, info


def simulate_stem(structure, zone_axis=(0, 0, 1), thickness_A: float = 100.0, detector: str = "HAADF",
                  voltage_kV: float = 200.0, convergence_mrad: float = 20.0, defocus_A: float = 0.0,
                  Cs_A: float = 0.0, pixel_size_A: float = 0.1, field_of_view_A=None, dose_e_per_A2=None,
                  seed: int = 0, frozen_phonons: int = 0, rotation_deg: float = 0.0,
                  detector_mrad: tuple[float, float] | None = None, phonon_sigma_A: float = 0.08,
                  source_size_A: float = 0.0, progress: Progress = no_progress) -> Micrograph:
    """Simulate a STEM image of ``structure`` (pymatgen) viewed along ``zone_axis`` with abTEM PRISM.

    ``detector``: ``HAADF`` (70-200 mrad), ``ABF`` (α/2-α) or ``iDPC`` (four segments α/4-α,
    integrated DPC); ``detector_mrad`` overrides the angles. ``thickness_A`` is rounded to whole
    repeats along the beam; ``defocus_A`` follows abTEM's sign (``defocus = -C10``) [Å], ``Cs_A`` [Å].
    ``field_of_view_A``: one number (square) or ``(height, width)`` [Å]; default 8 lattice repeats,
    at least 25 Å. ``frozen_phonons`` > 0 averages that many thermal configurations (Gaussian
    displacements, standard deviation ``phonon_sigma_A`` [Å] along each axis); ``source_size_A`` is
    the standard deviation of a Gaussian (incoherent) source blur [Å]. With ``dose_e_per_A2`` the
    image holds Poisson counts
    (electrons per pixel on the detector); without, the fraction of the incident beam (HAADF, ABF)
    or the integrated DPC signal [arbitrary units, zero mean]. ``rotation_deg`` rotates the crystal
    counter-clockwise in ``(x, y)`` about the image centre. ``true_columns_px`` are exact.
    """
    detector = _detector_name(detector)
    inner, outer = _detector_angles(detector, convergence_mrad, detector_mrad)
    if pixel_size_A <= 0 or thickness_A <= 0 or convergence_mrad <= 0:
        raise AutomatError("pixel size, thickness and convergence angle must be positive")
    rng = as_rng(seed)
    progress(0.0, "orienting the structure")
    atoms, orient = orient_structure(structure, zone_axis)
    lx, ly, lz = orient["cell_A"]
    cell = _cell_from_atoms(atoms)
    shape = field_shape(cell, pixel_size_A, field_of_view_A)
    n_z = max(1, round(thickness_A / lz))
    period = _prism_period(atoms, n_z, detector, (inner, outer), voltage_kV, convergence_mrad, defocus_A, Cs_A,
                           frozen_phonons, phonon_sigma_A, rng, progress)
    period = np.array([blur_periodic(p, (lx, ly), source_size_A) for p in period])

    progress(0.96, "rendering the field")
    points = field_points(shape, pixel_size_A, rotation_deg)
    if detector == "iDPC":
        data = _idpc(period, (lx, ly), points, dose_e_per_A2, pixel_size_A, rng)
        units = "integrated DPC (arbitrary units)"
    else:
        data = np.clip(sample_periodic(period[0], (lx, ly), points), 0, None)
        units = "fraction of the incident beam"
        if dose_e_per_A2 is not None:
            data = add_dose_noise(data, dose_e_per_A2, pixel_size_A, rng, absolute=True)
            units = "counts (electrons per pixel)"

    positions, index = field_columns(cell, shape, pixel_size_A, rotation_deg)
    metadata = {"voltage_kV": float(voltage_kV), "detector": detector, "signal": detector,
                "detector_angles_mrad": [float(inner), float(outer)],
                "convergence_angle_mrad": float(convergence_mrad), "dose_e_per_A2": dose_e_per_A2,
                "units": units, "thickness_A": float(n_z * lz), "zone_axis": [int(v) for v in zone_axis],
                "defocus_A": float(defocus_A), "Cs_A": float(Cs_A), "source_size_A": float(source_size_A),
                "frozen_phonons": int(frozen_phonons),
                "rotation_deg": float(rotation_deg), "formula": structure.composition.reduced_formula,
                "simulation": "abTEM PRISM", "orientation": orient,
                "true_columns_species": [cell.column_labels[i] for i in index]}
    progress(1.0, "simulation done")
    return Micrograph(np.asarray(data, dtype=np.float32), (float(pixel_size_A), float(pixel_size_A)), True,
                      None, metadata, positions)


def _prism_period(atoms, n_z, detector, angles, voltage_kV, convergence_mrad, defocus_A, Cs_A, frozen_phonons,
                  phonon_sigma_A, rng, progress) -> np.ndarray:
    """PRISM scan of one orthogonal period: ``(n, y, x)`` detector images (n = 4 segments for iDPC)."""
    abtem = require("sim", "abtem")
    from abtem.core.energy import energy2wavelength

    lx, ly, lz = np.diag(np.asarray(atoms.cell))
    energy = voltage_kV * 1e3
    wavelength = energy2wavelength(energy)
    max_angle = 1e-3 * max(1.05 * angles[1] + 2.0, 120.0)  # covers the detector; fine enough for multislice
    interp = 2
    reps = [max(interp, math.ceil(interp * PROBE_WINDOW_A / length)) for length in (lx, ly)]
    reps = [r + r % interp for r in reps]
    gpts = tuple(_fft_size(math.ceil(r * length * 3 * max_angle / wavelength), interp)
                 for r, length in zip(reps, (lx, ly)))
    scan_step = 0.9 * wavelength / (4e-3 * convergence_mrad)  # Nyquist of the band-limited image
    scan_gpts = tuple(max(4, math.ceil(length / scan_step)) for length in (lx, ly))
    slab = atoms * (reps[0], reps[1], n_z)
    if detector == "iDPC":
        det = abtem.SegmentedDetector(nbins_radial=1, nbins_azimuthal=4, inner=angles[0], outer=angles[1],
                                      rotation=-np.pi / 4)  # segments centred on +kx, +ky, -kx, -ky
    else:
        det = abtem.AnnularDetector(inner=angles[0], outer=angles[1])
    n_configs = max(1, int(frozen_phonons))
    total = 0.0
    with abtem.config.set({"diagnostics.progress_bar": False, "fftw.planning_effort": "FFTW_ESTIMATE"}):
        for k in range(n_configs):
            progress(0.05 + 0.9 * k / n_configs, f"multislice ({k + 1}/{n_configs}, {len(slab)} atoms)")
            config = slab.copy()
            if frozen_phonons:
                config.positions += rng.normal(0.0, phonon_sigma_A, config.positions.shape)
            potential = abtem.Potential(config, gpts=gpts, slice_thickness=lz / math.ceil(lz / 2.0),
                                        projection="infinite")
            s_matrix = abtem.SMatrix(potential=potential, energy=energy, semiangle_cutoff=convergence_mrad,
                                     interpolation=interp)
            ctf = abtem.CTF(semiangle_cutoff=convergence_mrad, energy=energy, defocus=defocus_A, Cs=Cs_A)
            scan = abtem.GridScan(start=(0, 0), end=(lx, ly), gpts=scan_gpts, endpoint=False)
            measured = s_matrix.scan(scan=scan, detectors=det, ctf=ctf)
            measured = measured.compute() if hasattr(measured, "compute") else measured
            total = total + np.asarray(measured.array, dtype=float)
    signal = (total / n_configs).reshape(scan_gpts + (-1,))  # abTEM order: (x, y, detector region)
    return np.moveaxis(signal, -1, 0).transpose(0, 2, 1)


def _idpc(segments, extent, points, dose_e_per_A2, pixel_size_A, rng) -> np.ndarray:
    """Integrated DPC on the output field from the four segment images of one period.

    The noise-free signal is integrated exactly on the periodic cell; with a dose, Poisson noise of
    each segment on the output grid is integrated (mirror-padded) and added.
    """
    step = (extent[1] / segments.shape[1], extent[0] / segments.shape[2])
    phase = integrate_gradient(segments[0] - segments[2], segments[1] - segments[3], step, periodic=True)
    data = sample_periodic(phase, extent, points)
    if dose_e_per_A2 is None:
        return data
    seg_out = [np.clip(sample_periodic(s, extent, points), 0, None) for s in segments]
    counts_per_unit = dose_e_per_A2 * pixel_size_A ** 2
    noise = [add_dose_noise(s, dose_e_per_A2, pixel_size_A, rng, absolute=True) / counts_per_unit - s
             for s in seg_out]
    return data + integrate_gradient(noise[0] - noise[2], noise[1] - noise[3], pixel_size_A, periodic=False)


def _detector_name(detector: str) -> str:
    names = {name.lower(): name for name in DETECTORS}
    if str(detector).lower() not in names:
        raise AutomatError(f"unknown detector '{detector}': choose HAADF, ABF or iDPC")
    return names[str(detector).lower()]


def _detector_angles(detector: str, convergence_mrad: float, detector_mrad) -> tuple[float, float]:
    if detector_mrad is not None:
        inner, outer = (float(v) for v in detector_mrad)
    elif detector == "HAADF":
        inner, outer = DETECTORS["HAADF"]
    else:
        inner, outer = (f * convergence_mrad for f in DETECTORS[detector])
    if not 0 <= inner < outer:
        raise AutomatError(f"detector angles must satisfy 0 <= inner < outer, got {inner}, {outer} mrad")
    return inner, outer


def _cell_from_atoms(atoms) -> ProjectedCell:
    """Columns of the orthogonal simulation cell, in exactly abTEM's frame."""
    lx, ly, lz = np.diag(np.asarray(atoms.cell))
    basis = np.array([[lx, 0.0], [0.0, ly]])
    symbols = dict(zip(atoms.numbers.tolist(), atoms.get_chemical_symbols()))
    frac, column_atoms, labels = cluster_columns(atoms.get_scaled_positions()[:, :2], basis,
                                                 [[(int(z), 1.0)] for z in atoms.numbers], symbols)
    return ProjectedCell(basis, frac @ basis, column_atoms, labels, float(lz), np.eye(3, dtype=int))


def _fft_size(n: int, multiple: int) -> int:
    """Smallest integer >= n that is a multiple of ``multiple`` with no prime factor above 5."""
    n = max(n, multiple)
    while True:
        if n % multiple == 0:
            m = n
            for p in (2, 3, 5):
                while m % p == 0:
                    m //= p
            if m == 1:
                return n
        n += 1
