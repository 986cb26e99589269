"""Optimized phasor: segmenter, parameters, fit, folder job, bundle config, phasorpy compatibility."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from scripts.io.reader import read_hsrs
from scripts.io.writer import write_label_map, write_stack
from scripts.phasor import compat as phasor_compat
from scripts.phasor.background import cell_free_mask, subtract_background_surface
from scripts.phasor.cursors import reference_phasors
from scripts.phasor.fit import FitCase, dice_per_class, fit_command, fit_parameters, mean_dice
from scripts.phasor.job import PhasorJob, PhasorJobError, pseudo_label_datalist
from scripts.phasor.parameters import DEFAULT_PARAMETERS_FILE, PhasorInputError, PhasorParameters, load_parameters
from scripts.phasor.segmenter import PhasorSegmenter
from scripts.simulation.phantom import PRESETS, simulate_phantom

REPO = Path(__file__).resolve().parent.parent
#: Lowest Dice the tuned parameters must reach on the small phantoms below. Measured with the shipped
#: parameters: easy nucleus 0.99–1.00 and droplets 0.97 (one phantom has none), default nucleus
#: 0.99–1.00 and droplets 0.89–0.93; the same label maps shuffled over the pixels (chance) score
#: 0.07–0.25 (nucleus) and 0.02–0.04 (droplets).
MIN_DICE = {"nucleus": 0.9, "lipid_droplet": 0.75}


@pytest.fixture(scope="module")
def tuned() -> PhasorSegmenter:
    return PhasorSegmenter(load_parameters())


@pytest.fixture(scope="module")
def small_phantoms() -> dict:
    """Two 128×128 phantoms per preset (easy, default), seeds unrelated to the tuning data."""
    return {
        preset: [simulate_phantom(np.random.default_rng([4242, k, i]), 128, 128, preset=preset) for i in range(2)]
        for k, preset in enumerate(("easy", "default"))
    }


@pytest.fixture(scope="module")
def easy_phantom():
    return simulate_phantom(np.random.default_rng([4242, 0, 0]), 128, 128, preset="easy")


# ------------------------------------------------------------------------------------------ parameters
def test_parameters_round_trip_yaml_and_json(tmp_path):
    p = PhasorParameters(median_repeat=3, ld_rule="circle", cursors={"lipid": [-0.2, 0.45]}, nucleus_smoothing=1.5)
    for name in ("p.yaml", "p.json"):
        path = p.save(tmp_path / name, header="tuned by hand\nsecond line", extra={"fit": {"dice": 0.5}})
        assert PhasorParameters.load(path) == p
    text = (tmp_path / "p.yaml").read_text()
    assert text.startswith("# tuned by hand\n# second line\n")
    assert PhasorParameters.load(tmp_path / "p.yaml").cursors == {"lipid": (-0.2, 0.45)}


def test_parameters_reject_bad_values_with_the_name():
    with pytest.raises(ValueError, match="median_repeat"):
        PhasorParameters(median_repeat=-1)
    with pytest.raises(ValueError, match="threshold_method"):
        PhasorParameters(threshold_method="magic")
    with pytest.raises(ValueError, match="median_size must be odd"):
        PhasorParameters(median_size=4)
    with pytest.raises(ValueError, match=r"unknown phasor parameter\(s\) \['radius'\]"):
        PhasorParameters.from_dict({"radius": 0.1})
    with pytest.raises(ValueError, match="outside the unit circle"):
        PhasorParameters(cursors={"nucleus": [2.0, 0.0]})


def test_parameters_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("parameters: {clusters: 7}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*clusters"):
        PhasorParameters.load(bad)
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        load_parameters(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match=r"\.yaml, \.yml or \.json"):
        PhasorParameters().save(tmp_path / "p.txt")


def test_shipped_parameters_are_tuned_and_say_how():
    text = DEFAULT_PARAMETERS_FILE.read_text()
    assert "python -m scripts.simulate --out" in text
    assert "--preset default" in text
    assert "python -m scripts.phasor fit --datalist" in text
    assert "--split training" in text
    assert load_parameters() == PhasorParameters.load(DEFAULT_PARAMETERS_FILE)
    assert load_parameters() != PhasorParameters()  # tuned, not the class defaults


# ------------------------------------------------------------------------------------------- phasorpy shim
def test_compat_prefers_phasorpy_filter_module_of_08(monkeypatch):
    fake = types.ModuleType("phasorpy.filter")

    def phasor_filter_median(*a, **k):
        return "median 0.8"

    def phasor_threshold(*a, **k):
        return "threshold 0.8"

    fake.phasor_filter_median, fake.phasor_threshold = phasor_filter_median, phasor_threshold
    monkeypatch.setitem(sys.modules, "phasorpy.filter", fake)
    median, threshold = phasor_compat.import_phasor_filters()
    assert (median(), threshold()) == ("median 0.8", "threshold 0.8")


def test_compat_falls_back_to_phasorpy_phasor_of_07(monkeypatch):
    import phasorpy.phasor

    monkeypatch.setitem(sys.modules, "phasorpy.filter", None)  # import phasorpy.filter -> ImportError
    median, threshold = phasor_compat.import_phasor_filters()
    assert median is phasorpy.phasor.phasor_filter_median
    assert threshold is phasorpy.phasor.phasor_threshold
    with pytest.raises(ImportError, match=r"phasorpy>=0\.7"):
        phasor_compat.import_phasor_filters(("phasorpy.filter", "phasorpy.cursor"))


def test_segmenter_uses_the_shim():
    from scripts.phasor import segmenter

    assert segmenter.phasor_filter_median is phasor_compat.phasor_filter_median
    assert segmenter.phasor_threshold is phasor_compat.phasor_threshold


# --------------------------------------------------------------------------------------------- accuracy
def test_tuned_dice_is_far_above_chance(tuned, small_phantoms):
    rng = np.random.default_rng(0)
    for preset, phantoms in small_phantoms.items():
        scores, chance = [], []
        for ph in phantoms:
            labels = tuned.segment(ph.stack, ph.wavenumbers).labels
            assert labels.shape == ph.labels.shape
            assert labels.dtype == np.uint8
            scores.append(dice_per_class(labels, ph.labels))
            chance.append(dice_per_class(rng.permutation(labels.reshape(-1)).reshape(labels.shape), ph.labels))
        got, base = mean_dice(scores), mean_dice(chance)
        for cls, minimum in MIN_DICE.items():
            assert got[cls] >= minimum, f"{preset} {cls}: Dice {got[cls]:.3f} < {minimum}"
            assert got[cls] - base[cls] > 0.6, f"{preset} {cls}: Dice {got[cls]:.3f} vs chance {base[cls]:.3f}"


def test_automatic_cursors_follow_a_calibration_shift(easy_phantom):
    ph, shift = easy_phantom, 6.0  # labelled 6 cm⁻¹ too high, every band lands 6 cm⁻¹ higher on the grid
    auto, fixed = PhasorSegmenter(load_parameters()), PhasorSegmenter(load_parameters().replace(auto_cursors=False))
    a0, a1 = (auto.segment(ph.stack, ph.wavenumbers + d).cursors for d in (0.0, shift))
    f0, f1 = (fixed.segment(ph.stack, ph.wavenumbers + d).cursors for d in (0.0, shift))
    period = 64 * (ph.wavenumbers[1] - ph.wavenumbers[0])  # one first-harmonic turn, cm⁻¹
    expected = 2 * math.pi * shift / period  # phases grow with wavenumber
    for name in ("cytoplasm", "nucleus", "lipid"):
        turn = math.atan2(a1[name].imag, a1[name].real) - math.atan2(a0[name].imag, a0[name].real)
        assert turn == pytest.approx(
            expected, abs=0.06
        ), f"{name} cursor turned {turn:.3f} rad, expected {expected:.3f}"
        assert (f1[name].real, f1[name].imag) == (f0[name].real, f0[name].imag)  # fixed cursors stay put
    assert a1["nucleus"].source == "gmm"
    assert a1["lipid"].source == "calibrated"


def test_reference_cursors_order_along_the_window():
    ref = reference_phasors()
    phase = {k: math.atan2(s, g) % (2 * math.pi) for k, (g, s) in ref.items()}
    assert phase["lipid"] < phase["cytoplasm"] < phase["nucleus"]  # 2850 < 2935 < 2935 + DNA at 2960
    assert reference_phasors(harmonic=2) != ref


def test_background_surface_removes_a_corner_gradient_and_keeps_the_cells():
    yy, xx = np.mgrid[0:64, 0:64]
    r2 = ((yy - 32) ** 2 + (xx - 32) ** 2) / 32**2
    shape = np.exp(-np.arange(16) / 5.0)[:, None, None]  # decays from the first frame, like non-Raman background
    cell = ((yy - 30) ** 2 + (xx - 34) ** 2 < 12**2).astype(np.float32)
    stack = (0.3 * r2 * shape + cell * np.linspace(1.0, 2.0, 16)[:, None, None]).astype(np.float32)
    mask = cell_free_mask(stack.mean(axis=0), degree=2)
    assert not mask[cell > 0].any()
    assert mask[0, 0]
    assert mask[63, 63]
    flat = subtract_background_surface(stack, mask, degree=2)
    assert np.abs(flat[:, mask]).max() < 1e-3  # background gone where it was fitted ...
    inside = cell > 0
    assert np.allclose(flat[:, inside].mean(axis=1), np.linspace(1.0, 2.0, 16), atol=0.02)  # ... and under the cell
    assert subtract_background_surface(stack, np.zeros((64, 64), bool)) is stack  # nothing to fit: unchanged


# ------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("value", [0.0, 5.0])
def test_constant_or_all_zero_stack_is_refused(value):
    stack = np.full((64, 32, 32), value, np.float32)
    with pytest.raises(PhasorInputError, match=r"blank\.tif: every value of the stack is .*constant"):
        PhasorSegmenter().segment(stack, np.linspace(2800, 3050, 64), source="blank.tif")


@pytest.mark.parametrize("frames", [2, 5])
def test_too_few_frames_are_refused_naming_the_minimum(frames):
    stack = np.random.default_rng(0).uniform(1, 2, (frames, 16, 16)).astype(np.float32)
    with pytest.raises(PhasorInputError, match=rf"short\.npy: the stack has {frames} frames; .* at least 8"):
        PhasorSegmenter().segment(stack, np.linspace(2800, 3050, frames), source="short.npy")


def test_wrong_shape_and_wavenumbers_are_refused(easy_phantom):
    seg = PhasorSegmenter()
    with pytest.raises(PhasorInputError, match=r"x: expected a spectral stack \(K, H, W\)"):
        seg.segment(easy_phantom.stack[0], easy_phantom.wavenumbers, source="x")
    with pytest.raises(PhasorInputError, match="63 wavenumbers were given but the stack has 64 frames"):
        seg.segment(easy_phantom.stack, easy_phantom.wavenumbers[:63], source="x")
    with pytest.raises(PhasorInputError, match="covers 2900–3150"):
        seg.segment(easy_phantom.stack, np.linspace(2900, 3150, 64), source="x")


def test_negative_values_from_offset_subtraction_change_nothing(tuned, easy_phantom):
    ph = easy_phantom
    assert (ph.stack - 1.0).min() < 0
    before = tuned.segment(ph.stack, ph.wavenumbers).labels
    after = tuned.segment(ph.stack - 1.0, ph.wavenumbers).labels
    assert (before == after).mean() > 0.999
    assert (after == 1).sum() > 100  # still finds the nucleus


def test_nan_pixels_are_repaired_left_unlabelled_and_logged(tuned, easy_phantom, caplog):
    ph = easy_phantom
    stack = ph.stack.copy()
    ys, xs = np.nonzero(ph.labels == 1)
    y, x = int(np.median(ys)), int(np.median(xs))
    stack[:, y - 3 : y + 3, x - 3 : x + 3] = np.nan  # a hole in the nucleus
    stack[10, 0, 0] = np.inf
    with caplog.at_level(logging.WARNING):
        labels = tuned.segment(stack, ph.wavenumbers, source="holes.nii.gz").labels
    assert "holes.nii.gz: 37 pixels contain NaN/Inf" in caplog.text
    assert (labels[y - 3 : y + 3, x - 3 : x + 3] == 0).all()
    clean = tuned.segment(ph.stack, ph.wavenumbers).labels
    outside = np.ones(labels.shape, bool)
    outside[y - 4 : y + 4, x - 4 : x + 4] = False
    assert (labels[outside] == clean[outside]).mean() > 0.99
    stack[7] = np.nan
    with pytest.raises(PhasorInputError, match="frame 7 has no finite value"):
        tuned.segment(stack, ph.wavenumbers)


def test_image_without_lipid_droplets_gives_an_empty_droplet_class(tuned):
    no_lds = dataclasses.replace(PRESETS["default"], lds_per_cell=(0.0, 0.0), out_of_focus_lds_per_cell=(0.0, 0.0))
    for seed in (0, 1):
        ph = simulate_phantom(seed, 128, 128, preset=no_lds)
        assert not (ph.labels == 2).any()
        result = tuned.segment(ph.stack, ph.wavenumbers)
        assert (result.labels == 2).sum() == 0
        assert result.statistics()["lipid_droplet_count"] == 0
        scores = dice_per_class(result.labels, ph.labels)
        assert math.isnan(scores["lipid_droplet"])
        assert scores["nucleus"] > 0.9
        assert mean_dice([scores])["mean"] == pytest.approx(scores["nucleus"])  # an empty class is skipped, not 0


# --------------------------------------------------------------------------------------------- fitting
def test_fit_is_reproducible_and_never_worse_than_its_start(easy_phantom):
    cases = [FitCase("a", easy_phantom.stack, easy_phantom.wavenumbers, easy_phantom.labels)]
    start = PhasorParameters()
    runs = [fit_parameters(cases, start, budget=8, seed=3) for _ in range(2)]
    assert runs[0].parameters == runs[1].parameters
    assert runs[0].score == runs[1].score
    assert len(runs[0].history) == 8
    assert runs[0].score["mean"] >= runs[0].start_score["mean"]
    with pytest.raises(ValueError, match="budget must be at least 1"):
        fit_parameters(cases, start, budget=0)


def test_fit_command_saves_parameters_with_their_provenance(sim_dir, tmp_path):
    out = tmp_path / "tuned.yaml"
    argv = ["fit", "--datalist", str(sim_dir / "datalist.json"), "--out", str(out), "--budget", "3"]
    result = fit_command(sim_dir / "datalist.json", "training", out, seed=0, budget=3, argv=argv)
    header = [line for line in out.read_text().splitlines() if line.startswith("#")]
    assert f"#   python -m scripts.simulate --out {sim_dir} --num 6 --size 64 --seed 3 --preset default" in header
    assert any(line.startswith("#   python -m scripts.phasor fit --datalist") for line in header)
    assert PhasorParameters.load(out) == result.parameters
    with pytest.raises(
        ValueError, match=r"datalist\.json: no section 'nope' \(it has \['test', 'training', 'validation'\]\)"
    ):
        fit_command(sim_dir / "datalist.json", "nope", out, budget=1)


# --------------------------------------------------------------------------------------------- folder job
def _tiny_folder(root: Path, n: int = 2) -> Path:
    root.mkdir()
    for i in range(n):
        ph = simulate_phantom(np.random.default_rng([7, i]), 64, 64)
        write_stack(root / f"cell_{i}.{'nii.gz' if i % 2 == 0 else 'tif'}", ph.stack, ph.wavenumbers)
    return root


def test_job_stops_at_a_bad_stack_naming_it_or_skips_and_records_it(tmp_path):
    data = _tiny_folder(tmp_path / "data")
    write_stack(data / "cell_5_blank.npy", np.zeros((64, 64, 64), np.float32), np.linspace(2800, 3050, 64))
    write_label_map(data / "cell_6_label", np.zeros((64, 64), np.uint8), formats=("tif",))
    with pytest.raises(PhasorJobError, match=r"stack 3/4: .*cell_5_blank\.npy: every pixel of every frame is 0"):
        PhasorJob(data, tmp_path / "out").run()
    assert (tmp_path / "out" / "labels" / "cell_1.nii.gz").is_file()  # the stacks before it are kept
    with pytest.raises(PhasorJobError, match="cell_5_blank"):  # the command line's "false" is false
        PhasorJob(data, tmp_path / "out3", skip_errors="false").run()
    rows = PhasorJob(data, tmp_path / "out2", skip_errors="true").run()
    errors = {r["stem"]: r["error"] for r in rows}
    assert errors["cell_0"] == errors["cell_1"] == ""
    assert "every pixel of every frame is 0" in errors["cell_5_blank"]
    assert "not a spectral stack" in errors["cell_6_label"]
    with open(tmp_path / "out2" / "phasor_statistics.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["stem"] for r in table] == ["cell_0", "cell_1", "cell_5_blank", "cell_6_label"]
    assert table[2]["error"]
    assert not table[0]["error"]
    assert int(table[0]["foreground_px"]) > 0
    datalist = json.loads((tmp_path / "out2" / "datalist.json").read_text())
    listed = [Path(it["image"]).name for it in datalist["training"] + datalist["validation"]]
    assert sorted(listed) == ["cell_0.nii.gz", "cell_1.tif"]


def test_job_checks_the_output_folder_and_the_input_before_any_work(tmp_path):
    data = _tiny_folder(tmp_path / "data", n=1)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError, match="a_file: the output path exists and is not a folder"):
        PhasorJob(data, blocker)
    with pytest.raises(PermissionError, match="cannot create or write to the output folder"):
        PhasorJob(data, blocker / "sub")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no stacks here")
    with pytest.raises(FileNotFoundError, match=r"no HSRS stacks found.*images/ sub-folder"):
        PhasorJob(empty, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        PhasorJob(data, tmp_path / "out", parameters_file=tmp_path / "missing.yaml")
    assert not (tmp_path / "out" / "labels").exists()


def test_pseudo_label_datalist_keeps_a_validation_share():
    rows = [{"image": f"/d/{i}", "label": f"/o/{i}", "error": ""} for i in range(10)]
    rows.append({"image": "/d/bad", "label": "", "error": "ValueError: broken"})
    d = pseudo_label_datalist(rows, 0.2)
    assert len(d["training"]) == 8
    assert len(d["validation"]) == 2
    assert {"image": "/d/bad", "label": ""} not in d["training"] + d["validation"]
    assert pseudo_label_datalist(rows[:1], 0.2) == {"training": [{"image": "/d/0", "label": "/o/0"}], "validation": []}


def test_monai_bundle_run_of_phasor_yaml_writes_everything(tmp_path):
    data = _tiny_folder(tmp_path / "data")
    (data / "cell_0.json").write_text("{}")  # a stray sidecar-like file is ignored, not read as a stack
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        "configs/phasor.yaml",
        "--dataset_dir",
        str(data),
        "--output_dir",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stem in ("cell_0", "cell_1"):
        for suffix in (".nii.gz", ".tif"):
            labels, _ = read_hsrs(out / "labels" / f"{stem}{suffix}")
            assert labels.shape == (1, 64, 64)
            assert set(np.unique(labels)) <= {0, 1, 2}
        assert (out / "plots" / f"{stem}_phasor.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "phasor_statistics.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["stem"] for r in table] == ["cell_0", "cell_1"]
    assert all(float(r["threshold"]) > 0 for r in table)
    assert {"nucleus_g", "nucleus_s", "lipid_droplet_count"} <= set(table[0])
    datalist = json.loads((out / "datalist.json").read_text())
    items = datalist["training"] + datalist["validation"]
    assert len(items) == 2
    assert len(datalist["validation"]) == 1
    for it in items:
        assert Path(it["image"]).is_absolute()
        assert Path(it["image"]).exists()
        assert Path(it["label"]).is_absolute()
        assert it["label"].endswith(".nii.gz")
        assert Path(it["label"]).exists()
    assert PhasorParameters.load(out / "phasor_parameters.yaml") == load_parameters()


def test_job_reads_tiff_frame_folders(tmp_path):
    import tifffile

    ph = simulate_phantom(np.random.default_rng([7, 9]), 64, 64)
    frames = tmp_path / "data" / "stack_frames"
    frames.mkdir(parents=True)
    for k, frame in enumerate(ph.stack):
        tifffile.imwrite(frames / f"frame_{k:02d}.tif", frame)
    (frames / "wavenumbers.json").write_text(json.dumps({"wavenumbers": ph.wavenumbers.tolist()}))
    shutil.copy(frames / "frame_00.tif", tmp_path / "data" / "frame_00_alone.tif")  # a single frame: refused
    rows = PhasorJob(tmp_path / "data", tmp_path / "out", skip_errors=True, plots=False).run()
    by_stem = {r["stem"]: r for r in rows}
    assert by_stem["stack_frames"]["error"] == ""
    assert (tmp_path / "out" / "labels" / "stack_frames.tif").is_file()
    assert "not a spectral stack" in by_stem["frame_00_alone"]["error"]
    assert not (tmp_path / "out" / "plots").exists()


# ------------------------------------------------------------ spectral axis, windows, a phasor that knows it is lost
def _frames_folder(folder: Path, stack: np.ndarray) -> Path:
    import tifffile

    folder.mkdir(parents=True)
    for k, frame in enumerate(stack):
        tifffile.imwrite(folder / f"frame_{k + 1}.tif", frame)
    return folder


def _csv(path: Path) -> dict[str, dict]:
    with open(path) as f:
        return {r["stem"]: r for r in csv.DictReader(f)}


def test_frames_without_wavenumbers_in_reversed_order_give_the_same_label_maps(tmp_path, caplog):
    ph = simulate_phantom(np.random.default_rng([4242, 0, 0]), 128, 128, preset="easy")
    _frames_folder(tmp_path / "data" / "forward", ph.stack)
    _frames_folder(tmp_path / "data" / "backward", ph.stack[::-1])
    with caplog.at_level(logging.WARNING):
        rows = PhasorJob(tmp_path / "data", tmp_path / "out", plots=False).run()
    a, _ = read_hsrs(tmp_path / "out" / "labels" / "forward.tif")
    b, _ = read_hsrs(tmp_path / "out" / "labels" / "backward.tif")
    np.testing.assert_array_equal(a, b)
    assert dice_per_class(a[0], ph.labels)["nucleus"] > 0.9
    assert [r["axis_check"] for r in rows] == ["inferred", "inferred"]
    assert any(
        "backward" in r.message and "INFERRED" in r.message and "frames reversed" in r.message for r in caplog.records
    )


def test_a_stack_covering_2814_to_2993_is_segmented(tuned):
    ph = simulate_phantom(np.random.default_rng([4242, 10]), 128, 128, wavenumbers=np.linspace(2814, 2993, 100))
    scores = dice_per_class(tuned.segment(ph.stack, ph.wavenumbers).labels, ph.labels)
    assert scores["nucleus"] > MIN_DICE["nucleus"]
    assert scores["lipid_droplet"] > MIN_DICE["lipid_droplet"]
    with pytest.raises(PhasorInputError, match=r"covers 2870–3050 cm⁻¹ .* uncovered: CH₂ symmetric \(lipid\) ~2850"):
        tuned.segment(ph.stack[:60], np.linspace(2870, 3050, 60))


def test_noise_stack_is_flagged_in_the_table_or_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "noise.npy", np.random.default_rng(0).uniform(10, 1000, (64, 48, 48)).astype(np.float32))
    rows = PhasorJob(data, tmp_path / "out", plots=False).run()
    assert rows[0]["axis_check"] == "no_chemistry"
    assert _csv(tmp_path / "out" / "phasor_statistics.csv")["noise"]["axis_check"] == "no_chemistry"
    with pytest.raises(PhasorJobError, match=r"noise\.npy: .*(no spectral contrast|fits no C–H chemistry)"):
        PhasorJob(data, tmp_path / "out2", plots=False, axis_check="refuse").run()


def test_reference_cursor_fallback_is_a_warning_and_a_column_with_the_csv_count(tmp_path, caplog):
    ph = simulate_phantom(np.random.default_rng([4242, 11]), 64, 64)
    stack = np.full_like(ph.stack, 0.2)
    stack[:, 30:35, 30:35] = ph.stack[:, 30:35, 30:35] + 1.0  # 25 bright pixels: too few to fit 3 clusters
    (tmp_path / "data").mkdir()
    write_stack(tmp_path / "data" / "few.tif", stack, ph.wavenumbers)
    with caplog.at_level(logging.WARNING):
        PhasorJob(tmp_path / "data", tmp_path / "out", plots=False, axis_check="off").run()
    row = _csv(tmp_path / "out" / "phasor_statistics.csv")["few"]
    assert row["cursor_fit"] == "reference"
    assert row["qc"].startswith("reference cursors")
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING and "REFERENCE cursors" in r.message]
    assert len(warnings) == 1
    assert f"{row['foreground_px']} foreground pixels" in warnings[0]  # the log and the table count the same pixels


def test_cursors_follow_a_cloud_far_from_the_references(tuned, caplog):
    """An axis 40 cm⁻¹ off puts the whole cloud far from the references: the cursors follow it, with a WARNING.

    With the reference cursors this stack came out 0 % nucleus and 48 % "droplet" (Dice 0.00 / 0.17)."""
    ph = simulate_phantom(3, 256, 256)
    with caplog.at_level(logging.WARNING):
        result = tuned.segment(ph.stack, ph.wavenumbers - 40)
    assert result.cursor_fit.method == "cloud"
    assert result.statistics()["cursor_fit"] == "cloud"
    assert "far from the reference cursors" in result.statistics()["qc"]
    assert any("cursors fitted to the cloud" in r.message for r in caplog.records)
    assert dice_per_class(result.labels, ph.labels)["nucleus"] > 0.9


def test_implausible_label_fractions_are_flagged(caplog):
    from scripts.phasor.segmenter import _implausible_fractions

    labels = np.zeros((10, 10), np.uint8)
    labels[:, :5] = 2
    with caplog.at_level(logging.WARNING):
        flags = _implausible_fractions(labels, np.ones((10, 10), bool), "tissue.tif")
    assert flags == ["implausible: lipid droplet 50 % of the foreground (> 40 %)"]
    assert any("tissue.tif" in r.message and "spectral axis" in r.message for r in caplog.records)


def test_mrf_refinement_is_an_option_that_keeps_the_map_valid(tuned, easy_phantom):
    refined = PhasorSegmenter(tuned.parameters.replace(mrf_iterations=2, mrf_beta=1.0))
    plain, smooth = tuned.segment(easy_phantom.stack, easy_phantom.wavenumbers), refined.segment(
        easy_phantom.stack, easy_phantom.wavenumbers
    )
    np.testing.assert_array_equal(smooth.labels == 2, plain.labels == 2)  # droplets keep their labels
    assert not smooth.labels[~smooth.foreground].any()
    assert dice_per_class(smooth.labels, easy_phantom.labels)["nucleus"] > MIN_DICE["nucleus"]
    with pytest.raises(ValueError, match="mrf_iterations"):
        PhasorParameters(mrf_iterations=-1)


def test_a_wrong_axis_never_makes_most_of_the_field_nucleus_and_raw_droplets_are_still_found(caplog):
    """The issue's real-stack failure: under a wrong axis the nucleus map covered almost the whole animal."""
    import logging

    from scripts.phasor.fit import dice_per_class
    from scripts.phasor.parameters import load_parameters
    from scripts.phasor.segmenter import MAX_CLASS_FRACTION, PhasorSegmenter
    from scripts.simulation.phantom import simulate_phantom

    seg = PhasorSegmenter(load_parameters())
    for seed in range(3):
        ph = simulate_phantom([77, seed], 160, 160, preset="tissue")
        with caplog.at_level(logging.WARNING):
            result = seg.segment(ph.stack[::-1].copy(), ph.wavenumbers)  # frames reversed, axis not
        share = (result.labels == 1)[result.foreground].mean()
        assert share <= MAX_CLASS_FRACTION["nucleus"]
    # a raw spectral-focusing stack whose phasor cloud is far from the references: droplets from their own contrast
    ph = simulate_phantom([77, 5], 256, 256, preset="raw_spectral_focusing")
    result = seg.segment(ph.stack, ph.wavenumbers)
    assert result.cursor_fit.method != "gmm"
    assert dice_per_class(result.labels, ph.labels)["lipid_droplet"] > 0.8
