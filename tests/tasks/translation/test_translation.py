"""Translation task: the embedded dehazing set and the folder loaders (corrupt data named or skipped), a
pix2pix fit (both optimisers step, D(real)/D(fake) and PSNR/SSIM beside the identity mapping logged, the
grid PNG written), CycleGAN (one step updates all four networks, an interrupted run resumes exactly,
image pools included), inpainting's hole/valid terms, predict on a folder, the collapse warning, slot
wiring and config errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image

import losses
from tasks.datacheck import DataError
from tasks.translation import TranslationDataModule, TranslationTask
from tasks.translation.data import InpaintDataset, PairedFolderDataset, UnpairedFolderDataset, generate_dehaze, haze
from tasks.translation.model import ImagePool
from trainer.callbacks import ResumeDataPosition, StepSeed

TINY = {"num_downs": 5, "ngf": 4, "ndf": 4, "grid_images": 2}
CYCLE = {"mode": "cyclegan", "ngf": 8, "ndf": 8, "n_blocks": 1, "n_layers": 2, "pool_size": 3, "grid_images": 2}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dehaze_root(tmp_path_factory) -> Path:
    return generate_dehaze(tmp_path_factory.mktemp("dehaze"), num_train=4, num_val=2, size=32)


def _trainer(root: Path, epochs: int = 1, **kwargs) -> L.Trainer:
    return L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=root, num_sanity_val_steps=0, **kwargs)


def _png(path: Path, size: tuple[int, int] = (32, 32), value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path)
    return path


def test_haze_model_and_generated_pairs(dehaze_root: Path):
    clear = np.full((2, 2, 3), 0.2, dtype=np.float32)
    depth = np.array([[0.0, 1.0], [2.0, 0.5]], dtype=np.float32)
    t = np.exp(-1.5 * depth)[..., None]
    np.testing.assert_allclose(haze(clear, depth, 1.5, 0.9), clear * t + 0.9 * (1 - t), rtol=1e-6)
    train = PairedFolderDataset(dehaze_root / "train")
    item = train[0]
    assert len(train) == 4 and item["A"].shape == item["B"].shape == (3, 32, 32)
    assert -1.0 <= float(item["A"].min()) and float(item["A"].max()) <= 1.0 and not torch.equal(item["A"], item["B"])
    assert (dehaze_root / "train" / "A" / "stereo_motorcycle_0000.png").is_file()  # the real-disparity photo
    val_names = {p.name.rsplit("_", 1)[0] for p in (dehaze_root / "val" / "A").iterdir()}
    train_names = {p.name.rsplit("_", 1)[0] for p in (dehaze_root / "train" / "A").iterdir()}
    assert not val_names & train_names  # validation photos are unseen
    with pytest.raises(ValueError, match="data.dehaze: unknown key"):
        TranslationDataModule(dehaze={"beta_max": 3})


@pytest.mark.parametrize(
    ("make_bad", "named", "message"),
    [
        (lambda s: _png(s / "A" / "lonely.png"), "A/lonely.png", "no partner named lonely"),
        (lambda s: _png(s / "B" / "orphan.png"), "B/orphan.png", "no partner named orphan"),
        (lambda s: (s / "A" / "x1.png").write_bytes(b"") or _png(s / "B" / "x1.png"), "A/x1.png", "empty file"),
        (lambda s: (s / "B" / "x1.png").write_bytes(b"not a png") or _png(s / "A" / "x1.png"), "B/x1.png",
         "not a readable image"),
        (lambda s: _png(s / "A" / "x1.png", (32, 24)) and _png(s / "B" / "x1.png"), "A/x1.png",
         "32x24 but its partner"),
    ],
)
def test_paired_loader_names_corrupt_files_or_skips_them(tmp_path: Path, make_bad, named: str, message: str):
    split = tmp_path / "train"
    _png(split / "A" / "x0.png"), _png(split / "B" / "x0.png")
    make_bad(split)
    with pytest.raises(DataError, match=message) as err:
        PairedFolderDataset(split)
    assert named in str(err.value) and "data.skip_bad" in str(err.value)
    with pytest.warns(UserWarning, match=r"skipped 1 of \d+ A/B pairs"):
        kept = PairedFolderDataset(split, skip_bad=True)
    assert [a.name for a, _ in kept.samples] == ["x0.png"]


def test_unpaired_and_inpaint_loaders_check_their_files(tmp_path: Path):
    split = tmp_path / "train"
    for i in range(3):
        _png(split / "A" / f"a{i}.png", value=10 * i)
    _png(split / "B" / "b0.png"), _png(split / "B" / "b1.png", (40, 40))
    (split / "B" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match=r"B/broken.jpg: not a readable image"):
        UnpairedFolderDataset(split)
    with pytest.warns(UserWarning, match="skipped 1 of 6 images"):
        data = UnpairedFolderDataset(split, train=True, skip_bad=True)
    assert len(data) == 3 and not data.paired  # |A| items, B drawn independently

    (split / "B" / "broken.jpg").unlink()
    _png(split / "masks" / "b0.png", value=255)
    with pytest.raises(DataError, match=r"B/b1.png: no mask named b1"):
        InpaintDataset(split, masks="masks")
    _png(split / "masks" / "b1.png", (20, 20))
    with pytest.raises(DataError, match=r"masks/b1.png: 20x20 but its image .*b1.png is 40x40"):
        InpaintDataset(split, masks="masks")
    crops = TranslationDataModule(root=str(tmp_path), mode="unpaired", crop=16, val_split="train", skip_bad=True)
    crops.setup("fit")
    item = crops.train_set[0]
    assert item["A"].shape == item["B"].shape == (3, 16, 16)  # 32 and 40 px images: equal crops for CycleGAN
    with pytest.raises(DataError, match="data.mode='unpaired' does not fit model.mode='inpaint'"):
        _trainer(tmp_path).fit(TranslationTask(mode="inpaint", **TINY), crops)

    item = InpaintDataset(split)[0]  # random holes: a function of the index outside training
    assert item["mask"].shape == (1, 32, 32) and 0 < float(item["mask"].mean()) < 1
    torch.testing.assert_close(item["A"], item["B"] * (1 - item["mask"]))
    torch.testing.assert_close(InpaintDataset(split)[0]["mask"], item["mask"])


def test_pix2pix_fit_updates_both_networks_and_logs_metrics(tmp_path: Path, dehaze_root: Path):
    torch.manual_seed(0)
    task = TranslationTask(**TINY)
    before = {n: p.detach().clone() for n, p in task.named_parameters()}
    trainer = _trainer(tmp_path, enable_checkpointing=False)
    trainer.fit(task, TranslationDataModule(root=str(dehaze_root), batch_size=2))
    changed = {n.split(".")[0] for n, p in task.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"generator", "discriminator"}
    metrics = trainer.callback_metrics
    for key in ("train/d_real_step", "train/d_fake_step", "train/loss/generator/adversarial_step",
                "train/loss/generator/l1", "train/loss/discriminator_step", "val/psnr", "val/ssim", "val/psnr_input",
                "val/ssim_input", "val/psnr_gain"):
        assert torch.isfinite(metrics[key]), key
    assert 0 < float(metrics["val/psnr_input"]) < 40 and -1 <= float(metrics["val/ssim"]) <= 1
    assert (tmp_path / "predictions" / "epoch_000.png").is_file()


class Interrupt(L.Callback):
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated interruption")


def _cycle_fit(root: Path, data: Path, initial: dict | None, interrupt: bool = False, ckpt: str | None = None):
    task = TranslationTask(**CYCLE)
    if initial is not None:
        task.load_state_dict(initial)
    callbacks = [ModelCheckpoint(dirpath=root / "checkpoints", save_last=True), StepSeed(3), ResumeDataPosition()]
    trainer = _trainer(root, 2, callbacks=[*callbacks, Interrupt()] if interrupt else callbacks,
                       limit_val_batches=1)
    datamodule = TranslationDataModule(root=str(data), mode="unpaired", batch_size=2)
    if interrupt:
        with pytest.raises(RuntimeError, match="simulated interruption"):
            trainer.fit(task, datamodule)
    else:
        trainer.fit(task, datamodule, ckpt_path=ckpt)
    return task, trainer


def test_cyclegan_updates_all_four_networks_and_resumes_exactly_with_its_pools(tmp_path: Path, dehaze_root: Path):
    torch.manual_seed(0)
    initial = TranslationTask(**CYCLE).state_dict()
    reference, trainer = _cycle_fit(tmp_path / "ref", dehaze_root, initial)
    state = reference.state_dict()
    for net in ("generator", "generator_ba", "discriminator", "discriminator_a"):
        weights = [k for k in state if k.startswith(f"{net}.") and k.endswith("weight")]
        assert weights and all(not torch.equal(state[k], initial[k]) for k in weights), net
    assert int(state["pool_b.count"]) == 3 and state["pool_a.images"].shape == (3, 3, 32, 32)  # full: swaps ran
    metrics = trainer.callback_metrics
    for key in ("train/loss/cycle", "train/loss/identity", "train/loss/generator", "train/d_real_a_step",
                "train/d_fake_step", "val/psnr_cycle", "val/psnr"):
        assert torch.isfinite(metrics[key]), key

    _cycle_fit(tmp_path / "run", dehaze_root, initial, interrupt=True)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    resumed, _ = _cycle_fit(tmp_path / "run", dehaze_root, None, ckpt=str(last))
    for name, value in resumed.state_dict().items():
        torch.testing.assert_close(value, state[name], msg=name)


def test_image_pool_follows_the_original_query_rule():
    pool = ImagePool(2)
    first = torch.arange(2.0).view(2, 1, 1, 1)
    torch.testing.assert_close(pool.query(first), first)  # filling: returned as given, stored
    torch.manual_seed(0)
    draws = torch.rand(()), torch.randint(2, ())
    torch.manual_seed(0)
    out = pool.query(torch.full((1, 1, 1, 1), 7.0))
    if float(draws[0]) > 0.5:  # swapped: a stored image comes back and 7 takes its place
        assert float(out) == float(first[int(draws[1])]) and 7.0 in pool.images
    else:
        assert float(out) == 7.0 and 7.0 not in pool.images
    assert ImagePool(0).query(first) is first


def test_inpainting_sees_the_mask_and_logs_hole_and_valid_l1_apart():
    task = TranslationTask(mode="inpaint", **TINY)
    assert task.generator.model.model[0].in_channels == 4  # masked RGB + hole mask
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    hole = torch.zeros(2, 1, 32, 32)
    hole[..., 8:16, 8:24] = 1
    batch = {"A": image * (1 - hole), "B": image, "mask": hole}
    fake = task.generator(task.generator_input(batch))
    terms = task.evaluate("generator", fake, image, fake_logits=torch.zeros(2, 1, 2, 2), fake_hole=fake * hole,
                          target_hole=image * hole, fake_valid=fake * (1 - hole), target_valid=image * (1 - hole)).terms
    diff = (fake - image).abs()
    torch.testing.assert_close(terms["l1"], (diff * hole).mean())  # Liu et al.: ||M (out - gt)||_1 / N
    torch.testing.assert_close(terms["l1_2"], (diff * (1 - hole)).mean())
    assert task.loss_slots["generator"].weights == [1.0, 600.0, 100.0]
    out = task.translate(batch)  # the valid pixels are the input's
    torch.testing.assert_close(out * (1 - hole), image * (1 - hole))


def test_predict_writes_translated_images_at_their_size(tmp_path: Path, dehaze_root: Path):
    folder = tmp_path / "unlabelled"
    _png(folder / "small.png", (24, 40)), _png(folder / "wide.jpg", (70, 33))
    (folder / "notes.txt").write_text("not an image")
    task = TranslationTask(**TINY)
    trainer = _trainer(tmp_path / "run")
    trainer.predict(task, TranslationDataModule(root=str(dehaze_root), predict_dir=str(folder)),
                    return_predictions=False)
    out = tmp_path / "run" / "predictions" / "unlabelled"
    assert sorted(p.name for p in out.iterdir()) == ["small.png", "wide.png"]
    assert Image.open(out / "wide.png").size == (70, 33) and Image.open(out / "small.png").size == (24, 40)


def test_collapse_warning_when_the_discriminator_loss_stays_near_zero():
    task = TranslationTask(**TINY)
    task._d_adversarial_max = 3e-3  # the largest D adversarial term of the epoch
    with pytest.warns(UserWarning, match="collapse"):
        task.check_collapse()
    task._d_adversarial_max = 0.4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        task.check_collapse()
    wgan = TranslationTask(loss={"generator": {"name": "adversarial", "params": {"kind": "wgan"}},
                                 "discriminator": {"name": "adversarial_d", "params": {"kind": "wgan"}}}, **TINY)
    wgan._d_adversarial_max = 0.0  # a critic's loss has no floor at 0: no collapse verdict
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wgan.check_collapse()


def test_paper_optimiser_defaults_and_one_group_set_per_network():
    task = TranslationTask(**TINY)
    g_opt, d_opt = task.configure_optimizers()[0]
    for opt in (g_opt, d_opt):
        assert isinstance(opt, torch.optim.Adam)
        assert opt.param_groups[0]["lr"] == pytest.approx(2e-4) and opt.param_groups[0]["betas"] == (0.5, 0.999)
    g_ids = {id(p) for group in g_opt.param_groups for p in group["params"]}
    assert g_ids == {id(p) for p in task.generator.parameters()}
    cycle = TranslationTask(**CYCLE)
    g_opt, d_opt = cycle.configure_optimizers()[0]
    assert {id(p) for g in g_opt.param_groups for p in g["params"]} == {
        id(p) for p in [*cycle.generator.parameters(), *cycle.generator_ba.parameters()]}
    assert {id(p) for g in d_opt.param_groups for p in g["params"]} == {
        id(p) for p in [*cycle.discriminator.parameters(), *cycle.discriminator_a.parameters()]}
    assert cycle.loss_slots["cycle"].weights == [10.0] and cycle.loss_slots["identity"].weights == [5.0]
    assert cycle.adversarial_kind == "lsgan" and "identity" not in TranslationTask(
        loss={"identity": None}, **CYCLE).loss_slots


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
    ("model", "loss", "message"),
    [
        ({}, {"generator": {"name": "adversarial", "params": {"kind": "lsgan"}}}, r"must be the same objective"),
        ({}, {"discriminator": "l1"}, r"'mae' is a regression loss|'l1' is a regression loss"),
        ({}, {"cycle": "cycle_consistency"}, r"loss.cycle: only model.mode=cyclegan"),
        ({"mode": "cyclegan"}, {"generator": "adversarial + l1", "discriminator": "adversarial_d"},
         r"loss.generator: term 'l1' .* no paired target"),
        ({"mode": "unet"}, {}, r"model.mode: expected one of pix2pix, cyclegan, inpaint"),
        ({}, {"generator": {"name": "ssim", "params": {"value_range": [0, 1]}}}, None),
    ],
)
def test_config_errors_name_the_slot(model, loss, message):
    if message is None:  # a user-set value_range wins over the injected one
        task = TranslationTask(loss=loss, **TINY)
        assert task.loss_slots["generator"].terms[0].low == 0.0
        return
    with pytest.raises(losses.LossConfigError, match=message):
        TranslationTask(loss=loss, **{**TINY, **model})
