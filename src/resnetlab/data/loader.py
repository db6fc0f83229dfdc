"""Batches from a dataset held whole in memory, augmented as tensor operations on the whole batch.

No worker processes and no per-image Python: the uint8 images live on the training device as one
(N, C, H, W) tensor; a batch is an index, one gather that crops and flips every image at once, a
conversion to float with the normalisation fused in, then optional cutout, mixup or cutmix.

Every random choice of an epoch (order, crop offsets, flips, cutout squares, mixup weights, ...) is drawn
up front, each kind from a stream of its own seeded by (seed, epoch, the kind's name), so an epoch is a pure
function of those two numbers, a resumed run can start at any batch and see exactly what it would have seen,
and adding an augmentation or turning one on or off changes no other one's draws.

Under several processes (rank r of N) `batch_size` is the global batch: every rank draws the same epoch
plan, and rank r takes the r-th of N equal parts of each global batch, with the crops, flips and cutouts
drawn for those positions; the union of the ranks' batches is exactly the one-process batch. (Mixup and
CutMix pair images within each rank's part.) Evaluation gives rank r every N-th image, so that the
ranks together score each image once.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from .dataset import Dataset, centre_offsets
from .photo import PhotoDraws, colour, crop_boxes, device_constant, draw, draw_warps, erase, resized_crops
from .policy import POLICIES, apply_policy, draw_policy
from .stream import HostImages, ahead, read_whole, residency

PAD_MODES = ("zeros", "reflect")


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation; evaluation applies none. Each is off at its zero value."""

    crop_padding: int = 0  # pad by this many pixels, then crop back at a random offset (a random translate)
    pad_mode: str = "zeros"  # "zeros" (He et al. 2015, torchvision's RandomCrop) or "reflect"
    hflip: bool = False  # flip half the images left-right
    cutout: int = 0  # side of a square set to the mean at a random place (DeVries & Taylor 2017)
    mixup: float = 0.0  # Beta(alpha, alpha) mixing of image pairs and their labels (Zhang et al. 2018)
    cutmix: float = 0.0  # Beta(alpha, alpha) box pasted from a paired image (Yun et al. 2019)
    # Photos (photo.py): colour jitter spans as torchvision's ColorJitter, greyscale and erasing probabilities.
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0  # <= 0.5: a turn of up to this fraction of the colour circle
    grey: float = 0.0
    erase: float = 0.0
    crop_scale: tuple[float, ...] = ()  # (min, max) share of the area: random resized crops instead of pad-crop
    crop_ratio: tuple[float, ...] = (3 / 4, 4 / 3)  # their width / height range (the ImageNet recipe's)
    rotate: float = 0.0  # degrees either way; the four make one batch-wide affine warp (photo.py)
    shear: float = 0.0  # x-shear, degrees either way
    zoom: float = 0.0  # x and y zoom factors each in [1 - zoom, 1 + zoom]
    translate: float = 0.0  # shift of up to this share of the side, in x and in y
    policy: str = "none"  # "randaugment" or "trivialaugment": per-image operations (policy.py)

    @property
    def warp(self) -> tuple[float, float, float, float]:
        return (self.rotate, self.shear, self.zoom, self.translate)

    @property
    def jitter(self) -> tuple[float, float, float, float]:
        return (self.brightness, self.contrast, self.saturation, self.hue)

    def describe(self, flip_key: str = "data.hflip") -> str:
        """The augmentations in force, in a few words ('none' when none is), flips with the key that turns them
        off or on."""
        said = []
        if self.crop_scale:
            said.append(f"random resized crops ({self.crop_scale[0]:g}-{self.crop_scale[1]:g} of the area)")
        elif self.crop_padding:
            said.append(f"pad-crop {self.crop_padding} ({self.pad_mode})")
        said.append(f"horizontal flips ({flip_key}=false to stop)" if self.hflip else f"no flips ({flip_key})")
        named = (("cutout", self.cutout), ("mixup", self.mixup), ("cutmix", self.cutmix), ("rotate", self.rotate),
                 ("shear", self.shear), ("zoom", self.zoom), ("translate", self.translate), ("grey", self.grey),
                 ("erase", self.erase))  # fmt: skip
        said += [f"{name} {value:g}" for name, value in named if value]
        if any(self.jitter):
            said.append("colour jitter " + "/".join(f"{v:g}" for v in self.jitter))
        if self.policy != "none":
            said.append(self.policy)
        return ", ".join(said)

    def validate(self) -> None:
        values = (self.crop_padding, self.cutout, self.mixup, self.cutmix, *self.jitter, self.grey, self.erase)
        values += self.warp
        if any(v < 0 for v in values):
            raise UserError(f"augmentation values must be >= 0 (0 turns one off), got {self}")
        if self.pad_mode not in PAD_MODES:
            raise UserError(f"pad_mode={self.pad_mode!r} is unknown; use 'zeros' or 'reflect'")
        if self.hue > 0.5:
            raise UserError(f"hue={self.hue} turns colours by more than half a circle; use at most 0.5 (0.1 is usual)")
        for name in ("grey", "erase"):
            if getattr(self, name) > 1:
                raise UserError(f"{name}={getattr(self, name)} is a probability; use a value in [0, 1]")
        for name, top in (("rotate", 180), ("shear", 60), ("zoom", 0.9), ("translate", 1)):
            if getattr(self, name) > top:
                raise UserError(f"{name}={getattr(self, name)} is out of range; use 0 to {top} (0 turns it off)")
        if self.policy not in POLICIES:
            raise UserError(f"policy={self.policy!r} is unknown; use one of {', '.join(POLICIES)}")
        scale, ratio = self.crop_scale, self.crop_ratio
        if scale and not (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
            raise UserError(f"crop_scale={list(scale)} must be [min, max] with 0 < min <= max <= 1, e.g. [0.08, 1]")
        if not (len(ratio) == 2 and 0 < ratio[0] <= ratio[1]):
            raise UserError(f"crop_ratio={list(ratio)} must be [min, max] with 0 < min <= max, e.g. [0.75, 1.333]")


@dataclass
class EpochPlan:
    """Every random draw of one epoch for this rank; batch b uses rows [b * B, (b + 1) * B)."""

    order: torch.Tensor  # (n,) int64 sample indices
    offsets: torch.Tensor  # (n, 2) int64 crop offsets (dy, dx) in [0, 2 * padding]
    flips: torch.Tensor  # (n,) bool
    cutout_centres: torch.Tensor  # (n, 2) int64
    mix_lams: np.ndarray  # (batches,) mixing weight of each batch (1.0: no mixing)
    mix_kinds: np.ndarray  # (batches,) 0 none, 1 mixup, 2 cutmix
    mix_boxes: np.ndarray  # (batches, 2) cutmix box centre (cy, cx)
    photo: PhotoDraws  # colour factors, greyscale flags, erasing boxes (rows as `order`)
    crops: torch.Tensor | None  # (n, 4) random resized crop boxes (top, left, height, width), or None
    warps: torch.Tensor | None  # (n, 6) affine parameters (photo.draw_warps), or None
    policy: torch.Tensor | None  # (n, slots, 2) RandAugment / TrivialAugment operations (policy.draw_policy)

    def to(self, device: torch.device) -> EpochPlan:
        """The plan's tensors on `device`, moved once an epoch: each batch then slices its rows there. Moving each
        batch's rows instead is a copy from pageable host memory, which on a GPU waits for the whole queue."""
        moved = {
            f.name: value.to(device)
            for f in dataclasses.fields(self)
            if isinstance(value := getattr(self, f.name), (torch.Tensor, PhotoDraws))
        }
        return dataclasses.replace(self, **moved)


def stream_key(seed: int, epoch: int, name: str) -> list[int]:
    """The entropy of one kind of draw in one epoch: the run's seed, the epoch, and the draw's name."""
    return [seed, epoch, zlib.crc32(name.encode())]


def draw_stream(seed: int, epoch: int, name: str) -> torch.Generator:
    """A torch generator of its own for one kind of draw (order, crop, flip, ...) in one epoch."""
    state = np.random.SeedSequence(stream_key(seed, epoch, name)).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


class BatchLoader:
    """Iterate (images, targets) batches. Images: float (B, C, H, W) normalised; targets: int64 (B,) or,
    under mixup/cutmix, float (B, num_classes) probabilities."""

    def __init__(
        self,
        data: Dataset,
        batch_size: int,
        *,
        train: bool,
        augment: AugmentConfig | None = None,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        device: str | torch.device = "cpu",
        channels_last: bool = False,
        drop_last: bool | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_classes: int | None = None,
        stream: str = "auto",
    ) -> None:
        if batch_size < 1:
            raise UserError(f"batch_size={batch_size} must be a positive integer")
        if not 0 <= rank < world_size:
            raise UserError(f"rank={rank} must be in [0, world_size={world_size})")
        self.augment = augment if (augment is not None and train) else AugmentConfig()
        self.augment.validate()
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.drop_last = train if drop_last is None else drop_last
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.num_classes = num_classes or len(data.classes)
        # Held: (N, H, W, C) uint8 -> (N, C, H, W) uint8 on the device, once. Streamed: rows read per batch.
        self.residency = residency(data.images, self.device, stream)
        # Images are stored (N, S, S, C) and enter the network (C, H, W) = info.input_size: the same for IDX and
        # CIFAR; larger for image folders, whose evaluation takes the centre H x W and whose training crops.
        stored_h, stored_w, channels = (int(v) for v in data.images.shape[1:])
        self.stored = (stored_h, stored_w)
        self.height, self.width = data.view()
        self.images: torch.Tensor | None = None
        self.host: HostImages | None = None
        if self.residency.held:
            self.images = read_whole(data.images, data.checks).permute(0, 3, 1, 2).contiguous().to(self.device)
        else:
            self.host = HostImages(data.images, pin=self.device.type == "cuda", checks=data.checks)
        self.labels = torch.from_numpy(np.asarray(data.labels, np.int64)).to(self.device)
        mean = torch.tensor(mean if mean is not None else data.info.mean, dtype=torch.float32)
        std = torch.tensor(std if std is not None else data.info.std, dtype=torch.float32)
        if mean.numel() not in (1, channels) or std.numel() not in (1, channels):
            raise UserError(f"mean/std have {mean.numel()}/{std.numel()} values; the images have {channels} channels")
        # x_normalised = (x / 255 - mean) / std = x * scale + bias, per channel.
        self.scale = (1.0 / (255.0 * std)).expand(channels).reshape(1, -1, 1, 1).to(self.device)
        self.bias = (-mean / std).expand(channels).reshape(1, -1, 1, 1).to(self.device)
        n = len(self.labels)
        if train and batch_size % world_size:
            raise UserError(
                f"batch_size={batch_size} does not divide among {world_size} processes; batch_size is the global "
                f"batch, so use a multiple of {world_size} such as {batch_size - batch_size % world_size or world_size}"
            )
        # Training plans the whole data set and shares out each global batch; evaluation shares out the images.
        self.positions = torch.arange(n) if train else torch.arange(rank, n, world_size)
        if len(self.positions) == 0:
            raise UserError(f"the dataset has {n} images, too few for {world_size} processes")
        self.epoch_index = 0

    def __len__(self) -> int:
        full, rest = divmod(len(self.positions), self.batch_size)
        return full if (self.drop_last and full > 0) else full + (rest > 0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch_index = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(self.epoch_index)

    def plan(self, epoch: int) -> EpochPlan:
        """The random draws of `epoch` (a pure function of seed and epoch, the same on every rank). Each kind of
        draw has a stream of its own (seed, epoch, its name): adding an augmentation, or turning one on or off,
        changes no other one's draws."""
        n = len(self.labels)
        stream = partial(draw_stream, self.seed, epoch)
        order = torch.randperm(n, generator=stream("order")) if self.train else self.positions
        a, h, w = self.augment, self.height, self.width  # positions of cutout and erasing: in the network's view
        offsets = torch.randint(0, 2 * a.crop_padding + 1, (n, 2), generator=stream("crop"))[: len(order)]
        flips = (
            (torch.rand(n, generator=stream("flip")) < 0.5)[: len(order)]
            if a.hflip
            else torch.zeros(len(order), dtype=torch.bool)
        )
        at = stream("cutout")
        centres = torch.stack([torch.randint(0, h, (n,), generator=at), torch.randint(0, w, (n,), generator=at)], 1)
        rng = np.random.default_rng(np.random.SeedSequence(stream_key(self.seed, epoch, "mix")))
        batches = len(self)
        kinds = np.zeros(batches, np.int64)
        if a.mixup > 0 and a.cutmix > 0:
            kinds = rng.integers(1, 3, batches)  # half mixup, half cutmix, as timm switches
        elif a.mixup > 0 or a.cutmix > 0:
            kinds[:] = 1 if a.mixup > 0 else 2
        alphas = np.where(kinds == 1, a.mixup, a.cutmix)
        lams = np.where(kinds > 0, rng.beta(np.maximum(alphas, 1e-6), np.maximum(alphas, 1e-6)), 1.0)
        boxes = np.stack([rng.integers(0, h, batches), rng.integers(0, w, batches)], 1)
        photo = draw(n, stream("photo"), h, w, *a.jitter, a.grey, a.erase)
        photo = PhotoDraws(photo.jitter[: len(order)], photo.grey[: len(order)], photo.erase[: len(order)])
        crops = None
        if a.crop_scale:
            crops = crop_boxes(n, stream("resized_crop"), *self.stored, a.crop_scale, a.crop_ratio)[: len(order)]
        warps = draw_warps(n, stream("warp"), *a.warp)[: len(order)] if any(a.warp) else None
        policy = draw_policy(n, stream("policy"), a.policy, (h, w))[: len(order)] if a.policy != "none" else None
        return EpochPlan(order, offsets, flips, centres[: len(order)], lams, kinds, boxes, photo, crops, warps, policy)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of `epoch`, from `start_batch` on (to resume mid-epoch)."""
        plan = self.plan(epoch)
        here = plan.to(self.device)  # one copy an epoch (a no-op on the CPU)
        batches = range(start_batch, len(self))
        if self.host is None:
            for b in batches:
                yield self.make_batch(here, self.rows(plan, b), b)
            return
        host = self.host
        read = ahead(lambda b: host.gather(plan.order[self.rows(plan, b)]), batches)  # the next batch, meanwhile
        for b, pixels in zip(batches, read, strict=True):
            yield self.make_batch(here, self.rows(plan, b), b, pixels)

    def rows(self, plan: EpochPlan, b: int) -> slice:
        """The rows of the plan that batch `b` of this rank uses."""
        start, stop = b * self.batch_size, min((b + 1) * self.batch_size, len(plan.order))
        if self.train:  # this rank's part of the global batch
            span = stop - start
            start, stop = start + span * self.rank // self.world_size, start + span * (self.rank + 1) // self.world_size
        return slice(start, stop)

    def make_batch(
        self, plan: EpochPlan, rows: slice, b: int, pixels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `b`: from the images held on the device, or from `pixels`, its (B, H, W, C) rows read on the host.
        `plan` is on the device: nothing here copies from the host or reads the device back (on a GPU, the
        operations queue behind the training step); RandAugment/TrivialAugment are the exception (policy.py)."""
        idx = plan.order[rows]
        if pixels is None:
            x = self.images[idx]  # type: ignore[index]  # (B, C, H, W) uint8
        else:
            x = pixels.to(self.device, non_blocking=self.host.pin).permute(0, 3, 1, 2).contiguous()  # type: ignore[union-attr]
        y = self.labels[idx]
        a = self.augment
        top, left = centre_offsets(self.stored, (self.height, self.width))
        resampled = plan.crops is not None or plan.warps is not None
        if resampled:  # one bilinear resampling: the crop box (else the centre view), flipped and warped
            view = device_constant((top, left, self.height, self.width), x.device)  # cuda:N, not a bare cuda
            boxes = plan.crops[rows] if plan.crops is not None else view.expand(len(idx), 4)
            warps = plan.warps[rows] if plan.warps is not None else None
            x = resized_crops(x.float(), boxes, plan.flips[rows], (self.height, self.width), warps)
        else:
            x = x[:, :, top : top + self.height, left : left + self.width]  # a view; nothing when stored = seen
        if plan.crops is None and (a.crop_padding or (a.hflip and not resampled)):  # pad-crop, unless resized crops
            flips = plan.flips[rows] & (not resampled)
            x = crop_and_flip(x, plan.offsets[rows], flips, a.crop_padding, a.pad_mode)
        if plan.policy is not None:  # each image's own operations, on the 0..255 scale
            x = apply_policy(x.float(), plan.policy[rows])
        if any(a.jitter) or a.grey:  # colour works on [0, 1]; then normalise
            grey = plan.photo.grey[rows] if a.grey else None
            x = colour(x.float().div_(255.0), plan.photo.jitter[rows], grey, a.jitter)
            x = x.mul_(self.scale * 255.0).add_(self.bias)
        else:
            x = x.float().mul_(self.scale).add_(self.bias)  # to float and normalised in one pass
        if a.cutout:
            x = cutout(x, plan.cutout_centres[rows], a.cutout)
        if a.erase:
            x = erase(x, plan.photo.erase[rows])
        if plan.mix_kinds[b] if len(plan.mix_kinds) else 0:
            x, y = mix(x, y, self.num_classes, float(plan.mix_lams[b]), int(plan.mix_kinds[b]), plan.mix_boxes[b])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y


def crop_and_flip(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, padding: int, mode: str) -> torch.Tensor:
    """Pad every image by `padding`, then take each one's H x W window at its offset, mirrored where flipped.

    x (B, C, H, W); offsets (B, 2) in [0, 2 * padding]; flips (B,) bool. Two gathers, no Python loop.
    """
    bsz, c, h, w = x.shape
    if padding:
        if mode == "reflect":  # reflection padding is defined for floating point tensors only
            x = F.pad(x.float(), (padding,) * 4, mode="reflect").to(x.dtype)
        else:
            x = F.pad(x, (padding,) * 4)
    rows = offsets[:, 0:1] + torch.arange(h, device=x.device)  # (B, H) source rows
    cols = torch.arange(w, device=x.device).expand(bsz, w)
    cols = torch.where(flips[:, None], cols.flip(1), cols) + offsets[:, 1:2]  # (B, W) source columns, mirrored
    x = x.gather(2, rows[:, None, :, None].expand(bsz, c, h, x.shape[-1]))
    return x.gather(3, cols[:, None, None, :].expand(bsz, c, h, w))


def cutout(x: torch.Tensor, centres: torch.Tensor, size: int) -> torch.Tensor:
    """Zero (the mean, after normalisation) a size x size square around each centre; clipped at borders."""
    h, w = x.shape[-2:]
    r = torch.arange(h, device=x.device)[None, :, None]
    c = torch.arange(w, device=x.device)[None, None, :]
    cy, cx = centres[:, 0, None, None], centres[:, 1, None, None]
    inside = (r >= cy - size // 2) & (r < cy - size // 2 + size) & (c >= cx - size // 2) & (c < cx - size // 2 + size)
    return x.masked_fill(inside[:, None], 0.0)


def mix(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, lam: float, kind: int, box: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (kind 1) or CutMix (kind 2) of each image with its mirror in the batch (x.flip(0))."""
    target = torch.zeros(len(y), num_classes, device=y.device).scatter_(1, y[:, None], 1.0)  # one-hot, no checks
    # (F.one_hot checks the labels' range on the device and reads the answer back)
    other_x, other_t = x.flip(0), target.flip(0)
    if kind == 1:
        x = x * lam + other_x * (1.0 - lam)
    else:
        h, w = x.shape[-2:]
        cut_h, cut_w = int(h * np.sqrt(1.0 - lam)), int(w * np.sqrt(1.0 - lam))
        y0, y1 = np.clip([box[0] - cut_h // 2, box[0] + cut_h - cut_h // 2], 0, h)
        x0, x1 = np.clip([box[1] - cut_w // 2, box[1] + cut_w - cut_w // 2], 0, w)
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = other_x[:, :, y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)  # the area actually pasted
    return x, target * lam + other_t * (1.0 - lam)
