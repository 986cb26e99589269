"""Overlays a biologist reads: enlarged by nearest-neighbour to ≥ 512 px, the CH₂ image beside the overlay, a
legend, a scale bar in µm (marked when assumed), the QC verdict when flagged; per-cell and mosaic overlays too."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scripts.cells.measure import measure_cells
from scripts.cells.overlay import overlay_figure
from scripts.engine.segmentation_writer import SegmentationWriter, overlay_flag
from scripts.io.overlay import (
    _FLAG_RGB,
    LIPID_DROPLET_RGB,
    NUCLEUS_RGB,
    OverlayFigure,
    _as_uint8,
    ch2_image,
    overlay_rgb,
    save_png,
    stack_overlay_figure,
)
from scripts.io.writer import write_stack
from scripts.simulation.phantom import simulate_phantom

FLAGGED = {"ood_score": 14.2, "qc_flag": "flagged", "qc_reason": "saturation 0.31 vs training 0 (z 14.2)"}


@pytest.fixture(scope="module")
def phantom():
    return simulate_phantom(3, 96, 120)


def _png(data: bytes) -> np.ndarray:
    import matplotlib.image

    rgba = matplotlib.image.imread(io.BytesIO(data), format="png")
    return np.round(rgba[..., :3] * 255).astype(np.uint8)


def _has_flag_banner(png: np.ndarray) -> bool:
    return bool(np.all(png == _FLAG_RGB, axis=-1).sum() > 1000)


def test_a_small_stack_is_enlarged_to_512_px_with_the_ch2_image_a_legend_and_a_scale_bar(phantom):
    fig = stack_overlay_figure(phantom.stack, phantom.labels, None, phantom.wavenumbers, "ok", 0.25, title="s")
    r = fig.render()
    png = _png(r.png())
    assert png.shape[:2] == r.size
    assert r.factor == 6
    assert r.stride == 1
    for y0, y1, x0, x1 in r.boxes:
        assert min(y1 - y0, x1 - x0) >= 512
    assert any(t.startswith("CH₂ 2850 cm⁻¹") for t in r.texts)
    assert {"nucleus", "lipid droplet"} <= set(r.texts)
    # the scale bar: white, its length the µm it names, its label printed
    by0, by1, bx0, bx1 = r.scale_bar
    assert np.all(png[by0:by1, bx0:bx1] == 255)
    (label,) = {t for t in r.texts if t.endswith(" µm")}  # one bar on each panel
    assert (bx1 - bx0) == round(float(label.split()[0]) / 0.25 * r.factor)
    # the legend's swatches are the classes' colours
    for colour in (NUCLEUS_RGB, LIPID_DROPLET_RGB):
        pure = _as_uint8(np.asarray(colour, np.float32)[None, None])[0, 0]
        below = png[r.boxes[0][1] :]
        assert np.all(below == pure, axis=-1).sum() >= 100


def test_nearest_neighbour_keeps_the_class_colours_pure(phantom):
    """Every screen pixel of the overlay panel is its image pixel's colour: no blend at label edges."""
    fig = stack_overlay_figure(phantom.stack, phantom.labels, None, phantom.wavenumbers, "ok", None)
    r = fig.render()
    png = _png(r.png())
    y0, y1, x0, x1 = r.boxes[1]
    expected = _as_uint8(overlay_rgb(phantom.stack, phantom.labels))
    assert np.array_equal(png[y0:y1, x0:x1], np.kron(expected, np.ones((r.factor, r.factor, 1), np.uint8)))
    panel = png[y0:y1, x0:x1].reshape(-1, 3)
    colours = {tuple(c) for c in np.unique(panel, axis=0)}
    assert colours <= {tuple(c) for c in expected.reshape(-1, 3)}
    assert "no scale bar: the file records no pixel size" in r.texts
    assert r.scale_bar is None


def test_an_assumed_pixel_size_is_marked_and_an_unknown_axis_gives_the_mean_image(phantom):
    r = stack_overlay_figure(
        phantom.stack, phantom.labels, None, phantom.wavenumbers, "assumed", 0.25, pixel_size_assumed=True
    ).render()
    assert any(t.endswith(" µm*") for t in r.texts)
    assert any(t.startswith("* scale bar assumes 0.25 µm per pixel") for t in r.texts)
    assert "mean image (spectral axis unknown)" in r.texts
    image, title = ch2_image(phantom.stack, phantom.wavenumbers)
    near = np.abs(phantom.wavenumbers - 2850) <= 10
    assert np.allclose(image, phantom.stack[near].mean(0))
    assert f"{near.sum()} frames" in title


def test_the_qc_verdict_is_printed_only_for_a_flagged_stack(phantom):
    assert overlay_flag(FLAGGED).startswith("QC FLAGGED (ood_score 14.2)")
    assert overlay_flag({"qc_flag": "ok", "ood_score": 1.2}) == ""
    assert overlay_flag({"qc_flag": "off"}, "reversed").startswith("AXIS CHECK FLAGGED (reversed)")
    assert overlay_flag({"qc_flag": "no_reference"}, "assumed") == ""
    flagged = stack_overlay_figure(phantom.stack, phantom.labels, flag=overlay_flag(FLAGGED)).render()
    assert any("QC FLAGGED" in t for t in flagged.texts)
    assert _has_flag_banner(_png(flagged.png()))
    plain = stack_overlay_figure(phantom.stack, phantom.labels, flag=overlay_flag({"qc_flag": "ok"})).render()
    assert not any("FLAGGED" in t for t in plain.texts)
    assert not _has_flag_banner(_png(plain.png()))


@pytest.mark.parametrize("qc", [FLAGGED, {"ood_score": 1.0, "qc_flag": "ok", "qc_reason": ""}])
def test_the_writer_s_overlay_is_the_figure_with_the_qc_verdict(phantom, tmp_path, qc):
    meta = {"filename_or_obj": "/data/stack_a.nii.gz", "wavenumbers": phantom.wavenumbers, "axis_check": "ok"}
    image = MetaTensor(torch.from_numpy(np.ascontiguousarray(phantom.stack.transpose(0, 2, 1))), meta=dict(meta))
    pred = MetaTensor(torch.from_numpy(phantom.labels.T.copy())[None], meta=dict(meta))
    writer = SegmentationWriter(tmp_path, formats=(), summary_csv=None)
    writer.write_item({"pred": pred, "image": image, "qc": qc})
    png = _png((tmp_path / "stack_a_overlay.png").read_bytes())
    assert min(png.shape[:2]) >= 512 + 60  # two panels of ≥ 512 px, titles, legend
    assert _has_flag_banner(png) == (qc["qc_flag"] == "flagged")


def test_the_cells_overlay_has_the_same_standard(phantom, tmp_path):
    m = measure_cells(phantom.stack, phantom.wavenumbers, phantom.labels, 0.25, "ph")
    ch2 = ch2_image(phantom.stack, phantom.wavenumbers)
    r = overlay_figure(m.mean_image, m.instances, 0.25, "ph", ch2=ch2, flag=overlay_flag(FLAGGED)).render()
    assert r.factor == 6
    assert all(min(b[1] - b[0], b[3] - b[2]) >= 512 for b in r.boxes)
    assert {"nucleus", "lipid droplet", "cell (id)", "cell without nucleus"} <= set(r.texts)
    assert {str(i) for i in range(1, m.instances.n_cells + 1)} <= set(r.texts)
    assert r.texts.count(ch2[1]) == 1
    assert any("QC FLAGGED" in t for t in r.texts)
    assert any(t.endswith(" µm") for t in r.texts)
    plain = overlay_figure(m.mean_image, m.instances, 0.25, "ph", pixel_size_assumed=True).render()
    assert "mean image" in plain.texts
    assert not any("FLAGGED" in t for t in plain.texts)
    assert any(t.startswith("* scale bar assumes") for t in plain.texts)


def test_save_png_writes_a_figure_or_an_array_atomically(phantom, tmp_path):
    save_png(tmp_path / "a.png", overlay_rgb(phantom.stack, phantom.labels))
    assert _png((tmp_path / "a.png").read_bytes()).shape == (96, 120, 3)  # an array: as it is
    save_png(tmp_path / "b.png", OverlayFigure([(np.zeros((10, 30)), "zeros")]))
    assert min(_png((tmp_path / "b.png").read_bytes()).shape[:2]) >= 512
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


def test_a_mosaic_overlay_is_built_tile_by_tile_from_a_bounded_view(tmp_path, monkeypatch):
    import tifffile
    from scripts.engine import mosaic
    from scripts.engine.inferers import FieldSlidingWindowInferer
    from scripts.io.mosaic import LazyStack
    from scripts.networks import HybridUNet

    ph = simulate_phantom(0, 144, 112)
    write_stack(tmp_path / "field.tif", ph.stack, ph.wavenumbers, 0.25)
    views, regions = [], []
    monkeypatch.setattr(mosaic.MosaicOverlay, "figure", _spy(mosaic.MosaicOverlay.figure, views))
    monkeypatch.setattr(LazyStack, "region", _spy(LazyStack.region, regions))
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = HybridUNet(out_channels=3, features=[4, 8, 16, 32, 32])
        inferer = FieldSlidingWindowInferer(roi_size=[32, 32], sw_batch_size=2, overlap=0.25, mode="gaussian")
        memory_gib = mosaic.process_rss_bytes() / 2**30 + 0.6
        seg = mosaic.MosaicSegmenter(
            net, inferer, tmp_path / "out", memory_gib=memory_gib, tile_px=48, overlays=True, overlay_px=32
        )
        assert seg.overlay_bytes() > 0
        assert seg.fixed_bytes() >= seg.overlay_bytes()
        seg.segment(tmp_path / "field.tif")
    finally:
        torch.set_num_threads(threads)
    (view,) = views
    assert view.stride == 5
    assert view.labels.shape == (29, 23)
    assert len(regions) == 9  # one read per tile (3 × 3 tiles of 48 px): the overlay reads nothing more
    # the view is the field's block means (CH₂ frames) and the label of each block's centre pixel
    frames = np.abs(ph.wavenumbers - 2850) <= 10
    ch2 = np.pad(ph.stack[frames].mean(0), ((0, 1), (0, 3)), constant_values=np.nan)
    blocks = np.nanmean(ch2.reshape(29, 5, 23, 5), axis=(1, 3))
    assert np.allclose(view.ch2, blocks, rtol=1e-4, atol=1e-4)
    labels = tifffile.imread(tmp_path / "out" / "field.tif")
    centres_y, centres_x = np.minimum(np.arange(29) * 5 + 2, 143), np.minimum(np.arange(23) * 5 + 2, 111)
    assert np.array_equal(view.labels, labels[np.ix_(centres_y, centres_x)])
    png = _png((tmp_path / "out" / "field_overlay.png").read_bytes())
    assert min(png.shape[:2]) >= 512
    assert max(png.shape[:2]) <= 2200
    assert seg.timings["overlay"] < 5


def _spy(method, calls: list):
    def wrapper(self, *args, **kwargs):
        calls.append(self if method.__name__ == "figure" else args)
        return method(self, *args, **kwargs)

    return wrapper
