"""Packaging for the model zoo: large_files.yml, and metadata.json's package versions against what the code imports."""

from __future__ import annotations

import hashlib

import yaml

from tests.conftest import REPO


def test_large_files_yml_lists_the_weights_with_their_md5():
    entries = yaml.safe_load((REPO / "large_files.yml").read_text())["large_files"]
    assert {e["path"] for e in entries} == {"models/model.pt", "models/model.ts", "models/model.onnx"}
    for entry in entries:
        assert entry["hash_type"] == "md5"
        digest = hashlib.md5((REPO / entry["path"]).read_bytes()).hexdigest()
        assert digest == entry["hash_val"], f"{entry['path']} changed: update large_files.yml (md5 {digest})"


# import name -> distribution name, for the imports whose names differ
DISTRIBUTIONS = {"ignite": "pytorch-ignite", "skimage": "scikit-image", "sklearn": "scikit-learn", "yaml": "pyyaml"}
#: Provided by MONAI / PyTorch themselves (their versions have own metadata keys) or optional (imported in a try).
#: zarr: only for OME-Zarr and chunked TIFF (scripts/io/ome_zarr.py says to install it); zarr 3.1 needs numpy >= 2,
#: which the MONAI Label environment cannot have.
NOT_LISTED = {
    "monai",
    "torch",
    "numpy",
    "pyarrow",
    "zarr",
    "onnxruntime",
    "onnxscript",
    "napari",
    "qtpy",
}  # ONNX Runtime: optional (backend auto uses it when installed); napari, qtpy: the napari plugin's (requirements-napari.txt)


def _third_party_imports() -> set[str]:
    import ast
    import sys

    names = set()
    for path in (REPO / "scripts").rglob("*.py"):
        if "monailabel_app" in path.parts:  # runs in the MONAI Label environment, not in the bundle's
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in {"scripts", "__future__"}}


def test_metadata_lists_every_import_at_the_versions_tested_with_monai_label():
    """The zoo installs required_packages_version; they must cover every import and coexist with numpy < 2."""
    import json

    meta = json.loads((REPO / "configs" / "metadata.json").read_text())
    listed = set(meta["required_packages_version"])
    needed = {DISTRIBUTIONS.get(n, n) for n in _third_party_imports()} - NOT_LISTED
    needed |= {"scikit-learn", "tensorboard", "fire"}  # used through phasorpy, train.yaml's handlers, monai.bundle
    assert needed <= listed, f"missing in metadata.json required_packages_version: {sorted(needed - listed)}"
    pins = {}
    for line in (REPO / "requirements-monailabel.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("#")[0].strip().split("==")
            pins[name.lower()] = version
    for name, version in {**meta["required_packages_version"], "numpy": meta["numpy_version"]}.items():
        assert pins.get(name) == version, f"{name}: metadata {version}, tested with MONAI Label {pins.get(name)}"
    assert int(meta["numpy_version"].split(".")[0]) < 2  # MONAI Label 0.8.5 needs numpy < 2
