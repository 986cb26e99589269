"""Chunked stacks (tiled / compressed TIFF, OME-Zarr) read a region at a time through zarr, and their bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from scripts.engine.mosaic import MosaicSegmenter, plan_tiles, read_amplification
from scripts.io.datalist import folder_datalist
from scripts.io.errors import HSRSInputError
from scripts.io.headers import read_header
from scripts.io.mosaic import MosaicTooLargeError, open_lazily
from scripts.io.ome_zarr import ChunkedStack, open_ome_zarr, write_ome_zarr
from scripts.io.ome_zarr.__main__ import main
from scripts.io.preflight import check_stacks
from scripts.io.reader import read_hsrs
from scripts.io.writer import write_stack

from tests.test_mosaic import _segmenter, one_thread  # noqa: F401 (one_thread: an autouse fixture)

WAVENUMBERS = np.linspace(2800, 3050, 20)


@pytest.fixture(scope="module")
def phantom():
    from scripts.simulation.phantom import simulate_phantom

    ph = simulate_phantom(0, 144, 112)
    stack = (ph.stack / ph.stack.max() * 60000).astype(np.uint16)
    return stack, ph.wavenumbers


def _tiled_tiff(path, stack, wavenumbers, **kwargs):
    meta = {"wavenumbers": [float(v) for v in wavenumbers], "pixel_size_um": 0.25}
    options = {"tile": (32, 32), "compression": "zlib", **kwargs}
    tifffile.imwrite(path, stack, metadata=meta, photometric="minisblack", **options)
    return path


class CountingReads:
    """Spies on ChunkedStack.region (the largest region read, in pixels; the calls) and ChunkedStack.points."""

    def __init__(self, monkeypatch):
        self.largest, self.calls, self.point_reads = 0, 0, 0
        original, original_points = ChunkedStack.region, ChunkedStack.points

        def region(stack, y0, y1, x0, x1):
            self.largest, self.calls = max(self.largest, (y1 - y0) * (x1 - x0)), self.calls + 1
            return original(stack, y0, y1, x0, x1)

        def points(stack, ys, xs):
            self.point_reads += 1
            return original_points(stack, ys, xs)

        monkeypatch.setattr(ChunkedStack, "region", region)
        monkeypatch.setattr(ChunkedStack, "points", points)


@pytest.mark.parametrize(
    "layout",
    [
        {"tile": (32, 32)},  # tiled, one page per frame
        {"tile": (32, 32), "bigtiff": True},
        {"tile": None, "rowsperstrip": 16},  # compressed strips
        {"tile": (16, 32, 32)},  # one 3-D series in volumetric tiles
    ],
    ids=["tiled", "bigtiff", "strips", "volumetric"],
)
def test_a_chunked_tiff_is_read_in_parts_through_zarr(tmp_path, layout):
    stack = (np.random.default_rng(1).random((20, 70, 90)) * 60000).astype(np.uint16)
    options = {k: v for k, v in layout.items() if v is not None}
    if "tile" not in options:
        options["tile"] = None
    path = _tiled_tiff(tmp_path / "s.tif", stack, WAVENUMBERS, **options)
    lazy = open_lazily(path)
    assert lazy.partial
    assert lazy.chunked is not None
    assert lazy.shape == (20, 70, 90)
    assert lazy.pixel_size_um == 0.25
    assert np.array_equal(lazy.region(5, 40, 7, 80), stack[:, 5:40, 7:80])
    assert np.array_equal(lazy.region(0, 70, 0, 90), stack)  # the whole field: tifffile decodes it in threads
    assert np.array_equal(lazy.points(np.array([0, 9, 69]), np.array([3, 89])), stack[:, [0, 9, 69]][:, :, [3, 89]])
    np.testing.assert_allclose(lazy.wavenumbers, WAVENUMBERS)
    lazy.close()


def test_an_ome_zarr_is_read_with_its_wavenumbers_by_every_reader(tmp_path, phantom):
    stack, wavenumbers = phantom
    for version in ("0.4", "0.5"):
        path = write_ome_zarr(tmp_path / f"f{version}.ome.zarr", stack, wavenumbers, 0.25, chunk=32, version=version)
        header = read_header(path)
        assert (header.format, header.shape) == ("zarr", stack.shape)
        np.testing.assert_allclose(header.wavenumbers, wavenumbers)
        arr, meta = read_hsrs(path)
        assert np.array_equal(arr, stack.astype(np.float32))
        assert meta["wavenumbers_source"] == "file"
        assert meta["pixel_size_um"] == 0.25
        lazy = open_lazily(path)
        assert lazy.chunks == (64, 32, 32)
        assert np.array_equal(lazy.region(10, 50, 20, 100), stack[:, 10:50, 20:100])
        lazy.close()
    assert [p["image"] for p in check_stacks(folder_datalist(tmp_path))] == [
        str((tmp_path / f"f{v}.ome.zarr").resolve()) for v in ("0.4", "0.5")
    ]


def test_ome_zarr_axes_the_spectral_axis_is_the_one_besides_y_and_x_and_a_sidecar_gives_wavenumbers(tmp_path):
    import zarr

    stack = np.random.default_rng(2).random((20, 40, 30)).astype(np.float32)
    path = tmp_path / "tczyx.ome.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    axes = [
        {"name": n, "type": t} for n, t in zip("tczyx", ["time", "channel", "space", "space", "space"], strict=True)
    ]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [{"path": "0"}]}]
    group.create_array("0", shape=(1, 1, 20, 40, 30), chunks=(1, 1, 20, 16, 16), dtype="f4")[:] = stack[None, None]
    (tmp_path / "tczyx.json").write_text(json.dumps({"wavenumbers": WAVENUMBERS.tolist()}))
    opened = open_ome_zarr(path)
    assert opened.shape == (20, 40, 30)
    assert opened.chunks == (20, 16, 16)
    np.testing.assert_allclose(opened.wavenumbers, WAVENUMBERS)  # from the sidecar beside the folder
    assert np.array_equal(opened.region(3, 33, 1, 29), stack[:, 3:33, 1:29])
    bad = zarr.open_group(str(tmp_path / "two.ome.zarr"), mode="w", zarr_format=2)
    bad.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [{"path": "0"}]}]
    bad.create_array("0", shape=(3, 20, 1, 40, 30), chunks=(1, 20, 1, 40, 30), dtype="f4")
    with pytest.raises(HSRSInputError, match=r"two.ome.zarr: 2 axes besides y and x .*t=3, c=20"):
        read_header(tmp_path / "two.ome.zarr")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(HSRSInputError, match=r"empty\.zarr: "):
        read_header(tmp_path / "empty.zarr")


def test_chunked_stacks_are_segmented_tile_by_tile_as_whole_reading_only_regions(tmp_path, phantom, monkeypatch):
    stack, wavenumbers = phantom
    sources = [
        _tiled_tiff(tmp_path / "tiled.tif", stack, wavenumbers),
        write_ome_zarr(tmp_path / "field.ome.zarr", stack, wavenumbers, 0.25, chunk=32),
    ]
    spy = CountingReads(monkeypatch)
    whole, _, _ = _segmenter(tmp_path / "whole")
    tiled, _, _ = _segmenter(tmp_path / "tiled", tile_px=48)
    for source in sources:
        spy.largest = spy.calls = spy.point_reads = 0
        a = read_hsrs(whole.output_dir / f"{whole.segment(source)['stem']}.tif")[0][0]
        assert (spy.calls, spy.point_reads) == (1, 0)  # one tile: the field is decoded once, sampled from memory
        spy.largest = spy.calls = spy.point_reads = 0
        b = read_hsrs(tiled.output_dir / f"{tiled.segment(source)['stem']}.tif")[0][0]
        assert (spy.calls, spy.point_reads) == (9, 1)
        planned = plan_tiles((144, 112), 48, *tiled.inferer.window_plan((144, 112)))
        assert spy.largest == max(t.region_px for t in planned)  # only the planned regions are read
        assert spy.largest < 144 * 112 * 0.6  # none near the whole field
        assert float((a == b).mean()) >= 0.999
        assert set(tiled.timings) >= {"read", "preprocess", "network", "total"}


def test_tiles_are_even_and_on_chunk_boundaries_when_that_costs_no_tile():
    assert MosaicSegmenter._even_tile(1500, (8192, 8192), None) == 1376  # 6 × 6 tiles either way, smaller regions
    assert MosaicSegmenter._even_tile(1500, (8192, 8192), (1, 256, 256)) == 1376  # 1536 would be over the budget
    assert MosaicSegmenter._even_tile(1100, (4096, 4096), (1, 256, 256)) == 1024  # 4 × 4 tiles on chunk boundaries
    tiles = plan_tiles((1024, 1024), 256, (64, 64), 0.25)
    assert 1 < read_amplification(tiles, (1, 256, 256)) < read_amplification(tiles, (1, 1024, 1024))


def test_chunks_larger_than_the_memory_setting_are_refused_in_one_line(tmp_path):
    stack = np.random.default_rng(1).random((20, 64, 64)).astype(np.float32)
    path = write_ome_zarr(tmp_path / "big.ome.zarr", stack, WAVENUMBERS, chunk=64)  # one chunk of 320 KiB
    with pytest.raises(MosaicTooLargeError) as e:
        open_lazily(path, memory_bytes=200_000)
    message = str(e.value)
    assert "\n" not in message
    assert str(path) in message
    assert "chunks of 20×64×64 px" in message
    assert "python -m scripts.io.ome_zarr" in message
    # a chunk that fits alone, but leaves no room for a region with it, is refused when the tile is chosen
    seg, _, _ = _segmenter(tmp_path / "out")
    lazy = open_lazily(path)
    seg.plan_decoding(lazy)
    region = max(t.region_px for t in plan_tiles((64, 64), 16, (32, 32), 0.25)) * seg.bytes_per_region_px(20, 4)
    assert lazy.chunk_bytes() > 2_000_000
    seg.memory_bytes = seg.fixed_bytes() + region + 1_000_000  # room for the smallest region, not with the chunks
    with pytest.raises(MosaicTooLargeError, match=r"big.ome.zarr: stored in chunks of 20×64×64 px.*no room for a tile"):
        seg.choose_tile(lazy)


def test_a_tiff_page_stored_as_one_compressed_strip_larger_than_memory_is_refused(tmp_path):
    stack = (np.random.default_rng(1).random((20, 64, 64)) * 60000).astype(np.uint16)
    path = _tiled_tiff(tmp_path / "strip.tif", stack, WAVENUMBERS, tile=None, rowsperstrip=64)
    assert open_lazily(path).chunks == (1, 64, 64)  # a chunk is a whole frame
    with pytest.raises(MosaicTooLargeError, match=r"strip\.tif: stored in chunks of 1×64×64 px .*memory_gib="):
        open_lazily(path, memory_bytes=10_000)


def test_a_gzip_nifti_larger_than_memory_is_refused_with_how_to_decompress_it(tmp_path):
    stack = np.random.default_rng(1).random((20, 64, 64)).astype(np.float32)
    write_stack(tmp_path / "big.nii.gz", stack, WAVENUMBERS)
    with pytest.raises(MosaicTooLargeError) as e:
        open_lazily(tmp_path / "big.nii.gz", memory_bytes=100_000)
    message = str(e.value)
    assert "\n" not in message
    assert f"gunzip -k {tmp_path / 'big.nii.gz'}" in message


def test_a_failed_mosaic_leaves_no_label_map_and_the_converter_no_partial_zarr(tmp_path, phantom, monkeypatch):
    stack, wavenumbers = phantom
    source = write_ome_zarr(tmp_path / "field.ome.zarr", stack, wavenumbers, 0.25, chunk=32)
    seg, _, _ = _segmenter(tmp_path / "out", tile_px=48)
    calls = {"n": 0}
    original = ChunkedStack.region

    def failing(self, *args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk went away")
        return original(self, *args)

    monkeypatch.setattr(ChunkedStack, "region", failing)
    with pytest.raises(OSError, match="disk went away"):
        seg.segment(source)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []  # no field.tif, no temporary, no summary row
    calls["n"] = 0
    with pytest.raises(OSError):
        main([str(source), str(tmp_path / "copy.ome.zarr"), "--chunk", "32"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["field.ome.zarr", "out"]
    monkeypatch.setattr(ChunkedStack, "region", original)
    main([str(source), str(tmp_path / "copy.ome.zarr"), "--chunk", "64"])
    assert open_ome_zarr(tmp_path / "copy.ome.zarr").chunks == (64, 64, 64)
    assert np.array_equal(read_hsrs(tmp_path / "copy.ome.zarr")[0], stack.astype(np.float32))


def test_reading_chunked_input_without_zarr_says_how_to_install_it(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_zarr(name, *args, **kwargs):
        if name == "zarr":
            raise ImportError("No module named 'zarr'")
        return real_import(name, *args, **kwargs)

    path = write_ome_zarr(tmp_path / "f.ome.zarr", np.ones((20, 16, 16), np.float32), WAVENUMBERS)
    monkeypatch.setattr(builtins, "__import__", no_zarr)
    with pytest.raises(HSRSInputError, match=r"f.ome.zarr: reading chunked stacks .* pip install 'zarr>=3'"):
        read_header(path)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_a_mosaic_label_map_can_be_an_ome_zarr_label_image_equal_to_the_tiff(tmp_path, phantom, version):
    import zarr
    from scripts.engine.batch import stack_is_complete
    from scripts.io.ome_zarr import write_label_tiles_ome_zarr

    stack, wavenumbers = phantom
    source = write_ome_zarr(tmp_path / "field.ome.zarr", stack, wavenumbers, 0.25, chunk=32)
    as_tiff, _, _ = _segmenter(tmp_path / "tif", tile_px=48)
    as_zarr, _, _ = _segmenter(tmp_path / "zarr", tile_px=48, label_format="ome.zarr")
    expected = read_hsrs(as_tiff.output_dir / f"{as_tiff.segment(source)['stem']}.tif")[0][0]
    row = as_zarr.segment(source)
    out = as_zarr.output_dir / f"{row['stem']}.ome.zarr"
    group = zarr.open_group(str(out), mode="r")
    assert np.array_equal(group["0"][:], expected)  # the same labels, whole (144 × 112 in 48-px chunks)
    assert group["0"].chunks == (48, 48)
    attrs = dict(group.attrs)
    meta = attrs if "multiscales" in attrs else attrs["ome"]
    assert [a["name"] for a in meta["multiscales"][0]["axes"]] == ["y", "x"]
    names = {p["label-value"]: p["class"] for p in meta["image-label"]["properties"]}
    assert names == {0: "background", 1: "nucleus", 2: "lipid_droplet"}
    assert stack_is_complete({"image": str(source)}, as_zarr.output_dir, ["{stem}.ome.zarr"], {"summary.csv": "stem"})
    # written in the chosen OME-NGFF version; a wrong number of tiles leaves no folder behind
    write_label_tiles_ome_zarr(
        tmp_path / "v.ome.zarr", (20, 20), 16, iter([np.ones((16, 16), np.uint8)] * 4), {"a": 1}, version=version
    )
    assert zarr.open_group(str(tmp_path / "v.ome.zarr"), mode="r").metadata.zarr_format == (
        2 if version == "0.4" else 3
    )
    with pytest.raises(ValueError, match="3 tiles given"):
        write_label_tiles_ome_zarr(
            tmp_path / "w.ome.zarr", (20, 20), 16, iter([np.ones((16, 16), np.uint8)] * 3), {"a": 1}
        )
    assert not (tmp_path / "w.ome.zarr").exists()
    with pytest.raises(Exception, match="label_format must be one of"):
        _segmenter(tmp_path / "bad", label_format="png")
