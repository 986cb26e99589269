"""A minimal MONAI Label app serving this bundle: HSRS nucleus / lipid-droplet segmentation.

Start it (loopback here; ``--host 0.0.0.0`` to serve a lab network), in the MONAI Label environment
(``requirements-monailabel.txt``, built by ``make test-monailabel``)::

    python -m monailabel.main start_server --app scripts/monailabel_app --studies STACKS \\
        --conf bundle_path . --host 127.0.0.1 --port 8000

``STACKS`` is a folder of NIfTI stacks (X × Y × K); ``--conf model_name NAME`` renames the model
(default ``hsrs_segmentation``: ``POST /infer/hsrs_segmentation?image=<id>``, ``POST /train/hsrs_segmentation``).
The server creates ``model/ lib/ logs/ bin/`` in this folder (ignored by git).

Both tasks are MONAI Label's own ``BundleInferTask`` and ``BundleTrainTask``; what the bundle
provides for them is in ``configs/inference.yaml`` (``postprocessing``) and ``configs/train.yaml``.
This app only (1) takes the bundle folder directly, so the server never asks the internet-hosted
model zoo for a bundle list as the ``monaibundle`` sample app does at start-up; (2) names the labels;
(3) makes training write the served weights, ``<bundle>/models/model.pt`` (the bundle's own training
runs keep them in their output folder), and start afresh from them for every request unless the request
says ``"resume": true``; (4) skips the pretrained weights when a request says
``"pretrained": false`` (MONAI Label 0.8.5 crashes on it: ``os.path.exists(None)`` in
``monailabel/tasks/train/bundle.py``).
"""

import logging
import os

from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel.tasks.train.bundle import BundleTrainTask

logger = logging.getLogger(__name__)

#: Label values of the bundle's label maps (0 is background), as configs/metadata.json names them.
LABELS = {"nucleus": 1, "lipid_droplet": 2}


class HSRSTrainTask(BundleTrainTask):
    """MONAI Label's bundle trainer: writes the served weights, starts a new training for every request
    (``"resume": true`` in a request continues an interrupted one), tolerates ``"pretrained": false``."""

    def __call__(self, request, datastore):
        self._request = dict(request)
        return super().__call__(request, datastore)

    def _load_checkpoint(self, model_pytorch, pretrained, train_handlers):
        if pretrained:
            super()._load_checkpoint(model_pytorch, pretrained, train_handlers)

    def _update_overrides(self, overrides):
        overrides["ckpt_dir"] = os.path.join(self.bundle_path, "models")  # the file /infer/ serves and reloads
        overrides["resume"] = bool(getattr(self, "_request", {}).get("resume", False))
        return overrides


class HSRSBundleApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]):
        bundle_path = conf.get("bundle_path")
        if not bundle_path or not os.path.isdir(os.path.join(bundle_path, "configs")):
            raise ValueError(
                f"--conf bundle_path must name this bundle's folder (holding configs/), got {bundle_path!r}"
            )
        # absolute: MONAI Label trains in a subprocess that puts this path on its PYTHONPATH; not named
        # "bundle_path", which is a method of MONAILabelApp
        self.bundle_dir = os.path.realpath(bundle_path)
        self.model_name = conf.get("model_name", "hsrs_segmentation")
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="HSRS segmentation (MONAI bundle)",
            description="Nucleus and lipid-droplet segmentation of hyperspectral stimulated Raman scattering stacks",
            labels=LABELS,
        )

    def init_infers(self) -> dict[str, InferTask]:
        task = BundleInferTask(self.bundle_dir, self.conf, type="segmentation")
        if not task.is_valid():
            raise RuntimeError(f"{self.bundle_dir}: not servable (no configs/inference.* or no models/model.pt|ts)")
        if task.labels != LABELS:
            logger.warning(f"bundle metadata labels {task.labels} differ from {LABELS}; serving {LABELS}")
            task.labels = dict(LABELS)
        return {self.model_name: task}

    def init_trainers(self) -> dict[str, TrainTask]:
        task = HSRSTrainTask(self.bundle_dir, self.conf)
        return {self.model_name: task} if task.is_valid() else {}
