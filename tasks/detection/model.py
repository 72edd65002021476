"""torchvision FCOS / RetinaNet whose head losses come from registry slots.

Only the heads' ``compute_loss`` is replaced; anchors, matching (FCOS centre sampling and
scale ranges, RetinaNet's IoU matcher), box coding and post-processing are torchvision's.
Each override is torchvision's own code, but instead of calling its losses it returns what
each slot is to be evaluated on (:class:`SlotInputs`), and the task evaluates the slots, with
torchvision's normalisation:

- FCOS: every slot summed over the batch and divided by ``max(1, #foreground anchors)``;
- RetinaNet: per image, summed and divided by that image's ``max(1, #foreground)``, then
  averaged over images.

Box slot inputs depend on the loss family: ``overlap`` losses get decoded boxes (M, 4) xyxy,
``regression`` losses (``smooth_l1``, ``balanced_l1``) the encoded deltas and their targets
(as torchvision's ``bbox_reg_loss_type`` does). Class logits are passed as (M, C) with one-hot
(M, C) targets; centerness as (M, 1) logits and (M, 1) soft targets.

No weights are ever downloaded: the backbone starts random (trainable BatchNorm) or from a
local ImageNet ``state_dict`` given as ``weights_path`` (then BatchNorm is frozen, as in
torchvision's detection recipes).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.detection import FCOS, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

ARCHS = ("fcos", "retinanet")
BACKBONES = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_large", "mobilenet_v3_small")
BOX_FAMILIES = ("overlap", "regression")

class SlotInputs(NamedTuple):
    """What one loss slot is evaluated on in a training step.

    One call (FCOS: the whole batch) or one per image (RetinaNet); each call's terms are divided
    by its normaliser (the foreground count) and the summed result multiplied by ``scale``.
    """

    calls: list[tuple[Tensor, Tensor]]
    normalizers: list[float]
    scale: float = 1.0


class RegistryFCOSHead(FCOSHead):
    """``FCOSHead`` whose ``compute_loss`` returns the inputs of the cls / box / centerness slots."""

    box_family: str = "overlap"

    def compute_loss(self, targets: list[dict[str, Tensor]], head_outputs: dict[str, Tensor],
                     anchors: list[Tensor], matched_idxs: list[Tensor]) -> dict[str, SlotInputs]:
        cls_logits = head_outputs["cls_logits"]  # [N, HWA, C]
        bbox_regression = head_outputs["bbox_regression"]  # [N, HWA, 4]
        bbox_ctrness = head_outputs["bbox_ctrness"]  # [N, HWA, 1]

        all_gt_classes_targets, all_gt_boxes_targets = [], []
        for targets_per_image, matched_idxs_per_image in zip(targets, matched_idxs):
            if len(targets_per_image["labels"]) == 0:
                gt_classes_targets = targets_per_image["labels"].new_zeros((len(matched_idxs_per_image),))
                gt_boxes_targets = targets_per_image["boxes"].new_zeros((len(matched_idxs_per_image), 4))
            else:
                gt_classes_targets = targets_per_image["labels"][matched_idxs_per_image.clip(min=0)]
                gt_boxes_targets = targets_per_image["boxes"][matched_idxs_per_image.clip(min=0)]
            gt_classes_targets[matched_idxs_per_image < 0] = -1  # background
            all_gt_classes_targets.append(gt_classes_targets)
            all_gt_boxes_targets.append(gt_boxes_targets)
        all_gt_boxes_targets, all_gt_classes_targets, anchors = (
            torch.stack(all_gt_boxes_targets), torch.stack(all_gt_classes_targets), torch.stack(anchors))

        foreground = all_gt_classes_targets >= 0
        normaliser = max(1, foreground.sum().item())

        # classification: sigmoid per class over one-hot targets, all anchors
        gt_classes_targets = torch.zeros_like(cls_logits)
        gt_classes_targets[foreground, all_gt_classes_targets[foreground]] = 1.0
        num_classes = cls_logits.shape[-1]
        cls = (cls_logits.reshape(-1, num_classes), gt_classes_targets.reshape(-1, num_classes))

        # box regression on foreground anchors: decoded boxes (overlap) or encoded deltas (regression)
        bbox_reg_targets = self.box_coder.encode(anchors, all_gt_boxes_targets)
        if self.box_family == "overlap":
            pred_boxes = self.box_coder.decode(bbox_regression, anchors)
            box = (pred_boxes[foreground], all_gt_boxes_targets[foreground])
        else:
            box = (bbox_regression[foreground], bbox_reg_targets[foreground])

        # centerness of the regression targets, on foreground anchors
        if len(bbox_reg_targets) == 0:
            gt_ctrness_targets = bbox_reg_targets.new_zeros(bbox_reg_targets.size()[:-1])
        else:
            left_right = bbox_reg_targets[:, :, [0, 2]]
            top_bottom = bbox_reg_targets[:, :, [1, 3]]
            gt_ctrness_targets = torch.sqrt(
                (left_right.min(dim=-1)[0] / left_right.max(dim=-1)[0])
                * (top_bottom.min(dim=-1)[0] / top_bottom.max(dim=-1)[0])
            )
        pred_centerness = bbox_ctrness.squeeze(dim=2)
        centerness = (pred_centerness[foreground].unsqueeze(1), gt_ctrness_targets[foreground].unsqueeze(1))
        return {slot: SlotInputs([inputs], [normaliser])
                for slot, inputs in (("cls", cls), ("box", box), ("centerness", centerness))}


class RegistryRetinaNetHead(RetinaNetHead):
    """``RetinaNetHead`` whose ``compute_loss`` returns the inputs of the cls / box slots, one call per image."""

    box_family: str = "overlap"

    def compute_loss(self, targets: list[dict[str, Tensor]], head_outputs: dict[str, Tensor],
                     anchors: list[Tensor], matched_idxs: list[Tensor]) -> dict[str, SlotInputs]:
        box_coder = self.regression_head.box_coder
        ignore = self.classification_head.BETWEEN_THRESHOLDS
        scale = 1.0 / max(1, len(targets))
        cls, box = SlotInputs([], [], scale), SlotInputs([], [], scale)
        for targets_per_image, cls_logits_per_image, bbox_regression_per_image, anchors_per_image, matched in zip(
            targets, head_outputs["cls_logits"], head_outputs["bbox_regression"], anchors, matched_idxs
        ):
            foreground_idxs = torch.where(matched >= 0)[0]
            normaliser = max(1, foreground_idxs.numel())

            # classification on every anchor that is not between the matcher's thresholds
            foreground = matched >= 0
            gt_classes_target = torch.zeros_like(cls_logits_per_image)
            gt_classes_target[foreground, targets_per_image["labels"][matched[foreground]]] = 1.0
            valid = matched != ignore
            cls.calls.append((cls_logits_per_image[valid], gt_classes_target[valid]))
            cls.normalizers.append(normaliser)

            # box regression on foreground anchors
            matched_gt_boxes = targets_per_image["boxes"][matched[foreground_idxs]]
            regression = bbox_regression_per_image[foreground_idxs, :]
            anchors_fg = anchors_per_image[foreground_idxs, :]
            if self.box_family == "overlap":
                box.calls.append((box_coder.decode_single(regression, anchors_fg), matched_gt_boxes))
            else:
                box.calls.append((regression, box_coder.encode_single(matched_gt_boxes, anchors_fg)))
            box.normalizers.append(normaliser)
        return {"cls": cls, "box": box}


# --------------------------------------------------------------------------- backbones


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local ImageNet classification ``state_dict`` (torchvision key names) into ``model``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"model.weights_path: {path} does not exist. Weights are never downloaded; give the path of a saved "
            "torchvision classification state_dict for the backbone (e.g. resnet18-f37072fd.pth), or null."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    missing, _ = model.load_state_dict(state, strict=False)
    if len(missing) == len(model.state_dict()):
        raise ValueError(f"model.weights_path: {path} shares no keys with the backbone (e.g. {list(state)[:3]})")


def build_backbone(name: str, fpn_channels: int = 256, weights_path: str | None = None,
                   trainable_layers: int | None = None) -> BackboneWithFPN:
    """ResNet or MobileNetV3 + FPN with P6/P7 (5 levels for ResNets), ``out_channels = fpn_channels``.

    Random init trains every layer with ordinary BatchNorm. With ``weights_path`` BatchNorm is
    frozen and only the last ``trainable_layers`` stages train (3 by default, torchvision's choice).
    """
    if name not in BACKBONES:
        raise ValueError(f"model.backbone: {name!r} is not one of {BACKBONES}")
    pretrained = weights_path is not None
    norm = misc_nn_ops.FrozenBatchNorm2d if pretrained else None
    kwargs = {"norm_layer": norm} if norm is not None else {}
    net = torchvision.models.get_model(name, weights=None, **kwargs)
    if pretrained:
        load_backbone_weights(net, weights_path)
    trainable = (3 if pretrained else None) if trainable_layers is None else trainable_layers
    if name.startswith("resnet"):
        stages = ["layer4", "layer3", "layer2", "layer1", "conv1"]
        if trainable is not None:
            train = stages[:trainable] + (["bn1"] if trainable >= 5 else [])
            for pname, param in net.named_parameters():
                param.requires_grad_(any(pname.startswith(s) for s in train))
        return_layers = {"layer2": "0", "layer3": "1", "layer4": "2"}
        in_channels = [net.inplanes // 4, net.inplanes // 2, net.inplanes]
        body: nn.Module = net
    else:
        features = net.features
        stage_indices = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
        if trainable is not None:
            freeze_before = stage_indices[max(0, len(stage_indices) - trainable)] if trainable > 0 else len(features)
            for block in features[:freeze_before]:
                block.requires_grad_(False)
        returned = stage_indices[-3:]
        return_layers = {str(idx): str(k) for k, idx in enumerate(returned)}
        in_channels = [features[i].out_channels for i in returned]
        body = features
    return BackboneWithFPN(body, return_layers, in_channels, fpn_channels,
                           extra_blocks=LastLevelP6P7(fpn_channels, fpn_channels))


@torch.no_grad()
def feature_strides(backbone: nn.Module, probe: int = 256) -> list[int]:
    """Stride of each pyramid level, measured with one small forward pass."""
    was_training = backbone.training
    backbone.eval()
    features = backbone(torch.zeros(1, 3, probe, probe))
    backbone.train(was_training)
    return [probe // f.shape[-1] for f in features.values()]


def build_detector(
    arch: str = "fcos",
    backbone: str = "resnet18",
    num_classes: int = 3,
    min_size: int = 256,
    max_size: int = 256,
    fpn_channels: int = 256,
    weights_path: str | None = None,
    trainable_layers: int | None = None,
    score_thresh: float = 0.05,
    nms_thresh: float = 0.6,
    detections_per_img: int = 100,
    box_family: str = "overlap",
) -> FCOS | RetinaNet:
    """An FCOS or RetinaNet with a registry head; anchors follow the backbone's strides.

    FCOS: one anchor per location of size = stride (torchvision's 8..128 for ResNets).
    RetinaNet: 3 scales x 3 aspect ratios, base size 4 x stride (torchvision's 32..512), GroupNorm
    in the head (as RetinaNet v2: trains from scratch). ``box_family`` says what the box slot is
    evaluated on: decoded boxes (``overlap``) or encoded deltas (``regression``).
    """
    if arch not in ARCHS:
        raise ValueError(f"model.arch: {arch!r} is not one of {ARCHS}")
    if fpn_channels % 32 or fpn_channels < 64:
        # the heads' GroupNorm(32, C): with one channel per group a 1x1 top level (P7 of a <= 128 px
        # input) cannot be normalised for a single image
        raise ValueError(f"model.fpn_channels: must be a multiple of 32 and >= 64, got {fpn_channels}")
    body = build_backbone(backbone, fpn_channels, weights_path, trainable_layers)
    strides = feature_strides(body)
    common = {"min_size": min_size, "max_size": max_size, "score_thresh": score_thresh, "nms_thresh": nms_thresh,
              "detections_per_img": detections_per_img}
    if arch == "fcos":
        anchors = AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))
        head = RegistryFCOSHead(fpn_channels, 1, num_classes)
        head.box_family = box_family
        return FCOS(body, num_classes, anchor_generator=anchors, head=head, **common)
    sizes = tuple((4 * s, int(4 * s * 2 ** (1 / 3)), int(4 * s * 2 ** (2 / 3))) for s in strides)
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(strides))
    head = RegistryRetinaNetHead(fpn_channels, anchors.num_anchors_per_location()[0], num_classes,
                                 norm_layer=partial(nn.GroupNorm, 32))
    head.box_family = box_family
    return RetinaNet(body, num_classes, anchor_generator=anchors, head=head, **common)
