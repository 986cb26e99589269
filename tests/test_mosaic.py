"""Mosaics in bounded memory: lazy regions, tiles that agree with the whole field, a label map written tile by tile."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from scripts.engine.inferers import FieldSlidingWindowInferer
from scripts.engine.mosaic import MosaicSegmenter, plan_tiles, process_rss_bytes
from scripts.io.errors import HSRSOptionError
from scripts.io.mosaic import MosaicTooLargeError, open_lazily, write_label_tiles
from scripts.io.reader import read_hsrs
from scripts.io.writer import write_stack
from scripts.networks import HybridUNet
from scripts.transforms.array import NormalizeSpectralIntensity, SpectralResample

from tests.conftest import CONFIGS, workflow


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the small windows here run faster so on a shared CPU than with several."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mosaic_file(tmp_path_factory):
    from scripts.simulation.phantom import simulate_phantom

    folder = tmp_path_factory.mktemp("mosaic") / "images"
    folder.mkdir()
    ph = simulate_phantom(0, 144, 112)
    write_stack(folder / "field.tif", ph.stack, ph.wavenumbers, 0.25)
    return folder / "field.tif"


def _segmenter(out, **kwargs):
    torch.manual_seed(0)
    net = HybridUNet(out_channels=3, features=[4, 8, 16, 32, 32])
    inferer = FieldSlidingWindowInferer(roi_size=[32, 32], sw_batch_size=2, overlap=0.25, mode="gaussian")
    return MosaicSegmenter(net, inferer, out, **kwargs), net, inferer


@pytest.mark.parametrize("suffix", ["tif", "npy", "nii", "nii.gz"])
def test_a_region_read_lazily_is_the_stack_s(tmp_path, suffix):
    stack = np.random.default_rng(1).random((20, 50, 60)).astype(np.float32) + 1
    write_stack(tmp_path / f"s.{suffix}", stack, np.linspace(2800, 3050, 20), 0.3)
    lazy = open_lazily(tmp_path / f"s.{suffix}")
    assert lazy.partial is (suffix != "nii.gz")  # compressed NIfTI cannot be read in parts
    assert np.array_equal(lazy.region(5, 20, 7, 40), stack[:, 5:20, 7:40])
    assert np.array_equal(lazy.points(np.array([0, 9, 49]), np.array([3, 59])), stack[:, [0, 9, 49]][:, :, [3, 59]])
    assert lazy.wavenumbers is not None


def test_a_compressed_stack_larger_than_the_memory_setting_is_refused_naming_the_file(tmp_path):
    stack = np.random.default_rng(1).random((20, 64, 64)).astype(np.float32)
    write_stack(tmp_path / "big.nii.gz", stack, np.linspace(2800, 3050, 20))
    with pytest.raises(MosaicTooLargeError) as e:
        open_lazily(tmp_path / "big.nii.gz", memory_bytes=100_000)
    message = str(e.value)
    assert str(tmp_path / "big.nii.gz") in message
    assert "cannot be read in parts" in message
    assert "\n" not in message


def test_label_map_written_tile_by_tile_reads_back_exactly(tmp_path):
    labels = np.random.default_rng(0).integers(0, 3, (100, 70)).astype(np.uint8)

    def tiles():
        for y in range(0, 100, 32):
            for x in range(0, 70, 32):
                t = np.zeros((32, 32), np.uint8)
                part = labels[y : y + 32, x : x + 32]
                t[: part.shape[0], : part.shape[1]] = part
                yield t

    write_label_tiles(tmp_path / "l.tif", (100, 70), 32, tiles(), 0.25)
    back, meta = read_hsrs(tmp_path / "l.tif")
    assert np.array_equal(back[0], labels)
    assert meta["pixel_size_um"] == 0.25


def test_every_tile_s_region_holds_every_window_that_touches_it():
    tiles = plan_tiles((200, 168), 48, (32, 32), 0.25)
    assert len(tiles) == 5 * 4
    covered = np.zeros((200, 168), int)
    for t in tiles:
        covered[t.y0 : t.y1, t.x0 : t.x1] += 1
        assert min(t.y0 - t.ry0, t.x0 - t.rx0, t.ry1 - t.y1, t.rx1 - t.x1) >= 0  # the region holds the tile
        assert max(t.ry1 - t.ry0, t.rx1 - t.rx0) <= 48 + 2 * 32  # the tile and at most a window on each side
    assert (covered == 1).all()


def test_tiled_and_whole_field_agree(mosaic_file, tmp_path, capsys):
    whole, _, _ = _segmenter(tmp_path / "whole")
    tiled, net, inferer = _segmenter(tmp_path / "tiled", tile_px=48)
    a = read_hsrs(whole.output_dir / f"{whole.segment(mosaic_file)['stem']}.tif")[0][0]
    b = read_hsrs(tiled.output_dir / f"{tiled.segment(mosaic_file)['stem']}.tif")[0][0]
    agree = float((a == b).mean())
    print(f"tiled (48 px tiles) vs whole field: {100 * agree:.3f} % of pixels agree")
    assert agree >= 0.999
    # and the mosaic path segments as the ordinary inference preprocessing + sliding window does, on the field in
    # MONAI's (K, X, Y) order as the whole-stack path's reader gives it (scripts/io/orientation.py)
    stack, meta = read_hsrs(mosaic_file)
    img = NormalizeSpectralIntensity()(SpectralResample()(torch.from_numpy(stack), meta["wavenumbers"]))
    with torch.inference_mode():
        ordinary = inferer(torch.as_tensor(img).transpose(1, 2)[None], net.eval())[0].argmax(0).T.numpy()
    agree = float((ordinary == a).mean())
    print(f"mosaic path vs ordinary inference: {100 * agree:.3f} % of pixels agree")
    assert agree >= 0.999


def test_the_tile_fits_the_memory_setting_and_a_setting_too_small_is_refused(mosaic_file, tmp_path):
    lazy = open_lazily(mosaic_file)
    seg, _, _ = _segmenter(tmp_path, memory_gib=1.0)
    fixed = seg.fixed_bytes()
    seg.memory_bytes = fixed + 64 * 64 * seg.bytes_per_region_px(lazy.shape[0])  # room for a 64×64 region
    tile = seg.choose_tile(lazy)
    regions = [t.region_px for t in plan_tiles((144, 112), tile, (32, 32), 0.25)]
    assert max(regions) * seg.bytes_per_region_px(lazy.shape[0]) <= seg.memory_bytes - fixed
    assert 16 <= tile < 64
    seg.memory_bytes = fixed + 100
    with pytest.raises(HSRSOptionError, match=r"memory_gib=.* is too small .* give --memory_gib"):
        seg.choose_tile(lazy)


def test_mosaic_config_writes_a_tiled_label_map_and_summary_row_and_resumes(mosaic_file, tmp_path):
    override = {"handlers#0#_disabled_": True, "network_def#features": [4, 8, 16, 32, 32], "roi_size": [32, 32]}
    configs = [str(CONFIGS / "inference.yaml"), str(CONFIGS / "mosaic.yaml")]
    wf = workflow(
        configs, "infer", dataset_dir=str(mosaic_file.parent), output_dir=str(tmp_path), tile_px=64, **override
    )
    wf.run()
    labels, _ = read_hsrs(tmp_path / "field.tif")
    assert labels.shape == (1, 144, 112)
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [(r["stem"], r["height"], r["width"], r["error"]) for r in rows] == [("field", "144", "112", "")]
    assert int(rows[0]["nucleus_area_px"]) == int((labels == 1).sum())
    mtime = (tmp_path / "field.tif").stat().st_mtime_ns
    wf = workflow(
        configs, "infer", dataset_dir=str(mosaic_file.parent), output_dir=str(tmp_path), resume=True, **override
    )
    assert wf.parser.get_parsed_content("tiled_stacks") == []  # complete: a rerun with resume rewrites nothing
    wf.run()
    assert (tmp_path / "field.tif").stat().st_mtime_ns == mtime
    # --label_format ome.zarr: the same map as an OME-Zarr label image, and resume counts the folder as written
    pytest.importorskip("zarr")
    wf = workflow(
        configs,
        "infer",
        dataset_dir=str(mosaic_file.parent),
        output_dir=str(tmp_path / "zarr"),
        tile_px=64,
        label_format="ome.zarr",
        **override,
    )
    wf.run()
    from scripts.io.ome_zarr import read_label_image

    assert np.array_equal(read_label_image(tmp_path / "zarr" / "field.ome.zarr"), labels[0])
    wf = workflow(
        configs,
        "infer",
        dataset_dir=str(mosaic_file.parent),
        output_dir=str(tmp_path / "zarr"),
        resume=True,
        label_format="ome.zarr",
        **override,
    )
    assert wf.parser.get_parsed_content("tiled_stacks") == []


def test_mosaic_memory_setting_must_be_positive(tmp_path):
    with pytest.raises(HSRSOptionError, match="memory_gib"):
        _segmenter(tmp_path, memory_gib=0)


def test_a_window_too_large_for_the_memory_setting_is_shrunk_keeping_the_overlap_in_pixels(tmp_path, caplog):
    stack = np.random.default_rng(2).random((64, 1200, 1200)).astype(np.float32)
    np.save(tmp_path / "field.npy", stack)
    inferer = FieldSlidingWindowInferer(roi_size=[768, 768], overlap=1 / 6)
    net = HybridUNet(out_channels=3, features=[4, 8])
    room = 2.3  # GiB beyond this process: windows of 768² need ~2.6 (their activations, regions of 1200² px)
    seg = MosaicSegmenter(net, inferer, tmp_path / "out", memory_gib=process_rss_bytes() / 2**30 + room)
    lazy = open_lazily(tmp_path / "field.npy")
    with caplog.at_level("INFO", logger="scripts.engine.mosaic"):
        tile = seg.choose_tile(lazy)
    assert seg.inferer.max_roi_size < (768, 768)
    assert round(seg.inferer.max_overlap[0] * seg.inferer.max_roi_size[0]) == 128  # the same overlap in pixels
    assert any("windows of at most" in r.message for r in caplog.records)
    regions = plan_tiles((1200, 1200), tile, *seg.inferer.window_plan((1200, 1200)))
    assert max(t.region_px for t in regions) * seg.bytes_per_region_px(64) <= seg.memory_bytes - seg.fixed_bytes()
    seg.memory_bytes = 64 * 2**30  # a roomy setting: the configured window again, for the next stack
    seg.choose_tile(lazy)
    assert seg.inferer is inferer


def test_a_setting_too_small_for_the_configured_windows_but_not_for_smaller_ones_segments(tmp_path):
    # the activations reserved for 768² windows (~1.6 GiB) exceed what the setting leaves beyond this process, those
    # of 256² windows (~0.2 GiB) do not: the stack is segmented with smaller windows, not refused at opening
    stack = (np.random.default_rng(3).random((64, 96, 96)) * 4000).astype(np.uint16)
    path = tmp_path / "field.tif"
    write_stack(path, stack, np.linspace(2800, 3050, 64), 0.25)
    inferer = FieldSlidingWindowInferer(roi_size=[768, 768], overlap=1 / 6)
    net = HybridUNet(out_channels=3, features=[4, 8])
    seg = MosaicSegmenter(net, inferer, tmp_path / "out", memory_gib=process_rss_bytes() / 2**30 + 0.6)
    assert seg.fixed_bytes() > seg.memory_bytes
    row = seg.segment(path)
    assert (row["height"], row["width"]) == (96, 96)
    assert read_hsrs(tmp_path / "out" / "field.tif")[0].shape[-2:] == (96, 96)
    assert seg.inferer.max_roi_size < (768, 768)
    seg = MosaicSegmenter(net, inferer, tmp_path / "out2", memory_gib=process_rss_bytes() / 2**30 + 0.05)
    with pytest.raises(HSRSOptionError) as e:  # not even 256² windows fit: one line, the file, what to give
        seg.segment(path)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: memory_gib=")
    assert "leaves no room for data" in message
    assert "256×256 px" in message
    assert "give --memory_gib" in message
    assert "-0." not in message


def test_of_the_smaller_windows_that_fit_the_one_with_the_least_network_and_reading_work_is_taken(tmp_path):
    # a 4096² field (never read: only its shape is planned) in 1.5 GiB beyond this process: windows of 512² still
    # fit, but with tiles so small that each window is recomputed many times; 320² windows do far less work
    from pathlib import Path

    from scripts.engine.mosaic import plan_cost
    from scripts.io.mosaic import LazyStack

    field = (4096, 4096)
    lazy = LazyStack(Path(tmp_path / "virtual.npy"), (64, *field), np.dtype("float32"), None, None, partial=True)
    inferer = FieldSlidingWindowInferer(roi_size=[768, 768], overlap=1 / 6)
    net = HybridUNet(out_channels=3, features=[4, 8])
    memory_gib = process_rss_bytes() / 2**30 + 1.5
    seg = MosaicSegmenter(net, inferer, tmp_path / "out", memory_gib=memory_gib)
    tile = seg.choose_tile(lazy)
    chosen = plan_cost(field, tile, *seg.inferer.window_plan(field))
    tiles = plan_tiles(field, tile, *seg.inferer.window_plan(field))
    assert (chosen.largest_region_px, chosen.region_px) == (
        max(t.region_px for t in tiles),
        sum(t.region_px for t in tiles),
    )
    fitting = {}
    for r in range(256, 768, 64):
        other = MosaicSegmenter(net, inferer.with_max_roi((r, r)), tmp_path / "out", memory_gib=memory_gib)
        try:
            cost = plan_cost(field, other._choose_tile(lazy), *other.inferer.window_plan(field))
        except HSRSOptionError:
            continue
        fitting[r] = cost.window_px + cost.region_px
    assert len(fitting) >= 3
    assert chosen.window_px + chosen.region_px == min(fitting.values())
    assert seg.inferer.max_roi_size[0] < max(fitting)  # not simply the largest window that fits


def test_plain_inference_tiles_a_stack_too_large_for_memory_gib_and_segments_the_rest_whole(
    mosaic_file, tmp_path, monkeypatch, capsys
):
    """One command for any field: in a folder with a small stack and one whose estimated need exceeds memory_gib,
    plain inference.yaml segments the small one whole (NIfTI, per-cell readout) and the large one in tiles (tiled
    TIFF, overlay, summary row; one INFO line), with the labels the whole field gets; a rerun with resume does
    nothing."""
    from scripts.engine import field_routing
    from scripts.simulation.phantom import simulate_phantom

    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "field.tif").symlink_to(mosaic_file)
    ph = simulate_phantom(1, 48, 48)
    write_stack(folder / "small.tif", ph.stack, ph.wavenumbers, 0.25)
    # the estimate without the process and the network (this test process's size is not the bundle's): only the
    # per-pixel working memory counts, so a budget between the two stacks' needs is exact
    monkeypatch.setattr(MosaicSegmenter, "fixed_bytes", lambda self, inferer=None: 0)
    per_px = MosaicSegmenter.bytes_per_region_px(_segmenter(tmp_path / "probe")[0], ph.stack.shape[0], 4)
    small, large = (
        field_routing.whole_field_bytes((ph.stack.shape[0], *hw), 4, _FixedFree(per_px))
        for hw in [(48, 48), (144, 112)]
    )
    budget = (small + large) / 2 / 2**30
    override = {"roi_size": [64, 64], "backend": "torch"}  # the shipped weights: labels to compare, not near-ties
    configs = str(CONFIGS / "inference.yaml")
    out = tmp_path / "out"
    wf = workflow(configs, "infer", dataset_dir=str(folder), output_dir=str(out), memory_gib=budget, **override)
    assert [p["image"].split("/")[-1] for p in wf.parser.get_parsed_content("stacks")] == ["small.tif"]
    assert [p["image"].split("/")[-1] for p in wf.parser.get_parsed_content("tiled_stacks")] == ["field.tif"]
    wf.run()
    logged = [line for line in capsys.readouterr().out.splitlines() if "field_routing" in line]
    assert len(logged) == 1
    assert "field.tif" in logged[0]
    assert "segmented in tiles" in logged[0]
    assert (out / "small.nii.gz").is_file()
    assert (out / "cells" / "small_instances.tif").is_file()
    assert (out / "field.tif").is_file()
    assert (out / "field_overlay.png").is_file()
    assert not (out / "field.nii.gz").exists()
    rows = {r["stem"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert set(rows) == {"small", "field"}
    assert not rows["field"]["error"]
    tiled, _ = read_hsrs(out / "field.tif")
    # the same field segmented whole (tiling never) gets the same labels: no seams
    whole_out = tmp_path / "whole"
    wf = workflow(configs, "infer", dataset_dir=str(folder), output_dir=str(whole_out), tiling="never", **override)
    assert wf.parser.get_parsed_content("tiled_stacks") == []
    wf.run()
    whole, _ = read_hsrs(whole_out / "field.tif")
    agree = float((tiled == whole).mean())
    print(f"plain inference, tiled vs whole: {100 * agree:.3f} % of pixels agree")
    assert agree >= 0.999  # as the mosaic path always agrees with the whole field (test_tiled_and_whole_field_agree)
    wf = workflow(
        configs, "infer", dataset_dir=str(folder), output_dir=str(out), memory_gib=budget, resume=True, **override
    )
    assert wf.parser.get_parsed_content("stacks") == []
    assert wf.parser.get_parsed_content("tiled_stacks") == []


class _FixedFree:
    """The part of a MosaicSegmenter the estimate reads, with no fixed memory."""

    memory_bytes = 0.0

    def __init__(self, per_px: int):
        self.per_px = per_px

    def bytes_per_region_px(self, frames: int, itemsize: int = 0) -> int:
        return self.per_px

    def fixed_bytes(self) -> int:
        return 0

    def data_headroom(self, path) -> float:
        return 2.0**30


def test_tiling_setting_is_checked_and_forces_either_path(tmp_path):
    from scripts.engine.field_routing import route_fields

    write_stack(tmp_path / "a.tif", np.ones((16, 8, 8), np.float32), np.linspace(2800, 3050, 16))
    items = [{"image": str(tmp_path / "a.tif")}, {"image": str(tmp_path / "b.tif"), "error": "unreadable"}]
    routes = route_fields(items, _FixedFree(1), tiling="always")
    assert routes.tiled == items[:1]
    assert routes.whole == items[1:]
    routes = route_fields(items, _FixedFree(1), tiling="never")
    assert routes.whole == items
    assert routes.tiled == []
    with pytest.raises(HSRSOptionError, match="tiling must be one of"):
        route_fields(items, _FixedFree(1), tiling="sometimes")


def test_a_large_stack_the_tiled_path_cannot_read_in_parts_is_refused_before_any_work(tmp_path, monkeypatch):
    """A .nii.gz too large for memory_gib (read whole, never in parts) is refused in one line naming it before any
    stack is segmented; with --skip_errors it is recorded in summary.csv and the others are segmented."""
    from scripts.simulation.phantom import simulate_phantom

    from tests.conftest import raises_with

    folder = tmp_path / "images"
    folder.mkdir()
    ph = simulate_phantom(2, 128, 128)
    write_stack(folder / "big.nii.gz", ph.stack, ph.wavenumbers, 0.25)
    write_stack(folder / "small.tif", ph.stack[:, :32, :32], ph.wavenumbers, 0.25)
    monkeypatch.setattr(MosaicSegmenter, "fixed_bytes", lambda self, inferer=None: 0)
    override = {"handlers#0#_disabled_": True, "network_def#features": [4, 8, 16, 32, 32], "roi_size": [32, 32]}
    budget = 0.5 * ph.stack.size * 4 / 2**30  # half the compressed stack's float32 size
    args = {"dataset_dir": str(folder), "tiling": "always", "memory_gib": budget, **override}
    out = tmp_path / "out"
    wf = workflow(str(CONFIGS / "inference.yaml"), "infer", output_dir=str(out), **args)
    with pytest.raises(Exception) as excinfo:
        wf.parser.get_parsed_content("tiled_stacks")
    raises_with(excinfo, r"big\.nii\.gz: .*cannot be read in parts.*gunzip")
    assert not (out / "small.tif").exists()
    wf = workflow(str(CONFIGS / "inference.yaml"), "infer", output_dir=str(out), skip_errors=True, **args)
    wf.run()
    rows = {r["stem"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert "cannot be read in parts" in rows["big"]["error"]
    assert not rows["small"]["error"]
    assert (out / "small.tif").is_file()
