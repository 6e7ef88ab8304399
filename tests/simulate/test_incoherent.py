"""The fast incoherent model: Z-contrast weights, column positions, dose, speed."""


import numpy as np
import pytest
from scipy import ndimage

from napari_automat.simulate import incoherent_image


def _peak_positions(image, guesses):
    """Sub-pixel maxima near each guess ``(y, x)``: 3-point parabolas through log intensity (exact for
    a Gaussian), around the brightest pixel of the 3x3 neighbourhood."""
    out = []
    log = np.log(np.maximum(image, 1e-12))
    for y, x in np.round(guesses).astype(int):
        dy, dx = np.unravel_index(np.argmax(image[y - 1:y + 2, x - 1:x + 2]), (3, 3))
        y, x = y + dy - 1, x + dx - 1
        fy = log[y - 1:y + 2, x]
        fx = log[y, x - 1:x + 2]
        out.append([y + 0.5 * (fy[0] - fy[2]) / (fy[0] - 2 * fy[1] + fy[2]),
                    x + 0.5 * (fx[0] - fx[2]) / (fx[0] - 2 * fx[1] + fx[2])])
    return np.array(out)


def test_columns_sit_at_the_true_positions_with_z_contrast(srtio3):
    m = incoherent_image(srtio3, (0, 0, 1), pixel_size_A=0.1, field_of_view_A=30, probe_fwhm_A=0.6,
                         rotation_deg=12.0)
    assert m.calibrated and m.pixel_size_A == (0.1, 0.1) and m.shape == (300, 300)
    labels = np.array(m.metadata["true_columns_species"])
    assert len(labels) == len(m.true_columns_px)
    inner = np.all((m.true_columns_px > 5) & (m.true_columns_px < 294), axis=1)
    for label in ("Sr", "Ti+O"):
        truth = m.true_columns_px[inner & (labels == label)]
        found = _peak_positions(m.data, truth)
        assert np.abs(found - truth).max() < 0.05
    peak = {lab: m.data[tuple(np.round(m.true_columns_px[inner & (labels == lab)]).astype(int).T)].mean()
            for lab in ("Sr", "Ti+O", "O")}
    # isolated Gaussians: peak height = Σ Z^1.7 of the column (to within sampling at 0.1 Å)
    assert peak["Sr"] / peak["Ti+O"] == pytest.approx(38 ** 1.7 / (22 ** 1.7 + 8 ** 1.7), rel=0.05)
    assert peak["O"] / peak["Sr"] == pytest.approx((8 / 38) ** 1.7, rel=0.1)


def test_dose_gives_poisson_counts_and_is_seeded(srtio3):
    clean = incoherent_image(srtio3, pixel_size_A=0.2, field_of_view_A=40)
    noisy = incoherent_image(srtio3, pixel_size_A=0.2, field_of_view_A=40, dose=1e4, seed=5)
    again = incoherent_image(srtio3, pixel_size_A=0.2, field_of_view_A=40, dose=1e4, seed=5)
    other = incoherent_image(srtio3, pixel_size_A=0.2, field_of_view_A=40, dose=1e4, seed=6)
    assert np.array_equal(noisy.data, again.data) and not np.array_equal(noisy.data, other.data)
    assert np.all(noisy.data == np.round(noisy.data))
    assert noisy.data.mean() == pytest.approx(1e4 * 0.2 ** 2, rel=0.02)
    expected = clean.data * (1e4 * 0.04 / clean.data.mean())
    z = (noisy.data - expected) / np.sqrt(np.maximum(expected, 1))
    assert z[expected > 50].std() == pytest.approx(1.0, abs=0.1)


def test_field_of_view_sets_the_shape(srtio3):
    m = incoherent_image(srtio3, pixel_size_A=0.1, field_of_view_A=51.2, rotation_deg=5)
    assert m.shape == (512, 512)


def test_rotation_turns_the_lattice(srtio3):
    def main_angle(image):
        power = np.abs(np.fft.fftshift(np.fft.fft2(image - image.mean()))) ** 2
        power = ndimage.gaussian_filter(power, 1)
        ky, kx = np.mgrid[0:400, 0:400] - 200
        ring = np.abs(np.hypot(ky, kx) - 80 / 3.905) < 2  # the {100} spots: |g| = 1 / 3.905 Å⁻¹
        best = np.argmax(np.where(ring, power, 0))
        return np.degrees(np.arctan2(ky.flat[best], kx.flat[best])) % 90

    for rotation in (0.0, 30.0):
        m = incoherent_image(srtio3, pixel_size_A=0.2, field_of_view_A=80, rotation_deg=rotation)
        assert abs(main_angle(m.data) - rotation) < 3
