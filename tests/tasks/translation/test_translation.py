"""Translation task: the embedded dehazing set and paired loader, a pix2pix fit on tiny networks (both
optimisers step, D(real)/D(fake) and PSNR/SSIM beside the identity mapping are logged, the grid PNG is
written), slot wiring (feature matching, gradient penalty, injected SSIM range) and config errors."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

import losses
from tasks.translation import TranslationDataModule, TranslationTask
from tasks.translation.data import PairedFolderDataset, generate_dehaze, haze

TINY = {"num_downs": 5, "ngf": 4, "ndf": 4, "grid_images": 2}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dehaze_root(tmp_path_factory) -> Path:
    return generate_dehaze(tmp_path_factory.mktemp("dehaze"), num_train=4, num_val=2, size=32)


def test_haze_model_and_generated_pairs(dehaze_root: Path):
    clear = np.full((2, 2, 3), 0.2, dtype=np.float32)
    depth = np.array([[0.0, 1.0], [2.0, 0.5]], dtype=np.float32)
    t = np.exp(-1.5 * depth)[..., None]
    np.testing.assert_allclose(haze(clear, depth, 1.5, 0.9), clear * t + 0.9 * (1 - t), rtol=1e-6)
    train = PairedFolderDataset(dehaze_root / "train")
    hazy, target = train[0]
    assert len(train) == 4 and hazy.shape == target.shape == (3, 32, 32)
    assert -1.0 <= float(hazy.min()) and float(hazy.max()) <= 1.0 and not torch.equal(hazy, target)
    assert (dehaze_root / "train" / "A" / "stereo_motorcycle_0000.png").is_file()  # the real-disparity photo
    val_names = {p.name.rsplit("_", 1)[0] for p in (dehaze_root / "val" / "A").iterdir()}
    train_names = {p.name.rsplit("_", 1)[0] for p in (dehaze_root / "train" / "A").iterdir()}
    assert not val_names & train_names  # validation photos are unseen


def test_paired_loader_names_a_missing_partner(tmp_path: Path, dehaze_root: Path):
    split = tmp_path / "train"
    (split / "A").mkdir(parents=True)
    (split / "B").mkdir()
    (split / "A" / "x.png").write_bytes((dehaze_root / "train" / "A" / "stereo_motorcycle_0000.png").read_bytes())
    with pytest.raises(FileNotFoundError, match="without the same file name"):
        PairedFolderDataset(split)
    with pytest.raises(ValueError, match="data.dehaze: unknown key"):
        TranslationDataModule(dehaze={"beta_max": 3})


def test_pix2pix_fit_updates_both_networks_and_logs_metrics(tmp_path: Path, dehaze_root: Path):
    torch.manual_seed(0)
    task = TranslationTask(**TINY)
    before = {n: p.detach().clone() for n, p in task.named_parameters()}
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
                        num_sanity_val_steps=0)
    trainer.fit(task, TranslationDataModule(root=str(dehaze_root), batch_size=2))
    changed = {n.split(".")[0] for n, p in task.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"generator", "discriminator"}
    metrics = trainer.callback_metrics
    for key in ("train/d_real", "train/d_fake", "train/loss/generator/adversarial", "train/loss/generator/l1",
                "train/loss/discriminator", "val/psnr", "val/ssim", "val/psnr_input", "val/ssim_input",
                "val/psnr_gain"):
        assert torch.isfinite(metrics[key]), key
    assert 0 < float(metrics["val/psnr_input"]) < 40 and -1 <= float(metrics["val/ssim"]) <= 1
    assert (tmp_path / "predictions" / "epoch_000.png").is_file()


def test_paper_optimiser_defaults_and_one_group_set_per_network():
    task = TranslationTask(**TINY)
    g_opt, d_opt = task.configure_optimizers()[0]
    for opt in (g_opt, d_opt):
        assert isinstance(opt, torch.optim.Adam)
        assert opt.param_groups[0]["lr"] == pytest.approx(2e-4) and opt.param_groups[0]["betas"] == (0.5, 0.999)
    g_ids = {id(p) for group in g_opt.param_groups for p in group["params"]}
    assert g_ids == {id(p) for p in task.generator.parameters()}


def test_feature_matching_gradient_penalty_and_ssim_range_are_wired():
    loss = {
        "generator": [{"name": "adversarial", "params": {"kind": "hinge"}}, {"name": "l1", "weight": 100},
                      {"name": "feature_matching", "weight": 10}, {"name": "ssim"}],
        "discriminator": [{"name": "adversarial_d", "params": {"kind": "hinge"}},
                          {"name": "gradient_penalty", "weight": 10, "params": {"kind": "r1"}}],
    }
    task = TranslationTask(loss=loss, **TINY)
    assert task.needs_features and task.loss_slots["generator"].terms[3].low == -1.0  # value_range injected
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    fake = task.generator(a)
    feats, logits = task.discriminator.features(torch.cat([a, fake], 1))
    real_feats = task.discriminator.features(torch.cat([a, b], 1))[0]
    terms = task.evaluate("generator", fake, b, fake_logits=logits, fake_features=feats,
                          real_features=real_feats, input=a).terms
    assert set(terms) == {"adversarial", "l1", "feature_matching", "ssim"}
    assert all(torch.isfinite(v) for v in terms.values())
    result = task.evaluate("discriminator", logits.detach(), logits.detach(),
                           discriminator=task.conditioned(a), real=b, fake=fake.detach())
    assert torch.isfinite(result.total) and "gradient_penalty" in result.terms


@pytest.mark.parametrize(
    ("loss", "message"),
    [
        ({"generator": {"name": "adversarial", "params": {"kind": "lsgan"}}}, r"must be the same objective"),
        ({"discriminator": "l1"}, r"'mae' is a regression loss|'l1' is a regression loss"),
        ({"generator": {"name": "ssim", "params": {"value_range": [0, 1]}}}, None),
    ],
)
def test_config_errors_name_the_slot(loss, message):
    if message is None:  # a user-set value_range wins over the injected one
        task = TranslationTask(loss=loss, **TINY)
        assert task.loss_slots["generator"].terms[0].low == 0.0
        return
    with pytest.raises(losses.LossConfigError, match=message):
        TranslationTask(loss=loss, **TINY)
