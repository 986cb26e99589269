"""nnU-Net's training recipe as a config override: deep-supervision loss, mirror TTA, and a real (tiny) training."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from monai.inferers import SimpleInferer
from monai.losses import DiceCELoss
from scripts.engine.deep_supervision import StackedDeepSupervisionLoss
from scripts.engine.tta import MirrorTTAInferer

from tests.conftest import CONFIGS, TRAIN, workflow

RECIPE = [TRAIN, str(CONFIGS / "baselines" / "nnunet_2d.yaml"), str(CONFIGS / "recipes" / "nnunet.yaml")]


def test_deep_supervision_loss_unbinds_dynunet_heads_with_nnunet_weights():
    torch.manual_seed(0)
    base = DiceCELoss(to_onehot_y=True, softmax=True)
    loss = StackedDeepSupervisionLoss(base)
    assert loss.get_weights(3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])  # 1/2^i, normalised
    target = torch.randint(0, 3, (2, 1, 16, 16))
    heads = torch.randn(2, 3, 3, 16, 16)  # (B, 1 + N, C, H, W): DynUNet's training output
    expected = sum(w * base(heads[:, i], target) for i, w in enumerate([4 / 7, 2 / 7, 1 / 7]))
    assert loss(heads, target).item() == pytest.approx(expected.item(), rel=1e-5)
    # eval mode gives plain logits: the loss is the wrapped one
    assert loss(heads[:, 0], target).item() == pytest.approx(base(heads[:, 0], target).item(), rel=1e-6)


def test_mirror_tta_averages_probabilities_over_the_four_flips():
    torch.manual_seed(0)
    ramp = torch.linspace(-2, 2, 8)

    def net(x):  # not mirror-equivariant: the logits depend on the position
        return torch.stack([x.mean(1) * ramp, -x.mean(1) * ramp[:, None], torch.zeros_like(x[:, 0])], dim=1)

    x = torch.randn(1, 5, 8, 8)
    out = MirrorTTAInferer(SimpleInferer())(x, net)
    expected = (
        sum(
            torch.softmax(net(torch.flip(x, d) if d else x), 1).flip(d) if d else torch.softmax(net(x), 1)
            for d in [(), (-2,), (-1,), (-2, -1)]
        )
        / 4
    )
    assert torch.allclose(torch.softmax(out, 1), expected, atol=1e-6)
    assert not torch.allclose(expected, torch.softmax(net(x), 1), atol=1e-3)  # the flips did change something
    off = MirrorTTAInferer(SimpleInferer(), enabled=False)(x, net)
    assert torch.equal(off, net(x))


def _tiny_training(configs, sim_dir, tmp_path, epochs: int, **overrides):
    """A training workflow of ``epochs`` tiny epochs (32² patches, 2 stacks × 2 patches), validated after the last."""
    return workflow(
        configs,
        "train",
        dataset_dir=str(sim_dir),
        output_dir=str(tmp_path / "run"),
        ckpt_dir=str(tmp_path / "models"),
        patch_size=[32, 32],
        val_roi_size=[64, 64],
        num_samples=2,
        batch_size=2,
        val_interval=epochs,
        max_epochs=epochs,
        **overrides,
    )


def test_nnunet_recipe_trains_the_baseline_with_sgd_poly_and_deep_supervision(sim_dir, tmp_path):
    wf = _tiny_training(RECIPE, sim_dir, tmp_path, 2, **{"network_def#patch_size": [32, 32]})
    parser = wf.parser
    net = parser.get_parsed_content("network")
    opt = parser.get_parsed_content("train#optimizer")
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["nesterov"]
    assert opt.defaults["momentum"] == 0.99
    assert opt.defaults["weight_decay"] == 3e-5
    net.train()
    assert net(torch.rand(1, 64, 32, 32)).dim() == 5  # deep-supervision heads in training mode
    seen = []
    trainer = parser.get_parsed_content("train#trainer")
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: seen.append(opt.param_groups[0]["lr"]))
    wf.run()
    # poly decay per epoch (not cosine: 0.005 after epoch 1 of 2): lr = 0.01 * (1 - epoch / 2) ** 0.9
    assert seen == pytest.approx([0.01 * 0.5**0.9, 0.0], abs=1e-9)
    assert (tmp_path / "models" / "model_nnunet_2d_recipe.pt").is_file()
    assert isinstance(parser.get_parsed_content("validate#inferer"), MirrorTTAInferer)


def test_nnunet_recipe_trains_the_hybrid_with_its_deep_supervision_heads(sim_dir, tmp_path):
    """The study's arm hybrid_fast_instance_nnunet_recipe: the same recipe file on top of the hybrid-UNet."""
    hybrid = [TRAIN, str(CONFIGS / "baselines" / "hybrid_fast_instance_norm.yaml"), RECIPE[2]]
    wf = _tiny_training(hybrid, sim_dir, tmp_path, 1)
    parser = wf.parser
    net = parser.get_parsed_content("network")
    assert net.deep_supervision
    assert len(net.deep_supervision_heads) == 2
    assert isinstance(parser.get_parsed_content("train#loss"), StackedDeepSupervisionLoss)
    heads_before = [p.detach().clone() for p in net.deep_supervision_heads.parameters()]
    wf.run()
    assert any(
        not torch.equal(a, b) for a, b in zip(heads_before, net.deep_supervision_heads.parameters(), strict=True)
    )
    saved = torch.load(tmp_path / "models" / "model_nnunet_2d_recipe.pt", map_location="cpu", weights_only=True)
    assert any(k.startswith("deep_supervision_heads.") for k in saved)
