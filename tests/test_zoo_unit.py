"""Model-zoo-style unit test of the bundle's workflows (the shape of ``ci/unit_tests/test_<bundle>.py``).

Creates MONAI ``ConfigWorkflow`` objects for training, evaluation and inference on tiny synthetic
data and runs ``initialize`` / ``check_properties`` / ``run`` / ``finalize``, as the MONAI model
zoo's CI does. Self-contained (unittest, NumPy and nibabel only), so it can be dropped into the zoo's
``ci/unit_tests/`` unchanged (there the bundle lives at ``models/hsrs_subcellular_segmentation``, which is
found when the test runs from the zoo's root); ``HSRS_BUNDLE_ROOT`` overrides the bundle's path.
"""

import json
import os
import shutil
import sys
import tempfile
import unittest

import nibabel as nib
import numpy as np
from monai.bundle import ConfigWorkflow

ZOO_BUNDLE_ROOT = "models/hsrs_subcellular_segmentation"  # where the model zoo keeps the bundle (run from its root)
BUNDLE_ROOT = os.environ.get("HSRS_BUNDLE_ROOT") or (
    ZOO_BUNDLE_ROOT if os.path.isdir(ZOO_BUNDLE_ROOT) else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)
FRAMES, HEIGHT, WIDTH = 16, 48, 32  # the fewest frames the network takes; a non-square field

TRAIN_OVERRIDE = {
    "max_epochs": 1,
    "val_interval": 1,
    "batch_size": 2,
    "num_samples": 2,
    "patch_size": [16, 16],  # the smallest field the metadata promises (16 * n, n = 1)
    "val_roi_size": [32, 32],
    "cache_rate": 0.0,
    "num_workers": 0,
    "min_frames": FRAMES,
}
INFER_OVERRIDE = {"handlers#0#_disabled_": True, "roi_size": [32, 32], "min_frames": FRAMES}  # no weights loaded


def check_workflow(workflow, check_properties=True):
    """What the zoo's ``ci/unit_tests/utils.py`` does: initialize, check the properties, run, finalize."""
    workflow.initialize()
    if check_properties:
        missing = workflow.check_properties()
        if missing:
            raise ValueError(f"workflow properties missing or wrong: {missing}")
    output = workflow.run()
    workflow.finalize()
    return output


def _config(name):
    return os.path.join(BUNDLE_ROOT, "configs", name)


class TestHSRSSubcellularSegmentation(unittest.TestCase):
    def setUp(self):
        if BUNDLE_ROOT not in sys.path:  # the configs import the bundle's `scripts` package, as in the zoo's tests
            sys.path.insert(0, BUNDLE_ROOT)
        self.dataset_dir = tempfile.mkdtemp()
        self.work_dir = tempfile.mkdtemp()
        rng = np.random.default_rng(0)
        wavenumbers = np.linspace(2800.0, 3050.0, FRAMES).tolist()
        items = []
        for s in range(6):
            label = np.zeros((WIDTH, HEIGHT), np.uint8)  # NIfTI: X = columns, Y = rows
            label[4:12, 6:20] = 1
            label[20:24, 30:34] = 2
            stack = rng.uniform(100, 200, (WIDTH, HEIGHT, FRAMES)).astype(np.float32) + 50.0 * (label > 0)[..., None]
            image_file = os.path.join(self.dataset_dir, f"image_{s}.nii.gz")
            label_file = os.path.join(self.dataset_dir, f"label_{s}.nii.gz")
            nib.save(nib.Nifti1Image(stack, np.diag([0.25, 0.25, 1.0, 1.0])), image_file)
            nib.save(nib.Nifti1Image(label, np.diag([0.25, 0.25, 1.0, 1.0])), label_file)
            with open(os.path.join(self.dataset_dir, f"image_{s}.json"), "w") as f:
                json.dump({"wavenumbers": wavenumbers}, f)
            items.append({"image": image_file, "label": label_file})
        datalist = {"training": items[:4], "validation": items[4:5], "test": items[5:]}
        with open(os.path.join(self.dataset_dir, "datalist.json"), "w") as f:
            json.dump(datalist, f)
        self.images_dir = os.path.join(self.dataset_dir, "images")
        os.makedirs(self.images_dir)
        shutil.copy(items[5]["image"], self.images_dir)
        shutil.copy(os.path.join(self.dataset_dir, "image_5.json"), self.images_dir)

    def tearDown(self):
        shutil.rmtree(self.dataset_dir)
        shutil.rmtree(self.work_dir)

    def _common(self):
        return {
            "bundle_root": BUNDLE_ROOT,
            "logging_file": _config("logging.conf"),
            "meta_file": _config("metadata.json"),
            "dataset_dir": self.dataset_dir,
            "ckpt_dir": os.path.join(self.work_dir, "models"),
        }

    def test_train_eval_config(self):
        trainer = ConfigWorkflow(
            workflow_type="train",
            config_file=_config("train.yaml"),
            output_dir=os.path.join(self.work_dir, "train"),
            **self._common(),
            **TRAIN_OVERRIDE,
        )
        check_workflow(trainer, check_properties=True)
        self.assertTrue(os.path.isfile(os.path.join(self.work_dir, "models", "model.pt")))

        validator = ConfigWorkflow(
            # evaluate.yaml overrides train.yaml, so the workflow type stays "train", as in the zoo's bundles
            workflow_type="train",
            config_file=[_config("train.yaml"), _config("evaluate.yaml")],
            output_dir=os.path.join(self.work_dir, "eval"),
            **self._common(),
            **TRAIN_OVERRIDE,
        )
        check_workflow(validator, check_properties=True)
        self.assertTrue(os.path.isfile(os.path.join(self.work_dir, "eval", "metrics.csv")))

    def test_infer_config(self):
        common = {**self._common(), "dataset_dir": self.images_dir}
        inferrer = ConfigWorkflow(
            workflow_type="infer",
            config_file=_config("inference.yaml"),
            output_dir=os.path.join(self.work_dir, "infer"),
            **common,
            **INFER_OVERRIDE,
        )
        check_workflow(inferrer, check_properties=True)
        written = nib.load(os.path.join(self.work_dir, "infer", "image_5.nii.gz"))
        self.assertEqual(written.shape[:2], (WIDTH, HEIGHT))  # the label map has its input's geometry


if __name__ == "__main__":
    unittest.main()
