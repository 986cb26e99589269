"""Benchmark section: end-to-end inference workflow throughput and memory, training speed, and scale.

Each measurement runs ``python -m monai.bundle run`` (or ``torchrun … -m monai.bundle run``) in a
fresh process, as a user would, and reads that process's wall time and peak resident memory.
Scale (issue 16): a folder on 1 process vs 2 (``configs/multi_gpu_inference.yaml``), a field
segmented whole vs in tiles (``configs/mosaic.yaml``: agreement printed), and a synthetic mosaic
far larger than the memory setting, generated lazily into an uncompressed TIFF on disk.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scripts.benchmarks import SectionResult, markdown_table
from scripts.benchmarks.bundle_runs import REPO, bundle_run, config_files, inference_inferer
from scripts.io.atomic import atomic_path
from scripts.io.writer import write_stack
from scripts.simulation.dataset import simulate_dataset
from scripts.simulation.phantom import simulate_phantom

TITLE = "Workflow speed: inference throughput, memory, training time, processes, mosaics"
# the data path alone (read, resample, normalise, sliding window, write): the network is a 1×1 convolution
DATA_PATH_NET = [
    "--network_def",
    "{'_target_': 'torch.nn.Conv2d', 'in_channels': 64, 'out_channels': 3, 'kernel_size': 1}",
    "--handlers#0#_disabled_",
    "true",
]


def _inference(folder: Path, out: Path) -> tuple[float, float]:
    wall, peak, _ = bundle_run(
        ["--config_file", "configs/inference.yaml", "--dataset_dir", str(folder), "--output_dir", str(out)]
    )
    return wall, peak


def run(quick: bool) -> SectionResult:
    rows, data = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = [("bundled demo data (3 stacks, 128×128×64)", REPO / "docs" / "demo_data" / "images", 3)]
        sizes = [512] if quick else [512, 2048]
        for size in sizes:
            folder = tmp / f"in_{size}"
            folder.mkdir()
            ph = simulate_phantom(0, size, size)
            write_stack(folder / f"stack_{size}.nii.gz", ph.stack, ph.wavenumbers, 0.25)
            cases.append((f"one {size}×{size}×64 stack (float32 .nii.gz)", folder, 1))
        for name, folder, n in cases:
            wall, peak = _inference(folder, tmp / f"out_{len(rows)}")
            rows.append([name, f"{wall:.1f}", f"{wall / n:.1f}", f"{peak:.0f}"])
            data[name] = {"wall_s": wall, "per_stack_s": wall / n, "peak_rss_mib": peak, "stacks": n}
        # training speed: a short run of train.yaml on simulated 512×512 stacks
        n_train = 2 if quick else 8
        simulate_dataset(tmp / "train_data", num=n_train + 2, seed=11, height=512, width=512)
        epochs = 2
        wall, peak, log = bundle_run(
            [
                "--config_file",
                "configs/train.yaml",
                "--dataset_dir",
                str(tmp / "train_data"),
                "--output_dir",
                str(tmp / "train_out"),
                "--ckpt_dir",
                str(tmp / "models"),
                "--max_epochs",
                str(epochs),
                "--val_interval",
                str(epochs),
            ]
        )
        times = [
            _seconds(m)
            for m in re.findall(
                r"SupervisedTrainer - INFO - Epoch\[\d+\] Complete\. Time taken: (\d+:\d\d:\d\d\.\d+)", log
            )
        ]
        per_epoch = float(np.median(times)) if times else float("nan")
        n_train_items = len(json.loads((tmp / "train_data" / "datalist.json").read_text())["training"])
        iterations = int(np.ceil(n_train_items / 2))
        data["training"] = {
            "train_stacks": n_train_items,
            "seconds_per_epoch": per_epoch,
            "iterations_per_epoch": iterations,
            "peak_rss_mib": peak,
        }
    table = markdown_table(
        [
            "inference run (`configs/inference.yaml`, end to end incl. start-up and I/O)",
            "wall (s)",
            "s per stack",
            "peak memory (MiB)",
        ],
        rows,
    )
    train = data["training"]
    note = (
        f"Training (`configs/train.yaml`, batch 2 stacks × 4 patches of 128×128×64, CPU): "
        f"**{train['seconds_per_epoch']:.0f} s per epoch** over {train['train_stacks']} training stacks of 512×512×64 "
        f"({train['iterations_per_epoch']} iterations, "
        f"{train['seconds_per_epoch'] / max(train['iterations_per_epoch'], 1):.1f} s each; "
        f"validation excluded), peak memory {train['peak_rss_mib']:.0f} MiB. Inference wall times include Python start-up, "
        f"model loading, reading, resampling, the sliding window ({_window_setting()}) and writing NIfTI + TIFF label "
        "maps, overlay PNG, summary CSV and the per-cell readout."
    )
    scale_md, data["scale"] = _scale(quick)
    return SectionResult(table + "\n\n" + note + "\n\n" + scale_md, data)


def _window_setting() -> str:
    """The sliding-window setting of ``configs/inference.yaml``, in words."""
    inferer = inference_inferer()
    roi = "×".join(map(str, inferer.max_roi_size))
    overlap = round(float(inferer.max_overlap) * inferer.max_roi_size[0])
    return f"fitted windows of at most {roi}, overlap ≥ {overlap} px, batch {inferer.sw_batch_size}"


def _seconds(hhmmss: str) -> float:
    hours, minutes, seconds = hhmmss.split(":")
    return 3600 * int(hours) + 60 * int(minutes) + float(seconds)


# ------------------------------------------------------------------------------------------ scale (issue 16)
def _torchrun_inference(folder: Path, out: Path, processes: int, log_file: Path) -> float:
    """Wall time of folder inference on ``processes`` CPU processes (torchrun, gloo; 1 torch thread each)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    cmd += ["-m", "monai.bundle", "run", "--config_file"]
    cmd += [config_files("configs/inference.yaml", "configs/multi_gpu_inference.yaml")]
    cmd += ["--dataset_dir", str(folder), "--output_dir", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    log_file.write_text(proc.stderr + proc.stdout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return wall


def _mosaic_blocks(seed: int, block: int) -> tuple[list[np.ndarray], dict]:
    """The four simulated uint16 fields of ``block`` px that synthetic mosaics repeat, and their TIFF metadata."""
    fields = [simulate_phantom(seed + i, block, block) for i in range(4)]
    scale = 60000.0 / max(float(f.stack.max()) for f in fields)
    pool = [np.clip(f.stack * scale, 0, 65535).astype(np.uint16) for f in fields]
    meta = {"wavenumbers": [round(float(v), 6) for v in fields[0].wavenumbers], "unit": "cm-1", "pixel_size_um": 0.25}
    return pool, meta


def synthetic_mosaic(path: Path, size: int, seed: int = 0, block: int = 1024) -> Path:
    """A size × size × 64 uint16 mosaic in an uncompressed TIFF, written block by block (never whole in memory):
    four simulated fields of ``block`` px repeated over the mosaic."""
    import tifffile

    block = min(block, size)
    pool, meta = _mosaic_blocks(seed, block)
    with atomic_path(path) as tmp:
        mm = tifffile.memmap(tmp, shape=(64, size, size), dtype=np.uint16, metadata=meta, photometric="minisblack")
        for i, y in enumerate(range(0, size, block)):
            for j, x in enumerate(range(0, size, block)):
                tile = pool[(i + 2 * j) % 4]
                mm[:, y : y + block, x : x + block] = tile[:, : size - y, : size - x]
            mm.flush()
        del mm
    return path


#: how the mosaic rows were run, as the table shows it (opening backtick; each row adds its options and the closing one)
MOSAIC_CMD = "`python -m monai.bundle run --config_file \"['configs/inference.yaml','configs/mosaic.yaml']\""


def _labels(path: Path) -> np.ndarray:
    import tifffile

    return tifffile.imread(str(path))


def _tile_plan(log: str) -> tuple[int | None, int | None]:
    """(tiles, tile px) from a mosaic run's log line "... in N tile(s) of P px"; (None, None) when absent."""
    plan = re.search(r"in (\d+) tile\(s\) of (\d+) px", log)
    return (int(plan.group(1)), int(plan.group(2))) if plan else (None, None)


def _mosaic_run(folder: Path, out: Path, *extra: str) -> tuple[float, float, str]:
    files = config_files("configs/inference.yaml", "configs/mosaic.yaml")
    return bundle_run(["--config_file", files, "--dataset_dir", str(folder), "--output_dir", str(out), *extra])


def _scale(quick: bool) -> tuple[str, dict]:
    data: dict = {"load_average_start": os.getloadavg()[0]}
    rows = []
    (REPO / "outputs").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=REPO / "outputs") as tmp:
        tmp = Path(tmp)
        # 1 vs 2 processes on one folder
        n, size = (2, 256) if quick else (4, 512)
        folder = tmp / "folder"
        folder.mkdir()
        for i in range(n):
            ph = simulate_phantom(100 + i, size, size)
            write_stack(folder / f"stack_{i}.nii.gz", ph.stack, ph.wavenumbers, 0.25)
        for processes in (1, 2):
            wall = _torchrun_inference(folder, tmp / f"out_p{processes}", processes, tmp / f"p{processes}.log")
            data[f"folder_{processes}_processes"] = {"wall_s": wall, "per_stack_s": wall / n, "stacks": n}
            rows.append(
                [
                    f"folder of {n} stacks {size}×{size}×64, {processes} process(es)",
                    "`torchrun --standalone --nproc_per_node="
                    f"{processes} -m monai.bundle run --config_file \"['configs/inference.yaml',"
                    "'configs/multi_gpu_inference.yaml']\" --dataset_dir D`",
                    f"{wall:.1f}",
                    f"{wall / n:.1f} s per stack",
                ]
            )
        # one field whole vs tiled (the trained network), and vs the ordinary inference
        field = 512 if quick else 1024
        folder = tmp / "field"
        folder.mkdir()
        ph = simulate_phantom(7, field, field)
        write_stack(folder / "field.tif", ph.stack, ph.wavenumbers, 0.25)
        tile = field // 4 + 64
        wall_whole, peak_whole, _ = _mosaic_run(folder, tmp / "whole", "--memory_gib", "16")
        wall_tiled, peak_tiled, _ = _mosaic_run(folder, tmp / "tiled", "--tile_px", str(tile))
        wall_plain, peak_plain = _inference(folder, tmp / "plain")
        whole, tiled, plain = (_labels(tmp / d / "field.tif") for d in ("whole", "tiled", "plain"))
        agree = float((whole == tiled).mean())
        agree_plain = float((plain == tiled).mean())
        print(
            f"[workflows] {field}² field: tiled vs whole {100 * agree:.4f} %, tiled vs ordinary inference "
            f"{100 * agree_plain:.4f} % of pixels agree",
            flush=True,
        )
        data["tiled_vs_whole"] = {
            "field_px": field,
            "tile_px": tile,
            "agreement": agree,
            "agreement_with_inference_yaml": agree_plain,
            "wall_s": {"whole": wall_whole, "tiled": wall_tiled, "inference_yaml": wall_plain},
            "peak_rss_mib": {"whole": peak_whole, "tiled": peak_tiled, "inference_yaml": peak_plain},
        }
        rows.append(
            [
                f"{field}×{field}×64 field, whole (one tile)",
                f"{MOSAIC_CMD} --memory_gib 16`",
                f"{wall_whole:.1f}",
                f"peak {peak_whole:.0f} MiB",
            ]
        )
        rows.append(
            [
                f"{field}×{field}×64 field, tiles of {tile} px",
                f"{MOSAIC_CMD} --tile_px {tile}`",
                f"{wall_tiled:.1f}",
                f"peak {peak_tiled:.0f} MiB; **{100 * agree:.3f} %** of pixels as whole, "
                f"{100 * agree_plain:.3f} % as `inference.yaml`",
            ]
        )
        # a mosaic far larger than the memory setting; the network is a 1×1 convolution: the memory bound of the data
        # path is measured, not the network's speed (a HybridUNet over 8192² takes hours on this shared CPU)
        big, memory_gib = (1024, 1) if quick else (8192, 4)
        folder = tmp / "mosaic"
        folder.mkdir()
        t0 = time.perf_counter()
        synthetic_mosaic(folder / "mosaic.tif", big)
        generate_s = time.perf_counter() - t0
        wall, peak, log = _mosaic_run(folder, tmp / "mosaic_out", "--memory_gib", str(memory_gib), *DATA_PATH_NET)
        (REPO / "outputs" / "workflows_mosaic.log").write_text(log)
        tiles, tile_px = _tile_plan(log)
        data["large_mosaic"] = {
            "size_px": big,
            "frames": 64,
            "file_gib": big * big * 64 * 2 / 1024**3,
            "float32_gib": big * big * 64 * 4 / 1024**3,
            "memory_gib": memory_gib,
            "wall_s": wall,
            "generate_s": generate_s,
            "peak_rss_mib": peak,
            "tiles": tiles,
            "tile_px": tile_px,
            "within_setting": peak <= memory_gib * 1024,
        }
        rows.append(
            [
                f"{big}×{big}×64 uint16 mosaic ({big * big * 64 * 4 / 1024**3:.0f} GiB as float32), 1×1-conv network",
                f"{MOSAIC_CMD} --memory_gib {memory_gib} --network_def <1×1 conv> --handlers#0#_disabled_ true`",
                f"{wall:.0f}",
                f"peak **{peak:.0f} MiB** (setting {memory_gib * 1024} MiB), "
                f"{data['large_mosaic']['tiles']} tiles of {data['large_mosaic']['tile_px']} px",
            ]
        )
    chunked_rows, data["chunked"] = chunked_scale(quick)  # tiled/compressed TIFF read in parts
    rows += chunked_rows
    data["load_average_end"] = os.getloadavg()[0]
    table = markdown_table(["scale run", "command", "wall (s)", "result"], rows)
    from scripts.engine.mosaic import ACTIVATION_BYTES_PER_WINDOW_PX  # (imports torch: after the runs)

    busy = max(data["load_average_start"], data["load_average_end"]) > 0.75 * (os.cpu_count() or 1) + 0.5

    note = (
        f"Scale (issue 16). Load average {data['load_average_start']:.1f} at the start and "
        f"{data['load_average_end']:.1f} at the end on {os.cpu_count()} cores"
        f"{' (the CPU was shared with other jobs: wall times are upper bounds)' if busy else ''}. 2 processes "
        "run 1 torch thread each (torchrun's default). The large mosaic replaces the network by a 1×1 convolution "
        "(`--network_def`, weights not loaded), so the run measures the data path (lazy reading, resampling, "
        "normalising, the sliding window and writing tile by tile) in minutes; the activations of one batch of the "
        f"largest window ({_window_setting()}) are reserved inside the same budget at "
        f"{ACTIVATION_BYTES_PER_WINDOW_PX} bytes per window pixel (`scripts/engine/mosaic.py`, "
        "`ACTIVATION_BYTES_PER_WINDOW_PX`: measured for the full 3D encoder, an upper bound for the fast one)."
    )
    return table + "\n\n" + note, data


# ------------------------------------------------------------------------------------------ chunked input (issue 16)
def chunked_tiff_mosaic(path: Path, size: int, tile: int = 256, seed: int = 0, block: int = 1024) -> Path:
    """``synthetic_mosaic``'s content as a zlib-compressed (level 1) tiled BigTIFF, one page per frame, written tile by
    tile (never whole in memory)."""
    import tifffile

    block = min(block, size)
    pool, meta = _mosaic_blocks(seed, block)

    def tiles():
        for k in range(64):
            for y in range(0, size, tile):
                for x in range(0, size, tile):
                    src = pool[((y // block) + 2 * (x // block)) % 4][k, y % block :, x % block :][:tile, :tile]
                    out = np.zeros((tile, tile), np.uint16)
                    out[: src.shape[0], : src.shape[1]] = src
                    yield out

    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            data=tiles(),
            shape=(64, size, size),
            dtype=np.uint16,
            tile=(tile, tile),
            compression="zlib",
            compressionargs={"level": 1},
            bigtiff=True,
            photometric="minisblack",
            metadata=meta,
        )
    return path


def _timings(log: str) -> dict:
    m = re.search(
        r"segmented in ([\d.]+) s \(reading regions ([\d.]+) s, preprocessing ([\d.]+) s, network ([\d.]+) s, "
        r"sampling, writing and summary ([\d.]+) s\)",
        log,
    )
    keys = ("total", "read", "preprocess", "network", "other")
    return dict(zip(keys, (float(v) for v in m.groups()), strict=True)) if m else {}


def chunked_scale(quick: bool) -> tuple[list[list[str]], dict]:
    """Chunked input (tiled, compressed TIFF): a mosaic far larger than memory, and a field whole vs tiled with the
    trained network, with where its time goes. Rows for ``_scale``'s table."""
    import tifffile

    rows, data = [], {}
    (REPO / "outputs").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=REPO / "outputs") as tmp:
        tmp = Path(tmp)
        # (b) one field, trained network, whole vs tiled (the tiles memory_gib 4 gives)
        field = 512 if quick else 2048
        folder = tmp / "chunked_field"
        folder.mkdir()
        ph = simulate_phantom(7, field, field)
        stack = np.clip(ph.stack * (60000.0 / float(ph.stack.max())), 0, 65535).astype(np.uint16)
        meta = {"wavenumbers": [round(float(v), 6) for v in ph.wavenumbers], "pixel_size_um": 0.25}
        tifffile.imwrite(
            folder / "field.tif", stack, tile=(256, 256), compression="zlib", metadata=meta, photometric="minisblack"
        )
        del ph, stack
        load = os.getloadavg()
        wall_whole, peak_whole, log_whole = _mosaic_run(
            folder, tmp / "whole", "--memory_gib", "16", "--tile_px", "2048"
        )
        wall_tiled, peak_tiled, log_tiled = _mosaic_run(folder, tmp / "tiled", "--memory_gib", "4")
        if field < 2048:
            wall_whole, peak_whole, log_whole = wall_tiled, peak_tiled, log_tiled
        whole, tiled = (_labels(tmp / d / "field.tif") for d in ("whole", "tiled"))
        agree = float((whole == tiled).mean())
        tiles, tile_px = _tile_plan(log_tiled)
        t_whole, t_tiled = _timings(log_whole), _timings(log_tiled)
        print(
            f"[workflows] chunked {field}² field: tiled vs whole {100 * agree:.4f} % agree; whole {t_whole}; "
            f"tiled {t_tiled}; load {load}",
            flush=True,
        )
        data["chunked_field"] = {
            "field_px": field,
            "agreement": agree,
            "tiles": tiles,
            "tile_px": tile_px,
            "wall_s": {"whole": wall_whole, "tiled": wall_tiled},
            "peak_rss_mib": {"whole": peak_whole, "tiled": peak_tiled},
            "seconds": {"whole": t_whole, "tiled": t_tiled},
            "load_average": load,
        }

        def breakdown(t: dict) -> str:
            parts = ("read", "preprocess", "network", "other")
            return ", ".join(f"{k} {t.get(k, float('nan')):.0f} s" for k in parts)

        rows.append(
            [
                f"{field}×{field}×64 field, zlib-tiled TIFF (256² tiles), trained network, whole (one tile)",
                f"{MOSAIC_CMD} --memory_gib 16 --tile_px 2048`",
                f"{wall_whole:.0f}",
                f"peak {peak_whole:.0f} MiB; {breakdown(t_whole)} (load {load[0]:.1f})",
            ]
        )
        rows.append(
            [
                f"{field}×{field}×64 field, zlib-tiled TIFF, trained network, tiled by memory_gib 4",
                f"{MOSAIC_CMD} --memory_gib 4`",
                f"{wall_tiled:.0f}",
                f"peak {peak_tiled:.0f} MiB, {data['chunked_field']['tiles']} tiles of "
                f"{data['chunked_field']['tile_px']} px; **{100 * agree:.3f} %** of pixels as whole; {breakdown(t_tiled)}",
            ]
        )
        # (a) a compressed tiled mosaic far larger than memory, 1×1-conv network (the data path's memory bound)
        big, memory_gib = (1024, 1) if quick else (8192, 4)
        folder = tmp / "chunked_mosaic"
        folder.mkdir()
        t0 = time.perf_counter()
        chunked_tiff_mosaic(folder / "mosaic.tif", big)
        generate_s = time.perf_counter() - t0
        load = os.getloadavg()
        wall, peak, log = _mosaic_run(folder, tmp / "mosaic_out", "--memory_gib", str(memory_gib), *DATA_PATH_NET)
        (REPO / "outputs" / "workflows_chunked_mosaic.log").write_text(log)
        tiles, tile_px = _tile_plan(log)
        amp = re.search(r"the tiles decode ([\d.]+)×", log)
        data["chunked_mosaic"] = {
            "size_px": big,
            "file_gib": (folder / "mosaic.tif").stat().st_size / 1024**3,
            "memory_gib": memory_gib,
            "wall_s": wall,
            "generate_s": generate_s,
            "peak_rss_mib": peak,
            "tiles": tiles,
            "tile_px": tile_px,
            "read_amplification": float(amp.group(1)) if amp else None,
            "seconds": _timings(log),
            "within_setting": peak <= memory_gib * 1024,
            "load_average": load,
        }
        print(f"[workflows] chunked mosaic: {data['chunked_mosaic']}", flush=True)
        rows.append(
            [
                f"{big}×{big}×64 uint16 mosaic, zlib-tiled BigTIFF (256² tiles, "
                f"{data['chunked_mosaic']['file_gib']:.1f} GiB on disk), 1×1-conv network",
                f"{MOSAIC_CMD} --memory_gib {memory_gib} --network_def <1×1 conv> --handlers#0#_disabled_ true`",
                f"{wall:.0f}",
                f"peak **{peak:.0f} MiB** (setting {memory_gib * 1024} MiB), {data['chunked_mosaic']['tiles']} tiles of "
                f"{data['chunked_mosaic']['tile_px']} px; {breakdown(data['chunked_mosaic']['seconds'])} "
                f"(load {load[0]:.1f})",
            ]
        )
    return rows, data


if __name__ == "__main__":  # only the chunked-input rows: python -m scripts.benchmarks.workflows [--quick]
    chunked_rows, chunked_data = chunked_scale("--quick" in sys.argv)
    print(markdown_table(["scale run", "command", "wall (s)", "result"], chunked_rows))
    print(json.dumps(chunked_data, indent=1, default=str))
