"""HSRS phantom simulator with exact ground truth: ``python -m scripts.simulate --out DIR --num N --seed S``.

Each phantom is a field of view of exfoliated cells imaged by hyperspectral SRS in the C–H
window. The ground-truth label map (0 background, 1 nucleus, 2 lipid droplet) is rasterised from
the geometry *before* any blur or noise; the stack is then built from physics, in this order
(every effect, its parameter range per difficulty preset and the source of the numbers are
documented in ``docs/simulation.md``):

1. geometry: irregular cells alone and in touching clusters, one nucleus per cell (with nucleoli),
   lipid droplets (LDs) 1–12 px across in the cytoplasm (some cells none), out-of-focus LDs,
   debris, granular cytoplasm texture;
2. concentration maps of lipid, protein, DNA and water, blurred by the optical PSF;
3. spectra: reference Raman spectra (:mod:`scripts.spectra.reference`) broadened by the spectral
   resolution and shifted by a small calibration error, mixed linearly per pixel;
4. non-Raman background (cross-phase modulation, two-photon absorption), strongest at the
   low-delay end of the frame axis, towards the field edges and at object edges;
5. per-frame laser power drift, detector offset;
6. noise: shot noise of the probe beam (signal independent), laser intensity noise (proportional
   to the signal) and read noise, over a range of SNR.

Besides the semantic label map, every phantom carries exact **instance maps** from the same
geometry: cells, nuclei (nucleus id = id of its cell) and lipid droplets (one id per drawn
droplet, with the cell that drew it). They take no random draws, so the stack and the label map
of a seed are the same with or without them.

The same seed gives the same bytes. Output: ``DIR/images/<stem>``, ``DIR/labels/<stem>``,
``DIR/instances/<stem>.tif`` and a MONAI datalist ``DIR/datalist.json``
(``training``/``validation``/``test``), plus ``DIR/simulation.json`` with every phantom's sampled
parameters (SNR, background level ...).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from scripts.simulation.envelope import EnvelopeRanges, draw_envelope, envelope_gain
from scripts.spectra.axis import CANONICAL_NUM_FRAMES, CANONICAL_RANGE
from scripts.spectra.reference import spectra_matrix

logger = logging.getLogger(__name__)

Range = tuple[float, float]


@dataclass(frozen=True)
class TissueRanges:
    """Parameter ranges of a *tissue* field: the whole field covered by packed cells (a section).

    Lipid-rich cytoplasm, densely packed round lipid vesicles / droplets, nuclei of weak chemical
    contrast (some cells cut without their nucleus), lumen (empty, water only) and folds (two
    tissue layers on top of each other).
    """

    cell_diameter_um: Range = (8.0, 18.0)  #: equivalent diameter of a cell of the tessellation
    boundary_warp_um: Range = (0.5, 2.0)  #: amplitude of the smooth warp that curves cell boundaries
    nucleus_to_cell: Range = (0.35, 0.55)
    nucleus_in_section: float = 0.8  #: chance that a cell's nucleus lies in the imaged plane
    nucleus_protein: Range = (0.85, 1.05)  #: relative to the cell's cytoplasmic protein (weak contrast)
    nucleus_dna: Range = (0.05, 0.2)
    cytoplasm_lipid: Range = (0.25, 0.7)  #: lipid-rich cytoplasm (membranes, unresolved vesicles)
    vesicles_per_100um2: Range = (4.0, 20.0)  #: labelled lipid vesicles / droplets per 100 µm² of tissue
    vesicle_diameter_um: Range = (0.5, 2.5)  #: 2–10 px at 0.25 µm
    vesicle_lipid: Range = (1.0, 3.5)
    lumen_count: Range = (0.0, 2.0)  #: lumina per field (rounded down)
    lumen_diameter_um: Range = (8.0, 30.0)
    fold_probability: float = 0.4  #: chance of one fold (a band of doubled tissue) in the field
    fold_width_um: Range = (2.0, 8.0)
    fold_gain: Range = (0.4, 1.0)  #: extra density in the fold


@dataclass(frozen=True)
class OrganismRanges:
    """Parameter ranges of an *organism* field: a small animal's elongated body (e.g. a nematode) crossing the field.

    The body is a curved tube with a lumen (the gut) along its axis; its tissue (:attr:`tissue`, the
    tissue scene's cells, nuclei and vesicles inside the body only) is densely packed with lipid
    droplets (intestinal fat stores), nuclei faint or absent. Outside the body: buffer / agarose pad
    (water only).
    """

    body_width_um: Range = (15.0, 60.0)  #: body diameter (larval to adult nematodes)
    lumen_width_um: Range = (1.0, 5.0)  #: the gut lumen along the body axis
    bend: Range = (0.0, 0.35)  #: amplitude of the body's curvature, as a fraction of the field size
    tissue: TissueRanges = field(
        default_factory=lambda: TissueRanges(
            cell_diameter_um=(8.0, 20.0),
            nucleus_to_cell=(0.3, 0.45),
            nucleus_in_section=0.35,
            nucleus_protein=(0.9, 1.05),
            nucleus_dna=(0.02, 0.12),
            cytoplasm_lipid=(0.2, 0.6),
            vesicles_per_100um2=(10.0, 40.0),
            vesicle_diameter_um=(0.5, 3.0),
            vesicle_lipid=(1.5, 5.0),
            lumen_count=(0.0, 0.0),
            fold_probability=0.0,
        )
    )


@dataclass(frozen=True)
class InstrumentRanges:
    """Instrument randomization: what differs between microscopes, applied on top of the sample.

    Frames are drawn evenly over [``window_start``, ``window_end``] (any window covering the
    bundle's minimum 2845–2985 cm⁻¹), stored ascending or descending; detection is digitised at 8,
    12 or 16 bits with a full scale that may saturate the brightest pixels; laser scanning adds
    line (row) artefacts; the illumination may be uneven across the field.
    """

    window_start: Range = (2770.0, 2840.0)  #: cm⁻¹ of the lowest frame
    window_end: Range = (2990.0, 3080.0)  #: cm⁻¹ of the highest frame
    frames: Range = (30.0, 200.0)  #: number of frames (rounded)
    descending_probability: float = 0.5  #: chance that frames are stored high-to-low
    bit_depths: tuple[int, ...] = (8, 12, 16)  #: digitiser resolutions, one drawn per stack
    quantize_probability: float = 0.7  #: chance that the stack is digitised (else float, as a lock-in export)
    full_scale: Range = (0.6, 1.6)  #: digitiser full scale / the stack's 99.9th percentile (< 1 saturates)
    stripe_probability: float = 0.5  #: chance of line artefacts
    stripes: Range = (0.01, 0.08)  #: sd of the per-line (row) gain noise
    illumination: Range = (0.0, 0.5)  #: amplitude of a smooth multiplicative illumination field
    #: raw spectral focusing: the pulse-overlap envelope over the frames (probability 0: power-normalised stacks)
    envelope: EnvelopeRanges = field(default_factory=EnvelopeRanges)
    dark_offset: Range = (0.0, 0.0)  #: digitiser dark offset, a fraction of the full scale added before clipping
    #: chance that the file stores no wavenumbers (raw acquisition software writes frames only)
    unstored_axis_probability: float = 0.0


@dataclass(frozen=True)
class PhantomPreset:
    """Parameter ranges of one difficulty level; every phantom draws its values uniformly from them.

    Intensities are in units of the mean cytoplasmic protein signal at its ~2935 cm⁻¹ peak (= 1).
    """

    snr: Range  #: cytoplasm protein peak / shot-noise sd
    intensity_noise: Range  #: laser intensity noise, sd as a fraction of the local signal
    read_noise: Range  #: detector read noise sd
    detector_offset: Range  #: constant lock-in / digitiser offset
    background: Range  #: non-Raman background at its spectral maximum, field centre
    background_edge_gain: Range  #: extra background factor at the field corners
    background_decay: Range  #: cm⁻¹ over which the background decays from the low-delay end
    xpm_edges: Range  #: cross-phase-modulation signal at object edges
    water: Range  #: water O–H tail at its value in the window's last frame
    power_drift: Range  #: sd of the per-frame laser power drift (fraction)
    calibration_shift: Range  #: |spectral calibration error|, cm⁻¹
    spectral_resolution: Range  #: FWHM cm⁻¹
    psf_fwhm_um: Range  #: lateral optical resolution (FWHM, µm)
    cells_per_mm2: Range  #: cell groups per mm² of field
    cluster_probability: float  #: chance that a group is a touching cluster of 2–5 cells
    cell_diameter_um: Range
    cell_brightness: Range  #: per-cell biomass density factor
    nucleus_to_cell: Range  #: nucleus diameter / cell diameter
    nucleus_protein: Range  #: nuclear protein relative to the cell's cytoplasm
    nucleus_dna: Range  #: nuclear DNA relative to the cell's cytoplasmic protein
    cytoplasm_lipid: Range  #: diffuse cytoplasmic lipid (membranes, unresolved LDs)
    texture: Range  #: sd of the granular cytoplasm density modulation
    lds_per_cell: Range  #: mean LD count per cell (Poisson)
    cells_without_lds: float  #: fraction of cells with no LD
    ld_diameter_um: Range  #: LD diameters, log-uniform
    ld_lipid: Range  #: lipid density inside an LD
    out_of_focus_lds_per_cell: Range
    debris_per_mm2: Range
    #: chance that a field is a tissue section (:class:`TissueRanges`) instead of exfoliated cells
    tissue_probability: float = 0.0
    tissue: TissueRanges | None = None
    #: chance that a field is an organism (:class:`OrganismRanges`; drawn before the tissue chance)
    organism_probability: float = 0.0
    organism: OrganismRanges | None = None
    #: instrument randomization (window, frames, direction, digitiser, artefacts); None: the canonical instrument
    instrument: InstrumentRanges | None = None
    #: patchy chromatin: fraction of the nuclear protein and DNA missing in dim patches (and the extra
    #: DNA of dense clumps); 0: uniform nuclei (no random draws)
    nucleus_heterogeneity: Range = (0.0, 0.0)


PRESETS: dict[str, PhantomPreset] = {
    "default": PhantomPreset(
        snr=(8.0, 25.0),
        intensity_noise=(0.01, 0.03),
        read_noise=(0.01, 0.03),
        detector_offset=(0.1, 0.4),
        background=(0.1, 0.35),
        background_edge_gain=(0.2, 0.8),
        background_decay=(60.0, 150.0),
        xpm_edges=(0.05, 0.2),
        water=(0.08, 0.2),
        power_drift=(0.02, 0.05),
        calibration_shift=(0.0, 4.0),
        spectral_resolution=(20.0, 30.0),
        psf_fwhm_um=(0.3, 0.4),
        cells_per_mm2=(300.0, 650.0),
        cluster_probability=0.5,
        cell_diameter_um=(10.0, 30.0),
        cell_brightness=(0.7, 1.3),
        nucleus_to_cell=(0.4, 0.65),
        nucleus_protein=(0.85, 1.1),
        nucleus_dna=(0.25, 0.45),
        cytoplasm_lipid=(0.08, 0.2),
        texture=(0.08, 0.18),
        lds_per_cell=(2.0, 12.0),
        cells_without_lds=0.15,
        ld_diameter_um=(0.3, 3.0),
        ld_lipid=(1.5, 5.0),
        out_of_focus_lds_per_cell=(0.0, 3.0),
        debris_per_mm2=(150.0, 500.0),
    )
}
PRESETS["easy"] = replace(
    PRESETS["default"],
    snr=(25.0, 50.0),
    intensity_noise=(0.005, 0.01),
    background=(0.03, 0.1),
    background_edge_gain=(0.0, 0.3),
    xpm_edges=(0.0, 0.05),
    water=(0.05, 0.1),
    power_drift=(0.0, 0.02),
    calibration_shift=(0.0, 0.0),
    cluster_probability=0.2,
    nucleus_dna=(0.35, 0.5),
    ld_diameter_um=(0.5, 3.0),
    ld_lipid=(2.5, 6.0),
    out_of_focus_lds_per_cell=(0.0, 1.0),
    debris_per_mm2=(0.0, 150.0),
)
PRESETS["hard"] = replace(
    PRESETS["default"],
    snr=(3.0, 10.0),
    intensity_noise=(0.02, 0.05),
    read_noise=(0.02, 0.05),
    background=(0.3, 0.8),
    background_edge_gain=(0.5, 1.5),
    xpm_edges=(0.15, 0.4),
    water=(0.15, 0.3),
    power_drift=(0.05, 0.12),
    calibration_shift=(2.0, 8.0),
    psf_fwhm_um=(0.35, 0.45),
    cluster_probability=0.7,
    cell_brightness=(0.5, 1.5),
    nucleus_dna=(0.15, 0.35),
    ld_lipid=(1.2, 3.5),
    out_of_focus_lds_per_cell=(1.0, 5.0),
    debris_per_mm2=(400.0, 1000.0),
)
#: a tissue section under the default instrument and noise (a held-out scene type for the benchmark)
PRESETS["tissue"] = replace(
    PRESETS["default"], tissue_probability=1.0, tissue=TissueRanges(), debris_per_mm2=(0.0, 50.0)
)
#: few cells whose nuclei have nucleoli and patchy chromatin, under the default instrument and noise (a held-out
#: nucleus appearance for the per-cell readout's benchmark: the network breaks such nuclei into pieces)
PRESETS["heterogeneous_nuclei"] = replace(
    PRESETS["default"],
    cells_per_mm2=(600.0, 900.0),
    cluster_probability=0.4,
    cell_diameter_um=(12.0, 22.0),
    nucleus_heterogeneity=(0.5, 0.9),
)
#: the training distribution of the shipped weights: cells and tissue, easy through hard sample and noise
#: ranges, stronger background, spectral resolution 15–40 cm⁻¹ and every instrument effect of
#: :class:`InstrumentRanges`
PRESETS["randomized"] = replace(
    PRESETS["default"],
    snr=(3.0, 50.0),
    intensity_noise=(0.005, 0.05),
    read_noise=(0.01, 0.05),
    detector_offset=(0.0, 0.5),
    background=(0.03, 1.5),
    background_edge_gain=(0.0, 1.5),
    background_decay=(40.0, 200.0),
    xpm_edges=(0.0, 0.4),
    water=(0.05, 0.3),
    power_drift=(0.0, 0.12),
    calibration_shift=(0.0, 8.0),
    spectral_resolution=(15.0, 40.0),
    psf_fwhm_um=(0.3, 0.45),
    cluster_probability=0.6,
    cell_brightness=(0.5, 1.5),
    nucleus_dna=(0.15, 0.5),
    ld_diameter_um=(0.3, 3.0),
    ld_lipid=(1.2, 6.0),
    out_of_focus_lds_per_cell=(0.0, 5.0),
    debris_per_mm2=(0.0, 1000.0),
    tissue_probability=0.35,
    tissue=TissueRanges(),
    organism_probability=0.15,
    organism=OrganismRanges(),
    instrument=InstrumentRanges(envelope=EnvelopeRanges(probability=0.5), dark_offset=(0.0, 0.08)),
)
#: raw spectral-focusing acquisitions as labs record them: the randomized scenes under a pulse-overlap envelope,
#: 8-bit with a dark offset, 50–120 frames in either order, no wavenumbers in the file (a held-out instrument)
PRESETS["raw_spectral_focusing"] = replace(
    PRESETS["randomized"],
    instrument=InstrumentRanges(
        frames=(50.0, 120.0),
        bit_depths=(8,),
        quantize_probability=1.0,
        full_scale=(0.7, 1.3),
        envelope=EnvelopeRanges(probability=1.0),
        dark_offset=(0.01, 0.08),
        unstored_axis_probability=1.0,
    ),
)


@dataclass
class Phantom:
    """One simulated field of view.

    The instance maps are exact ground truth from the geometry, consistent with ``labels``:
    ``nuclei > 0`` is exactly ``labels == 1`` and ``droplets > 0`` exactly ``labels == 2`` (lipid
    droplets are drawn over nuclei and over earlier droplets, as in the label map).

    Attributes:
        stack: (K, H, W) float32 HSRS stack, frames in the order of ``wavenumbers``.
        labels: (H, W) uint8 ground truth: 0 background, 1 nucleus, 2 lipid droplet.
        wavenumbers: (K,) Raman shift of each frame, cm⁻¹.
        params: the values drawn for this phantom (SNR, background, counts ...).
        cells: (H, W) int32 cell ids 1..n (0: no cell), in drawing order; a cell's nucleus and lipid
            droplets are part of it. Debris is not a cell.
        nuclei: (H, W) int32 nucleus ids, equal to the id of the cell holding the nucleus (0: none).
        droplets: (H, W) int32 lipid-droplet ids 1..m (touching droplets keep their own ids).
        droplet_cell: (m + 1,) int32 id of the cell that holds each droplet; index 0 unused. A
            droplet near the cell edge may reach a few pixels beyond its cell.
        has_nucleus: (n + 1,) bool, whether each cell's nucleus lies in the field (a cell cut by
            the field edge may have lost it); index 0 unused.
        counts: (K, H, W) the digitiser's integer levels (uint8 up to 8 bits, else uint16) of a
            digitised stack, as the instrument would write them; None for an undigitised one.
    """

    stack: np.ndarray
    labels: np.ndarray
    wavenumbers: np.ndarray
    params: dict
    cells: np.ndarray | None = None
    nuclei: np.ndarray | None = None
    droplets: np.ndarray | None = None
    droplet_cell: np.ndarray | None = None
    has_nucleus: np.ndarray | None = None
    counts: np.ndarray | None = None

    def instance_maps(self) -> dict[str, np.ndarray]:
        """The three instance maps by name, in file channel order: cells, nuclei, lipid_droplets."""
        return {"cells": self.cells, "nuclei": self.nuclei, "lipid_droplets": self.droplets}


def _u(rng: np.random.Generator, r: Range) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def _shape_harmonics(rng: np.random.Generator, irregularity: float) -> np.ndarray:
    """Random Fourier coefficients (k = 2..5) of an irregular closed outline r(θ)."""
    k = np.arange(2, 6)
    return np.stack([rng.normal(0, irregularity / k), rng.uniform(0, 2 * np.pi, k.size)], axis=1)


def _normalised_radius(yy, xx, centre, radius, aspect, angle, harmonics) -> np.ndarray:
    """ρ = distance / outline radius at that angle; the shape's interior is ρ < 1."""
    dy, dx = yy - centre[0], xx - centre[1]
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, (-s * dx + c * dy) / aspect
    theta = np.arctan2(v, u)
    outline = 1.0 + sum(a * np.cos(k * theta + ph) for k, (a, ph) in enumerate(harmonics, start=2))
    return np.hypot(u, v) / (radius * np.clip(outline, 0.6, None))


@dataclass
class _Cell:
    centre: tuple[float, float]
    radius: float  # px
    aspect: float
    angle: float
    harmonics: np.ndarray
    brightness: float


class _Canvas:
    """Geometry and concentration maps of one field of view, filled object by object."""

    def __init__(self, height: int, width: int):
        self.shape = (height, width)
        self.owner = np.full((height, width), -1, np.int32)  # cell index per pixel
        self.rho = np.full((height, width), np.inf, np.float32)
        self.nucleus = np.zeros((height, width), bool)
        self.ld_label = np.zeros((height, width), bool)
        self.ld_id = np.zeros((height, width), np.int32)  # lipid-droplet id per pixel (1-based, drawing order)
        self.ld_cell: list[int] = []  # index of the cell that drew each droplet
        self.lipid = np.zeros((height, width), np.float32)
        self.protein = np.zeros((height, width), np.float32)
        self.dna = np.zeros((height, width), np.float32)
        self.out_of_focus = np.zeros((height, width), np.float32)

    def box(self, centre, half):
        h, w = self.shape
        y0, y1 = max(int(centre[0] - half), 0), min(int(centre[0] + half) + 2, h)
        x0, x1 = max(int(centre[1] - half), 0), min(int(centre[1] + half) + 2, w)
        if y0 >= y1 or x0 >= x1:
            return None
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        return (slice(y0, y1), slice(x0, x1)), yy + 0.5, xx + 0.5  # pixel centres


def _place_cells(rng: np.random.Generator, p: PhantomPreset, h: int, w: int, px_um: float) -> list[_Cell]:
    area_mm2 = h * w * (px_um * 1e-3) ** 2
    n_groups = max(1, int(rng.poisson(_u(rng, p.cells_per_mm2) * area_mm2)))
    cells: list[_Cell] = []

    def new_cell(centre):
        return _Cell(
            centre=centre,
            radius=_u(rng, p.cell_diameter_um) / 2 / px_um,
            aspect=float(rng.uniform(0.75, 1.0)),
            angle=float(rng.uniform(0, np.pi)),
            harmonics=_shape_harmonics(rng, 0.12),
            brightness=_u(rng, p.cell_brightness),
        )

    for _ in range(n_groups):
        size = int(rng.integers(2, 6)) if rng.random() < p.cluster_probability else 1
        for _attempt in range(20):  # find a free spot for the group's first cell
            first = new_cell((float(rng.uniform(-0.05, 1.05) * h), float(rng.uniform(-0.05, 1.05) * w)))
            if all(
                np.hypot(first.centre[0] - c.centre[0], first.centre[1] - c.centre[1]) > 1.1 * (first.radius + c.radius)
                for c in cells
            ):
                break
        else:
            continue
        group = [first]
        for _ in range(size - 1):  # touching neighbours: the outlines overlap, pixels go to the nearer cell
            anchor = group[int(rng.integers(len(group)))]
            cell = new_cell(anchor.centre)
            phi = rng.uniform(0, 2 * np.pi)
            dist = (anchor.radius + cell.radius) * rng.uniform(0.8, 0.95)
            cell.centre = (anchor.centre[0] + dist * np.sin(phi), anchor.centre[1] + dist * np.cos(phi))
            if all(
                np.hypot(cell.centre[0] - c.centre[0], cell.centre[1] - c.centre[1]) > 0.75 * (cell.radius + c.radius)
                for c in cells + group
            ):
                group.append(cell)
        cells += group
    return cells


def _draw_disk(canvas: _Canvas, centre, radius: float, supersample: int = 4):
    """Coverage (0..1) of a disk over the pixels of its bounding box, by supersampling."""
    found = canvas.box(centre, radius + 1)
    if found is None:
        return None
    sl, yy, xx = found
    offs = (np.arange(supersample) + 0.5) / supersample - 0.5
    cover = np.zeros(yy.shape, np.float32)
    for oy in offs:
        for ox in offs:
            cover += (yy + oy - centre[0]) ** 2 + (xx + ox - centre[1]) ** 2 <= radius**2
    return sl, cover / supersample**2


def _fill_cells(rng: np.random.Generator, p: PhantomPreset, canvas: _Canvas, cells: list[_Cell], px_um: float) -> dict:
    h, w = canvas.shape
    # 1. cell bodies: each pixel belongs to the cell with the smallest normalised radius
    for i, cell in enumerate(cells):
        found = canvas.box(cell.centre, cell.radius * 1.5)
        if found is None:
            continue
        sl, yy, xx = found
        rho = _normalised_radius(yy, xx, cell.centre, cell.radius, cell.aspect, cell.angle, cell.harmonics)
        better = (rho < 1.0) & (rho < canvas.rho[sl])
        canvas.rho[sl][better] = rho[better]
        canvas.owner[sl][better] = i
    texture = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), 1.5)
    texture /= texture.std() + 1e-6
    n_lds = n_oof = 0
    cytoplasm_all = np.zeros((h, w), bool)
    oof_points = []
    for i, cell in enumerate(cells):
        found = canvas.box(cell.centre, cell.radius * 1.5)
        if found is None:
            continue
        sl, yy, xx = found
        mine = canvas.owner[sl] == i
        if not mine.any():
            continue
        # 2. nucleus: inside the cell with a margin, offset from the centre, its own irregular outline
        n_radius = cell.radius * _u(rng, p.nucleus_to_cell)
        offset = rng.normal(0, 0.12 * cell.radius, 2)
        n_centre = (cell.centre[0] + offset[0], cell.centre[1] + offset[1])
        n_rho = _normalised_radius(
            yy,
            xx,
            n_centre,
            n_radius,
            float(rng.uniform(0.75, 1.0)),
            float(rng.uniform(0, np.pi)),
            _shape_harmonics(rng, 0.05),
        )
        nucleus = (n_rho < 1.0) & mine & (canvas.rho[sl] < 0.85)
        cytoplasm = mine & ~nucleus
        canvas.nucleus[sl] |= nucleus
        cytoplasm_all[sl] |= cytoplasm
        b = cell.brightness
        grain = 1.0 + _u(rng, p.texture) * texture[sl]
        canvas.protein[sl] += np.where(cytoplasm, b * grain, 0.0).astype(np.float32)
        canvas.lipid[sl] += np.where(cytoplasm, b * _u(rng, p.cytoplasm_lipid) * grain, 0.0).astype(np.float32)
        canvas.protein[sl] += np.where(nucleus, b * _u(rng, p.nucleus_protein), 0.0).astype(np.float32)
        canvas.dna[sl] += np.where(
            nucleus, b * _u(rng, p.nucleus_dna) * (1.0 + 0.5 * _u(rng, p.texture) * texture[sl]), 0.0
        ).astype(np.float32)
        canvas.lipid[sl] += np.where(nucleus, b * 0.03, 0.0).astype(np.float32)
        het = _u(rng, p.nucleus_heterogeneity) if p.nucleus_heterogeneity[1] > 0 else 0.0
        if het > 0 and nucleus.any():
            # patchy chromatin from smoothed noise (patches ~2–3 µm across): dim ones (about a quarter of the
            # nucleus, low density: a fraction het of the protein and DNA missing) and dense clumps (about a
            # fifth, up to 2 het more DNA); all still labelled nucleus
            z = ndimage.gaussian_filter(rng.standard_normal(nucleus.shape).astype(np.float32), 0.75 / px_um)
            z /= z[nucleus].std() + 1e-6
            dim = (het * nucleus * 0.5 * (1.0 + np.tanh((z - 0.7) / 0.3))).astype(np.float32)  # smooth steps
            clump = (het * nucleus * 0.5 * (1.0 - np.tanh((z + 0.9) / 0.3))).astype(np.float32)
            canvas.protein[sl] *= 1.0 - dim
            canvas.dna[sl] *= (1.0 - dim) * (1.0 + 2.0 * clump)
        # nucleoli: dense protein/RNA spots, part of the nucleus
        ys, xs = np.nonzero(nucleus & (n_rho < 0.6))
        for _ in range(int(rng.integers(0, 4)) if ys.size else 0):
            j = int(rng.integers(ys.size))
            disk = _draw_disk(canvas, (yy[ys[j], xs[j]], xx[ys[j], xs[j]]), float(rng.uniform(1.0, 2.0)) / px_um / 2)
            if disk is not None:
                canvas.protein[disk[0]] += 0.35 * b * disk[1] * canvas.nucleus[disk[0]]
                canvas.dna[disk[0]] += 0.15 * b * disk[1] * canvas.nucleus[disk[0]]
        # 3. lipid droplets in the cytoplasm, away from the nucleus and the cell edge, not overlapping
        inner = cytoplasm & (canvas.rho[sl] < 0.92) & ~ndimage.binary_dilation(nucleus, iterations=2)
        ys, xs = np.nonzero(inner)
        count = 0 if rng.random() < p.cells_without_lds or ys.size == 0 else int(rng.poisson(_u(rng, p.lds_per_cell)))
        placed: list[tuple[float, float, float]] = []
        for _ in range(count * 5):
            if len(placed) >= count:
                break
            j = int(rng.integers(ys.size))
            centre = (yy[ys[j], xs[j]] + rng.uniform(-0.5, 0.5), xx[ys[j], xs[j]] + rng.uniform(-0.5, 0.5))
            radius = float(np.exp(rng.uniform(*np.log(p.ld_diameter_um)))) / px_um / 2
            if any(np.hypot(centre[0] - q[0], centre[1] - q[1]) < radius + q[2] + 1.5 for q in placed):
                continue
            disk = _draw_disk(canvas, centre, radius)
            if disk is None:
                continue
            dsl, cover = disk
            canvas.lipid[dsl] += _u(rng, p.ld_lipid) * b * cover
            canvas.protein[dsl] *= 1.0 - 0.7 * cover  # the droplet displaces cytoplasm
            label = cover >= 0.5
            cy, cx = int(centre[0]) - dsl[0].start, int(centre[1]) - dsl[1].start
            if 0 <= cy < label.shape[0] and 0 <= cx < label.shape[1]:
                label[cy, cx] = True  # a droplet smaller than a pixel still marks the pixel it sits in
            canvas.ld_label[dsl] |= label
            canvas.ld_cell.append(i)
            canvas.ld_id[dsl][label] = len(canvas.ld_cell)
            placed.append((*centre, radius))
        n_lds += len(placed)
        # out-of-focus droplets above/below the focal plane: diffuse lipid, not labelled
        for _ in range(int(rng.poisson(_u(rng, p.out_of_focus_lds_per_cell))) if ys.size else 0):
            j = int(rng.integers(ys.size))
            oof_points.append((int(yy[ys[j], xs[j]]), int(xx[ys[j], xs[j]]), _u(rng, p.ld_lipid) * b))
            n_oof += 1
    for y, x, amp in oof_points:
        if 0 <= y < h and 0 <= x < w:
            canvas.out_of_focus[y, x] += amp * 40.0  # ~ a 2 µm droplet spread by defocus
    sigma_oof = float(rng.uniform(3.0, 6.0))
    canvas.lipid += ndimage.gaussian_filter(canvas.out_of_focus, sigma_oof) * cytoplasm_all
    return {"cells": len(cells), "lipid_droplets": n_lds, "out_of_focus_lipid_droplets": n_oof}


def _organism_body(
    rng: np.random.Generator, o: OrganismRanges, h: int, w: int, px_um: float
) -> tuple[np.ndarray, dict]:
    """The tissue of an elongated body crossing the field: (H, W) bool, True inside the body and outside its lumen.

    The body's axis is a gently curved line (a sine bend) through the field at a random angle; the body
    is the band within half its width of the axis, the lumen the band within half the lumen width.
    """
    size = float(np.hypot(h, w))
    angle = float(rng.uniform(0, np.pi))
    width = min(_u(rng, o.body_width_um) / px_um, 0.9 * min(h, w))
    lumen = _u(rng, o.lumen_width_um) / px_um
    bend = _u(rng, o.bend) * min(h, w)
    wavelength = float(rng.uniform(0.8, 2.0)) * size
    phase = float(rng.uniform(0, 2 * np.pi))
    offset = float(rng.uniform(-0.25, 0.25)) * min(h, w)
    t = np.linspace(-0.7 * size, 0.7 * size, int(4 * size))
    across = offset + bend * np.sin(2 * np.pi * t / wavelength + phase)
    axis = np.stack(
        [h / 2 + t * np.sin(angle) + across * np.cos(angle), w / 2 + t * np.cos(angle) - across * np.sin(angle)], 1
    )
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    dist = cKDTree(axis).query(np.stack([yy.ravel(), xx.ravel()], axis=1))[0].reshape(h, w)
    region = (dist < width / 2) & (dist >= lumen / 2)
    return region, {"body_width_um": round(width * px_um, 2), "lumen_width_um": round(lumen * px_um, 2)}


def _fill_tissue(
    rng: np.random.Generator,
    t: TissueRanges,
    p: PhantomPreset,
    canvas: _Canvas,
    px_um: float,
    region: np.ndarray | None = None,
) -> dict:
    """A tissue section: the field tessellated into cells with curved boundaries, lumen, a fold,
    nuclei of weak contrast and densely packed lipid vesicles. Fills ``canvas`` like :func:`_fill_cells`.
    ``region`` (H, W) bool, optional: the tissue lies only there (an organism's body); elsewhere is buffer."""
    h, w = canvas.shape
    # 1. cells: a warped Voronoi tessellation of well-spread seeds (dart throwing)
    diameter = _u(rng, t.cell_diameter_um) / px_um
    n_target = max(1, int(h * w / (np.pi * (diameter / 2) ** 2)))
    seeds: list[tuple[float, float]] = []
    for _ in range(n_target * 30):
        if len(seeds) >= n_target:
            break
        c = (
            float(rng.uniform(-0.5 * diameter, h + 0.5 * diameter)),
            float(rng.uniform(-0.5 * diameter, w + 0.5 * diameter)),
        )
        if all((c[0] - q[0]) ** 2 + (c[1] - q[1]) ** 2 > (0.75 * diameter) ** 2 for q in seeds):
            seeds.append(c)
    centres = np.asarray(seeds, np.float32)
    warp = _u(rng, t.boundary_warp_um) / px_um
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    noise = [ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), diameter / 3) for _ in range(2)]
    noise = [n / (n.std() + 1e-6) for n in noise]
    wy, wx = yy + warp * noise[0], xx + warp * noise[1]
    owner = cKDTree(centres).query(np.stack([wy.ravel(), wx.ravel()], axis=1))[1].reshape(h, w).astype(np.int32)
    # lumen: empty (water) regions
    lumen = np.zeros((h, w), bool)
    for _ in range(int(_u(rng, t.lumen_count))):
        c = (float(rng.uniform(0, h)), float(rng.uniform(0, w)))
        r = _u(rng, t.lumen_diameter_um) / 2 / px_um
        harm = _shape_harmonics(rng, 0.15)
        lumen |= _normalised_radius(yy, xx, c, r, float(rng.uniform(0.5, 1.0)), float(rng.uniform(0, np.pi)), harm) < 1
    owner[lumen] = -1
    if region is not None:
        owner[~region] = -1
    canvas.owner[:] = owner
    # distance of each pixel to its cell's boundary (shared walls, lumen, field edge is not a wall)
    wall = np.zeros((h, w), bool)
    wall[:-1] |= owner[:-1] != owner[1:]
    wall[1:] |= owner[:-1] != owner[1:]
    wall[:, :-1] |= owner[:, :-1] != owner[:, 1:]
    wall[:, 1:] |= owner[:, :-1] != owner[:, 1:]
    to_wall = ndimage.distance_transform_edt(~wall).astype(np.float32)
    canvas.rho[:] = np.where(owner >= 0, np.clip(1.0 - to_wall / (diameter / 2), 0.0, 1.0), np.inf)

    texture = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), 1.5)
    texture /= texture.std() + 1e-6
    grain = 1.0 + _u(rng, p.texture) * texture
    brightness = rng.uniform(*p.cell_brightness, size=len(seeds) + 1).astype(np.float32)
    lipid_level = rng.uniform(*t.cytoplasm_lipid, size=len(seeds) + 1).astype(np.float32)
    b = np.where(owner >= 0, brightness[owner], 0.0).astype(np.float32)
    tissue = owner >= 0
    # 2. nuclei: an irregular ellipse around each seed, kept off the cell walls
    n_nuclei = 0
    for i, c in enumerate(seeds):
        if rng.random() >= t.nucleus_in_section:
            continue
        r = diameter / 2 * _u(rng, t.nucleus_to_cell)
        found = canvas.box(c, r * 1.6)
        if found is None:
            continue
        sl, byy, bxx = found
        n_rho = _normalised_radius(
            byy, bxx, c, r, float(rng.uniform(0.7, 1.0)), float(rng.uniform(0, np.pi)), _shape_harmonics(rng, 0.05)
        )
        nucleus = (n_rho < 1.0) & (owner[sl] == i) & (to_wall[sl] > 2.0)
        if nucleus.any():
            canvas.nucleus[sl] |= nucleus
            n_nuclei += 1
    nuc = canvas.nucleus
    cyto = tissue & ~nuc
    canvas.protein += np.where(cyto, b * grain, 0.0).astype(np.float32)
    canvas.lipid += np.where(cyto, b * lipid_level[np.maximum(owner, 0)] * grain, 0.0).astype(np.float32)
    n_prot, n_dna = _u(rng, t.nucleus_protein), _u(rng, t.nucleus_dna)
    canvas.protein += np.where(nuc, b * n_prot, 0.0).astype(np.float32)
    canvas.dna += np.where(nuc, b * n_dna * (1.0 + 0.5 * _u(rng, p.texture) * texture), 0.0).astype(np.float32)
    canvas.lipid += np.where(nuc, b * 0.05, 0.0).astype(np.float32)
    # 3. a fold: a curved band where two tissue layers overlap (more of everything, labels unchanged)
    if rng.random() < t.fold_probability:
        angle = float(rng.uniform(0, np.pi))
        d = (xx - w / 2) * np.cos(angle) + (yy - h / 2) * np.sin(angle) + float(rng.uniform(-0.3, 0.3)) * min(h, w)
        d += 0.15 * min(h, w) * np.sin((-(xx - w / 2) * np.sin(angle) + (yy - h / 2) * np.cos(angle)) / min(h, w) * 4)
        fold = (np.abs(d) < _u(rng, t.fold_width_um) / px_um / 2) & tissue
        gain = 1.0 + _u(rng, t.fold_gain) * ndimage.gaussian_filter(fold.astype(np.float32), 1.0)
        for m in (canvas.protein, canvas.lipid, canvas.dna):
            m *= gain
    # 4. densely packed lipid vesicles, not over nuclei, not overlapping (≥ 1 px apart)
    area_100um2 = tissue.sum() * px_um**2 / 100.0
    count = int(rng.poisson(_u(rng, t.vesicles_per_100um2) * area_100um2))
    allowed = tissue & ~ndimage.binary_dilation(nuc, iterations=1)
    ys, xs = np.nonzero(allowed)
    taken = np.zeros((h, w), bool)
    placed = 0
    for _ in range(count * 3 if ys.size else 0):
        if placed >= count:
            break
        j = int(rng.integers(ys.size))
        centre = (ys[j] + 0.5 + rng.uniform(-0.5, 0.5), xs[j] + 0.5 + rng.uniform(-0.5, 0.5))
        radius = float(np.exp(rng.uniform(*np.log(t.vesicle_diameter_um)))) / px_um / 2
        disk = _draw_disk(canvas, centre, radius)
        if disk is None:
            continue
        dsl, cover = disk
        label = cover >= 0.5
        cy, cx = int(centre[0]) - dsl[0].start, int(centre[1]) - dsl[1].start
        if 0 <= cy < label.shape[0] and 0 <= cx < label.shape[1]:
            label[cy, cx] = True
        if (taken[dsl] & (cover > 0)).any() or (nuc[dsl] & label).any():
            continue
        cell = int(owner[min(int(centre[0]), h - 1), min(int(centre[1]), w - 1)])
        if cell < 0:
            continue
        canvas.lipid[dsl] += _u(rng, t.vesicle_lipid) * brightness[cell] * cover
        canvas.protein[dsl] *= 1.0 - 0.7 * cover
        canvas.ld_label[dsl] |= label
        canvas.ld_cell.append(cell)
        canvas.ld_id[dsl][label] = len(canvas.ld_cell)
        taken[dsl] |= ndimage.binary_dilation(cover > 0, iterations=1)
        placed += 1
    return {"cells": len(seeds), "nuclei": n_nuclei, "lipid_droplets": placed, "out_of_focus_lipid_droplets": 0}


def _add_debris(rng: np.random.Generator, p: PhantomPreset, canvas: _Canvas, px_um: float) -> int:
    """Irregular cell fragments and mucus outside the cells (protein-rich, some lipid); labelled background."""
    h, w = canvas.shape
    n = int(rng.poisson(_u(rng, p.debris_per_mm2) * h * w * (px_um * 1e-3) ** 2))
    for _ in range(n):
        centre = (float(rng.uniform(0, h)), float(rng.uniform(0, w)))
        radius = float(rng.uniform(0.5, 2.5)) / px_um
        found = canvas.box(centre, radius * 1.5)
        if found is None:
            continue
        sl, yy, xx = found
        rho = _normalised_radius(
            yy,
            xx,
            centre,
            radius,
            float(rng.uniform(0.4, 1.0)),
            float(rng.uniform(0, np.pi)),
            _shape_harmonics(rng, 0.25),
        )
        blob = (rho < 1.0) & (canvas.owner[sl] < 0)
        amount = float(rng.uniform(0.2, 0.9))
        canvas.protein[sl] += amount * blob
        canvas.lipid[sl] += amount * float(rng.uniform(0.0, 0.5)) * blob
    return n


def _instance_maps(canvas: _Canvas) -> dict[str, np.ndarray]:
    """Cell, nucleus and lipid-droplet instance maps of a filled canvas (no random draws).

    Cells are numbered 1..n in drawing order, leaving out cells with no pixel in the field; nuclei
    take their cell's id and lose the pixels a lipid droplet covers; droplets are numbered 1..m
    in drawing order, leaving out droplets wholly covered by later ones.
    """
    owner = canvas.owner + 1  # 0: no cell, i + 1: cell i of the drawing order
    present = np.flatnonzero(np.bincount(owner.ravel(), minlength=1))
    present = present[present > 0]
    cell_id = np.zeros(int(owner.max(initial=0)) + 1, np.int32)
    cell_id[present] = np.arange(1, present.size + 1, dtype=np.int32)
    cells = cell_id[owner]
    nuclei = np.where(canvas.nucleus & ~canvas.ld_label, cells, 0).astype(np.int32)
    has_nucleus = np.bincount(nuclei.ravel(), minlength=present.size + 1) > 0
    has_nucleus[0] = False
    drawn = np.flatnonzero(np.bincount(canvas.ld_id.ravel(), minlength=1))
    drawn = drawn[drawn > 0]
    droplet_id = np.zeros(len(canvas.ld_cell) + 1, np.int32)
    droplet_id[drawn] = np.arange(1, drawn.size + 1, dtype=np.int32)
    droplet_cell = np.zeros(drawn.size + 1, np.int32)
    droplet_cell[1:] = cell_id[np.asarray(canvas.ld_cell, np.int64)[drawn - 1] + 1]
    return {
        "cells": cells,
        "nuclei": nuclei,
        "droplets": droplet_id[canvas.ld_id],
        "droplet_cell": droplet_cell,
        "has_nucleus": has_nucleus,
    }


def simulate_phantom(
    rng: np.random.Generator | int,
    height: int = 512,
    width: int = 512,
    wavenumbers: Sequence[float] | np.ndarray | None = None,
    preset: str | PhantomPreset = "default",
    pixel_size_um: float = 0.25,
    apply_envelope: bool = True,
) -> Phantom:
    """Simulate one HSRS field of view and its exact label map.

    Args:
        rng: a NumPy Generator or an integer seed.
        height, width: image size in pixels.
        wavenumbers: Raman shift of each frame in frame order (ascending or descending);
            default the canonical 64 frames over 2800–3050 cm⁻¹.
        preset: ``"easy"``, ``"default"``, ``"hard"`` or a :class:`PhantomPreset`.
        pixel_size_um: lateral pixel size in µm (HSRS: ~0.25).
        apply_envelope: False draws the pulse-overlap envelope (every random draw as with True) but does not
            apply it: the same scene, noise and instrument as a power-normalised stack (benchmarks compare the two).

    Returns:
        A :class:`Phantom`, with its instance maps.

    Examples:
        >>> ph = simulate_phantom(0, 64, 64)
        >>> ph.stack.shape, ph.labels.shape, sorted(set(np.unique(ph.labels)) - {0, 1, 2})
        ((64, 64, 64), (64, 64), [])
        >>> bool(((ph.nuclei > 0) == (ph.labels == 1)).all())
        True
    """
    rng = np.random.default_rng(rng)
    p = PRESETS[preset] if isinstance(preset, str) else preset
    if height < 16 or width < 16:
        raise ValueError(f"image size {height}×{width} is too small; use at least 16×16 pixels.")
    instrument = p.instrument
    if wavenumbers is not None:
        wn = np.asarray(wavenumbers, float)
    elif instrument is not None:  # the instrument draws its own window, frame count and direction
        lo, hi = _u(rng, instrument.window_start), _u(rng, instrument.window_end)
        wn = np.linspace(lo, hi, round(_u(rng, instrument.frames)))
        if rng.random() < instrument.descending_probability:
            wn = wn[::-1].copy()
    else:
        wn = np.linspace(*CANONICAL_RANGE, CANONICAL_NUM_FRAMES)
    h, w = height, width
    canvas = _Canvas(h, w)
    scene = (
        "organism"
        if p.organism is not None and p.organism_probability > 0 and rng.random() < p.organism_probability
        else (
            "tissue"
            if p.tissue is not None and p.tissue_probability > 0 and rng.random() < p.tissue_probability
            else "cells"
        )
    )
    if scene == "organism":
        body, organism = _organism_body(rng, p.organism, h, w, pixel_size_um)
        counts = {**_fill_tissue(rng, p.organism.tissue, p, canvas, pixel_size_um, region=body), **organism}
    elif scene == "tissue":
        counts = _fill_tissue(rng, p.tissue, p, canvas, pixel_size_um)
    else:
        cells = _place_cells(rng, p, h, w, pixel_size_um)
        counts = _fill_cells(rng, p, canvas, cells, pixel_size_um)
    counts["debris"] = _add_debris(rng, p, canvas, pixel_size_um)

    labels = np.zeros((h, w), np.uint8)
    labels[canvas.nucleus] = 1
    labels[canvas.ld_label] = 2

    # optical PSF (Gaussian, FWHM in µm) on the concentration maps; the mixing below is linear
    psf_fwhm = _u(rng, p.psf_fwhm_um)
    sigma_px = psf_fwhm / pixel_size_um / 2.3548
    biomass = canvas.owner >= 0
    water = 1.0 - 0.3 * ndimage.gaussian_filter(biomass.astype(np.float32), sigma_px)
    maps = [ndimage.gaussian_filter(m, sigma_px) for m in (canvas.lipid, canvas.protein, canvas.dna)] + [water]

    # non-Raman background: spectral decay from the low-delay (first) frame; spatially stronger at
    # the field corners (vignetting of the XPM/TPA-generating focus) and at object edges (XPM lensing)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / ((h / 2) ** 2 + (w / 2) ** 2)
    density = maps[0] + maps[1] + maps[2]
    edges = np.hypot(*np.gradient(ndimage.gaussian_filter(density, 1.0)))
    edges /= np.percentile(edges, 99.5) + 1e-6
    bg_map = _u(rng, p.background) * (1.0 + _u(rng, p.background_edge_gain) * r2) + _u(rng, p.xpm_edges) * np.clip(
        edges, 0, 2
    )
    delay = wn - wn.min()  # the low-delay end is the low-wavenumber end, whatever the storage order
    bg_spectrum = np.exp(-delay / _u(rng, p.background_decay))
    # raw spectral focusing: the pulse-overlap envelope scales the Raman signal; the non-Raman background then
    # peaks at zero delay, where the pulses overlap most (scripts.simulation.envelope)
    envelope = draw_envelope(rng, instrument.envelope) if instrument is not None else None
    raman_gain = np.ones(len(wn))
    if envelope is not None:
        power = _u(rng, instrument.envelope.background_power)
        if apply_envelope:
            raman_gain = envelope_gain(envelope, wn)
            bg_spectrum = raman_gain**power

    shift = _u(rng, p.calibration_shift) * float(rng.choice([-1.0, 1.0]))
    resolution = _u(rng, p.spectral_resolution)
    spectra = spectra_matrix(wn, resolution=resolution, shift=shift, unsaturation=float(rng.uniform(0.6, 1.4)))
    water_level = _u(rng, p.water)
    spectra[:, 3] *= water_level / max(spectra[np.argmax(wn), 3], 1e-6)
    components = np.concatenate([spectra * raman_gain[:, None], bg_spectrum[:, None]], axis=1).astype(np.float32)
    conc = np.stack([*maps, bg_map]).reshape(5, -1).astype(np.float32)  # (5, H*W)
    signal = (components @ conc).reshape(len(wn), h, w)

    # per-frame laser power drift (smooth random walk) and detector offset
    drift_sd = _u(rng, p.power_drift)
    walk = np.cumsum(rng.normal(0, 1, len(wn)))
    walk = (walk - walk.mean()) / (walk.std() + 1e-6)
    gains = (1.0 + drift_sd * walk).astype(np.float32)
    offset = _u(rng, p.detector_offset)

    # noise: probe shot noise (constant), laser intensity noise (∝ signal), read noise
    snr = _u(rng, p.snr)
    rin, read = _u(rng, p.intensity_noise), _u(rng, p.read_noise)
    signal *= gains[:, None, None]
    extra = {}
    if instrument is not None:
        signal, extra = _instrument_gain(rng, instrument, signal)
    sd = np.sqrt((1.0 / snr) ** 2 + read**2 + (rin * signal) ** 2)
    stack = signal + offset + sd * rng.standard_normal(signal.shape, dtype=np.float32)
    counts_ = None
    if instrument is not None:
        stack, digitiser, counts_ = _digitise(rng, instrument, stack)
        extra.update(digitiser)
        if instrument.envelope.probability > 0:
            extra.update(envelope.params() if envelope is not None else {"envelope": "none"})
        if instrument.unstored_axis_probability > 0:
            extra["wavenumbers_stored"] = bool(rng.random() >= instrument.unstored_axis_probability)

    params = {
        "scene": scene,
        **counts,
        "snr": round(snr, 4),
        "background": round(float(bg_map.mean()), 4),
        "water": round(water_level, 4),
        "power_drift_sd": round(drift_sd, 4),
        "detector_offset": round(offset, 4),
        "calibration_shift_cm1": round(shift, 3),
        "spectral_resolution_cm1": round(resolution, 2),
        "psf_fwhm_um": round(psf_fwhm, 3),
        "intensity_noise": round(rin, 4),
        "read_noise": round(read, 4),
        "nucleus_fraction": round(float((labels == 1).mean()), 5),
        "lipid_droplet_fraction": round(float((labels == 2).mean()), 5),
        "wavenumber_first_cm1": round(float(wn[0]), 2),
        "wavenumber_last_cm1": round(float(wn[-1]), 2),
        "frames": len(wn),
        **extra,
    }
    return Phantom(stack.astype(np.float32, copy=False), labels, wn, params, counts=counts_, **_instance_maps(canvas))


def _instrument_gain(rng: np.random.Generator, ins: InstrumentRanges, signal: np.ndarray) -> tuple[np.ndarray, dict]:
    """Uneven illumination (a smooth field over the image) and line artefacts (per-row, per-frame gain noise)."""
    k, h, w = signal.shape
    amp = _u(rng, ins.illumination)
    field = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), max(h, w) / 4, mode="wrap")
    field = 1.0 + amp * field / (np.abs(field).max() + 1e-6)
    signal = signal * field[None]
    stripes = 0.0
    if rng.random() < ins.stripe_probability:
        stripes = _u(rng, ins.stripes)
        rows = 1.0 + stripes * rng.standard_normal((k, h, 1)).astype(np.float32)
        signal = signal * rows
    return signal.astype(np.float32, copy=False), {"illumination": round(amp, 3), "stripes": round(stripes, 4)}


def _digitise(
    rng: np.random.Generator, ins: InstrumentRanges, stack: np.ndarray
) -> tuple[np.ndarray, dict, np.ndarray | None]:
    """Digitise at 8/12/16 bits with a full scale relative to the 99.9th percentile (saturating above it),
    after a dark offset (a fraction of the full scale) where the instrument has one.

    The stack is returned in simulator units (level × full scale / levels), so the label maps and
    every downstream step see the same intensity scale as undigitised stacks; the integer levels
    themselves (uint8 up to 8 bits, else uint16; None when not digitised) as the third value.
    """
    if rng.random() >= ins.quantize_probability:
        return stack, {"bit_depth": 0, "saturated_fraction": 0.0}, None
    bits = int(rng.choice(ins.bit_depths))
    levels = float(2**bits - 1)
    full = max(float(np.percentile(stack, 99.9)), 1e-3) * _u(rng, ins.full_scale)
    dark = _u(rng, ins.dark_offset) * levels if ins.dark_offset[1] > 0 else 0.0
    digital = np.clip(np.rint(np.clip(stack, 0, None) / full * levels + dark), 0, levels)
    saturated = float((digital >= levels).mean())
    info = {"bit_depth": bits, "saturated_fraction": round(saturated, 5)}
    if ins.dark_offset[1] > 0:
        info["dark_offset_levels"] = round(dark, 2)
    counts = digital.astype(np.uint8 if bits <= 8 else np.uint16)
    return (digital * (full / levels)).astype(np.float32), info, counts


#: Scale from simulator units to counts for ``dtype="uint16"`` (cytoplasm protein peak ≈ 2000 counts).
UINT16_SCALE = 2000.0


def to_uint16(stack: np.ndarray) -> np.ndarray:
    """Digitise a simulated stack as a 16-bit detector would (scaled, rounded, clipped)."""
    return np.clip(np.rint(stack * UINT16_SCALE), 0, 65535).astype(np.uint16)
