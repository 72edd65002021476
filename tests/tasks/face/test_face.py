"""The face task: synthetic identities in folder format, pair readers, verification metrics, slots, a short fit."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

import losses
from tasks.datacheck import DataError
from tasks.face import FaceDataModule, FaceTask
from tasks.face.data import IdentityFolder, read_pairs
from tasks.face.metrics import kfold_accuracy, tar_at_far
from tasks.face.synthetic import generate_identities
from tasks.optim import parameter_groups

TINY = {
    "num_identities": 6, "images_per_identity": 4, "num_val_identities": 4, "val_images_per_identity": 3,
    "num_pairs": 10, "size": 16, "seed": 1,
}


@pytest.fixture(scope="module")
def face_root(tmp_path_factory) -> Path:
    return generate_identities(tmp_path_factory.mktemp("faces"), **TINY)


def _task(**kwargs) -> FaceTask:
    params = {"num_classes": 6, "embedding_size": 8, "backbone": "small_cnn", "width": 4, **kwargs}
    return FaceTask(**params)


# --------------------------------------------------------------------------- data


def test_synthetic_identities_are_written_as_folders_with_disjoint_verification_identities(face_root):
    train = IdentityFolder(face_root / "train")
    assert train.num_classes == 6 and len(train) == 24
    image, label = train[5]
    assert image.shape == (3, 16, 16) and image.dtype == torch.uint8 and label == 1
    pairs = read_pairs(face_root, "val_pairs.csv")
    assert len(pairs) == 20 and sum(s for *_, s in pairs) == 10
    val_ids = {p.parent.name for a, b, _ in pairs for p in (a, b)}
    assert val_ids.isdisjoint(train.classes)
    assert all((a.parent.name == b.parent.name) == bool(s) for a, b, s in pairs)
    marker = (face_root / "settings.json").stat().st_mtime_ns
    generate_identities(face_root, **TINY)  # same settings: nothing rewritten
    assert (face_root / "settings.json").stat().st_mtime_ns == marker


def test_views_of_one_identity_differ(face_root):
    train = IdentityFolder(face_root / "train")
    first, second = train[0][0].float(), train[1][0].float()
    assert (first - second).abs().mean() > 5  # pose, lighting and noise change every view


def _image(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)
    return path


def test_lfw_pairs_txt(tmp_path):
    for name, idx in (("Ann", 1), ("Ann", 2), ("Bob", 1)):
        _image(tmp_path / "lfw" / name / f"{name}_{idx:04d}.jpg")
    (tmp_path / "pairs.txt").write_text("1\t2\nAnn\t1\t2\nAnn\t1\tBob\t1\n")
    pairs = read_pairs(tmp_path, "pairs.txt")
    assert [(a.name, b.name, s) for a, b, s in pairs] == [("Ann_0001.jpg", "Ann_0002.jpg", 1),
                                                         ("Ann_0001.jpg", "Bob_0001.jpg", 0)]
    with pytest.raises(ValueError, match="synthetic"):
        FaceDataModule(synthetic={"identities": 3})


def test_corrupt_identity_images_and_empty_identities_raise_or_are_skipped(tmp_path):
    _image(tmp_path / "train" / "ann" / "1.png"), _image(tmp_path / "train" / "cid" / "1.png")
    (tmp_path / "train" / "ann" / "2.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "train" / "bob").mkdir()
    with pytest.raises(DataError, match=r"ann/2.png: not a readable image.*data.skip_bad"):
        IdentityFolder(tmp_path / "train")
    with pytest.warns(UserWarning, match=r"skipped 2 of 4 identity images or folders: .*2.png.*bob: empty identity"):
        train = IdentityFolder(tmp_path / "train", skip_bad=True)
    assert train.classes == ["ann", "cid"] and [label for _, label in train.samples] == [0, 1]


def test_broken_pairs_name_the_file_and_line_or_are_skipped(tmp_path):
    good, other = _image(tmp_path / "x" / "a.png"), _image(tmp_path / "x" / "b.png", 10)
    (tmp_path / "x" / "broken.png").write_bytes(b"")
    with open(tmp_path / "pairs.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path1", "path2", "same"], ["x/a.png", "x/b.png", 0], ["x/a.png", "x/gone.png", 1],
                                 ["x/broken.png", "x/a.png", 1], ["x/a.png", "x/b.png", "maybe"]])
    with pytest.raises(DataError, match=r"pairs.csv:3: .*gone.png: missing"):
        read_pairs(tmp_path, "pairs.csv")
    with pytest.warns(UserWarning, match=r"skipped 3 of 4 verification pairs: .*gone.png.*broken.png: empty.*:5"):
        assert read_pairs(tmp_path, "pairs.csv", skip_bad=True) == [(good, other, 0)]
    with pytest.raises(DataError, match="does not exist"):
        read_pairs(tmp_path, "nowhere.csv")
    (tmp_path / "pairs.txt").write_text("Ann 1\n")
    with pytest.raises(DataError, match=r"pairs.txt:1: malformed pair \['Ann', '1'\]"):
        read_pairs(tmp_path, "pairs.txt")


def test_the_datamodule_passes_skip_bad_down(face_root, tmp_path):
    import shutil

    root = tmp_path / "faces"
    shutil.copytree(face_root, root)
    victim = next((root / "train").glob("*/*.png"))
    victim.write_bytes(victim.read_bytes()[:40])  # truncated
    with pytest.raises(DataError, match=victim.name):
        FaceDataModule(root=str(root)).setup("fit")
    module = FaceDataModule(root=str(root), skip_bad=True)
    with pytest.warns(UserWarning, match="skipped 1 of 24"):
        module.setup("fit")
    assert len(module.train_set) == 23 and module.num_classes == 6


# --------------------------------------------------------------------------- metrics


def test_kfold_accuracy_chooses_the_threshold_on_the_other_folds():
    # separable except one fold whose own best threshold would differ from the others'
    scores = torch.tensor([0.9, 0.1, 0.8, 0.2, 0.45, 0.55])
    same = torch.tensor([1, 0, 1, 0, 1, 0])
    # folds of 2: the first two folds choose a threshold in (0.2, 0.8) -> 1.0 each; fold 3 is judged
    # with the threshold chosen on folds 1-2 (between 0.2 and 0.8 at the midpoint set): 0.45 < t < 0.55 fails
    value = float(kfold_accuracy(scores, same, folds=3))
    assert value < 1.0
    assert float(kfold_accuracy(torch.tensor([0.9, 0.8, 0.1, 0.2] * 5), torch.tensor([1, 1, 0, 0] * 5))) == 1.0


def test_tar_at_far_uses_the_strictest_allowed_impostor_threshold():
    genuine = torch.tensor([0.9, 0.7, 0.55, 0.3])
    impostor = torch.linspace(0.0, 0.6, 10)  # highest 0.6
    scores, same = torch.cat((genuine, impostor)), torch.cat((torch.ones(4), torch.zeros(10)))
    assert float(tar_at_far(scores, same, 1e-3)) == 0.5  # no false accept allowed: threshold 0.6
    assert float(tar_at_far(scores, same, 0.1)) == 0.75  # one false accept allowed: threshold 0.533


# --------------------------------------------------------------------------- task


def test_slots_inject_sizes_and_loss_parameters_get_their_own_groups():
    task = _task(loss={"head": "cosface", "aux": [{"name": "center", "weight": 0.01, "optim": {"lr_mult": 5.0}}]},
                 optim={"name": "sgd", "lr": 0.1})
    head = task.loss_slots["head"].terms[0]
    assert head.weight.shape == (6, 8)
    assert task.loss_slots["aux"].terms[0].centers.shape == (6, 8)
    groups = {g["name"]: g for g in parameter_groups(task.optim_specs[next(iter(task.optim_specs))],
                                                     task.optimizer_parameters(""), task.loss_slots)}
    assert groups["loss"]["params"] == [head.weight]
    assert groups["loss/aux/center"]["lr"] == pytest.approx(0.5)
    with pytest.raises(losses.LossConfigError, match="loss.head: 'triplet' is a metric loss"):
        _task(loss={"head": "triplet"})


def test_heads_that_cannot_be_sharded_name_the_switch():
    with pytest.raises(losses.LossConfigError, match="model.shard_head: false"):
        _task(loss={"head": "l_softmax"}).shard_heads()


def test_flip_summed_embeddings_are_flip_invariant_and_unit_norm():
    task = _task().eval()
    images = torch.randn(3, 3, 16, 16)
    a, norms = task.embed(images)
    b, _ = task.embed(images.flip(-1))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.norm(dim=1), torch.ones(3))
    assert norms.shape == (3,)


@pytest.mark.parametrize("head", ["adaface"])  # arcface, curricularface: same path, covered in test_angular
def test_fit_a_few_steps_and_log_verification_metrics(head, face_root, tmp_path):
    datamodule = FaceDataModule(root=str(face_root), batch_size=8)
    task = _task(loss={"head": head, "aux": "center"}, folds=4)
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        num_sanity_val_steps=0)
    trainer.fit(task, datamodule=datamodule)
    metrics = trainer.callback_metrics
    assert 0.0 <= float(metrics["val/verification_acc"]) <= 1.0
    assert {"val/tar@far1e-3", "val/embedding_norm_mean", "train/loss/head", "train/loss/aux"} <= set(metrics)
    assert 0.0 <= float(metrics["val/untrained/verification_acc"]) <= 1.0  # the baseline beside the metrics
    assert torch.isfinite(metrics["train/loss"])
    roc = tmp_path / "plots" / "roc_val.png"  # trained and untrained ROC curves
    assert roc.is_file() and roc.stat().st_size > 10_000


def test_num_classes_must_match_the_training_folder(face_root, tmp_path):
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, default_root_dir=tmp_path)
    with pytest.raises(ValueError, match="model.num_classes: 6"):
        trainer.fit(_task(num_classes=5), datamodule=FaceDataModule(root=str(face_root), batch_size=8))


def test_recipe_validates_before_data_is_read():
    from trainer.build import validate
    from trainer.config import load_config

    validate(load_config("configs/face/synthetic.yaml"))
    with pytest.raises(Exception, match="loss.head"):
        validate(load_config("configs/face/synthetic.yaml", ["loss.head=dice"]))


# --------------------------------------------------------------------------- checkpoints and DDP


class _StateAtStart(L.Callback):
    """Records the heads' weights, running statistics and optimiser moments when training (re)starts."""

    def on_train_start(self, trainer: L.Trainer, task: FaceTask) -> None:
        self.heads = {name: {k: v.detach().clone() for k, v in head.state_dict().items()}
                      for name, head in task.heads()}
        optimizer = trainer.optimizers[0]
        self.moments = {name: {k: v.clone() for k, v in optimizer.state.get(head.weight, {}).items()}
                        for name, head in task.heads()}


def _fit(task: FaceTask, root: Path, tmp_path: Path, steps: int, ckpt: str | None = None, **kwargs) -> L.Trainer:
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0,
                        limit_val_batches=1, **kwargs)
    trainer.fit(task, datamodule=FaceDataModule(root=str(root), batch_size=8), ckpt_path=ckpt)
    return trainer


def test_resume_restores_head_weights_statistics_and_moments_exactly(face_root, tmp_path):
    spec = [{"name": "curricularface", "params": {"scale": 16.0}}, {"name": "adaface", "params": {"scale": 16.0}}]
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    _fit(_task(loss={"head": spec}, optim={"name": "adamw", "lr": 1e-3}, untrained_baseline=False), face_root,
         tmp_path, 2, callbacks=[checkpoint])
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    state = saved["state_dict"]
    assert float(state["loss_slots.head.terms.0.t"]) != 0 and float(state["loss_slots.head.terms.1.batch_std"]) != 100
    probe = _StateAtStart()
    _fit(_task(loss={"head": spec}, optim={"name": "adamw", "lr": 1e-3}), face_root, tmp_path, 3,
         ckpt=str(tmp_path / "ckpt" / "last.ckpt"), callbacks=[probe])
    for name, values in probe.heads.items():
        for key, value in values.items():
            assert torch.equal(value, state[f"{name}.{key}"]), (name, key)  # t, batch_mean, batch_std, weight
    (index,) = saved["face_heads"]["loss_slots.head.terms.0.weight"]["optimizer"].values()
    moments = saved["optimizer_states"][0]["state"][index]
    assert torch.equal(probe.moments["loss_slots.head.terms.0"]["exp_avg_sq"], moments["exp_avg_sq"])


DDP_WORKER = """
import sys
from pathlib import Path
import lightning as L, torch
sys.path.insert(0, sys.argv[3])
from test_face import FaceDataModule, _StateAtStart, _task

root, out = Path(sys.argv[1]), Path(sys.argv[2])
spec = {"head": {"name": "curricularface", "params": {"scale": 16.0}}}


def fit(steps, ckpt=None, callbacks=()):
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=2, strategy="ddp", logger=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=out,
                        num_sanity_val_steps=0, limit_val_batches=1, callbacks=list(callbacks))
    task = _task(loss=spec, optim={"name": "adamw", "lr": 1e-3}, num_classes=6, untrained_baseline=False)
    trainer.fit(task, datamodule=FaceDataModule(root=str(root), batch_size=5), ckpt_path=ckpt)
    return trainer, task


checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=out / "ckpt", save_last=True)
trainer, task = fit(3, callbacks=[checkpoint])  # 12 images per rank in batches of 5, 5, 2: a short last batch
probe = _StateAtStart()
trainer, task = fit(4, ckpt=str(out / "ckpt" / "last.ckpt"), callbacks=[probe])
(name, head), = task.heads()
torch.save({"range": head.shard_range, "at_start": probe.heads[name], "moments": probe.moments[name],
            "ignored": task._ddp_params_and_buffers_to_ignore}, out / f"rank{trainer.global_rank}.pt")
"""


@pytest.mark.slow  # Lightning DDP, 2 CPU processes, two short fits: ~25 s idle
def test_ddp_shards_the_head_and_checkpoints_the_whole_matrix(face_root, tmp_path):
    import subprocess
    import sys

    (tmp_path / "worker.py").write_text(DDP_WORKER)
    done = subprocess.run([sys.executable, str(tmp_path / "worker.py"), str(face_root), str(tmp_path),
                           str(Path(__file__).parent)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    key = "loss_slots.head.terms.0.weight"
    weight = saved["state_dict"][key]
    assert weight.shape == (6, 8)  # the whole matrix, not rank 0's block
    (index,) = saved["face_heads"][key]["optimizer"].values()
    moments = saved["optimizer_states"][0]["state"][index]
    assert moments["exp_avg"].shape == (6, 8)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert [r["range"] for r in ranks] == [(0, 3), (3, 6)]
    for rank in ranks:  # resumed: each rank's block, its moments and the running t exactly as saved
        start, end = rank["range"]
        assert rank["ignored"] == [key]
        assert torch.equal(rank["at_start"]["weight"], weight[start:end])
        assert torch.equal(rank["moments"]["exp_avg"], moments["exp_avg"][start:end])
        assert torch.equal(rank["at_start"]["t"], saved["state_dict"]["loss_slots.head.terms.0.t"])
    fresh = _task(loss={"head": {"name": "curricularface", "params": {"scale": 16.0}}})
    fresh.load_state_dict(saved["state_dict"])  # a sharded run's checkpoint loads in one process


def test_predict_writes_the_evaluation_embedding_of_every_image(face_root, tmp_path):
    task = _task().eval()
    module = FaceDataModule(root=str(face_root), batch_size=4, predict_dir=str(face_root / "val"))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    out = trainer.predict(task, datamodule=module)
    assert sum(len(batch) for batch in out) == 12  # 4 held-out identities x 3 images, identity folders recursed
    with open(tmp_path / "predictions" / "val" / "embeddings.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", *(f"e{i}" for i in range(8))] and len(rows) == 13
    first = sorted((face_root / "val").rglob("*.png"))[0]
    assert rows[1][0] == first.relative_to(face_root / "val").as_posix()
    image = module.predict_set[0][0]
    expected = task.embed(image[None])[0][0]
    torch.testing.assert_close(torch.tensor([float(v) for v in rows[1][1:]]), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(DataError, match="predict_dir"):
        FaceDataModule(root=str(face_root), predict_dir=str(tmp_path / "none")).setup("predict")


def _digit_script():
    import importlib.util

    path = Path(__file__).resolve().parents[3] / "examples" / "face" / "digit_folders.py"
    spec = importlib.util.spec_from_file_location("digit_folders", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_the_digits_recipe_trains_on_the_folders_its_script_writes(tmp_path):
    from trainer.cli import main
    from trainer.plots import read_metrics

    repo = Path(__file__).resolve().parents[3]
    _digit_script().write_folders(tmp_path / "digits", per_digit=10, num_pairs=20)

    train = IdentityFolder(tmp_path / "digits" / "train")
    assert train.classes == [f"digit_{d}" for d in range(7)] and len(train) == 70
    pairs = read_pairs(tmp_path / "digits", "val_pairs.csv")
    assert len(pairs) == 40 and sum(same for *_, same in pairs) == 20
    assert {p.parent.name for a, b, _ in pairs for p in (a, b)} <= {"digit_7", "digit_8", "digit_9"}  # held out

    code = main(["fit", "-c", str(repo / "configs" / "face" / "digits.yaml"), f"data.root={tmp_path / 'digits'}",
                 f"run.root={tmp_path / 'runs'}", "trainer.max_epochs=1", "trainer.accelerator=cpu", "model.folds=4",
                 "model.width=4", "trainer.enable_progress_bar=false"])  # fmt: skip
    assert code == 0
    metrics = read_metrics(tmp_path / "runs" / "face_digits" / "version_0" / "logs")
    assert 0.0 <= metrics["val/verification_acc"][-1][1] <= 1.0


def test_the_digits_script_reads_mnist_format_idx_files_gzipped_or_not(tmp_path):
    import gzip

    images = np.random.default_rng(0).integers(0, 256, (40, 28, 28), dtype=np.uint8)
    labels = (np.arange(40) % 10).astype(np.uint8)
    header = b"\x00\x00\x08\x03" + b"".join(n.to_bytes(4, "big") for n in images.shape)  # uint8, 3 dimensions
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + images.tobytes()))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + (40).to_bytes(4, "big") + labels.tobytes())
    script = _digit_script()
    read_images, read_labels = script.load_idx(tmp_path)
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_labels, labels)

    script.write_folders(tmp_path / "out", num_pairs=4, idx=tmp_path)
    train = IdentityFolder(tmp_path / "out" / "train")
    assert train.classes == [f"class_{c}" for c in range(7)] and len(train) == 28
    stored = np.array(Image.open(tmp_path / "out" / "val" / "class_7" / "000.png"))
    np.testing.assert_array_equal(stored, images[7])  # the first image labelled 7, unchanged

    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"garbage!")
    with pytest.raises(SystemExit, match="train-labels-idx1-ubyte: not an IDX labels file"):
        script.load_idx(tmp_path)
