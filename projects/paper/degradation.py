"""The degradation study of the paper's Figure 6 (docs/experiments.md): plain and residual nets of
several depths trained with one recipe on one in-memory dataset (no loader workers competing for
the CPU), augmented the paper's CIFAR way. Optimizer, schedule and evaluator are pretraining's; the
loop is the study's own, as it records the paper's curves rather than a trainer's checkpoints.
"""
from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from projects.paper.cifar import build_cifar_resnet
from resnet_det.checkpoint import (
    load_state_dict_checked,
    load_state_dict_file,
    read_safetensors_metadata,
    save_safetensors,
)
from resnet_det.utils.files import atomic_write
from resnet_det.utils.plotting import new_figure, save_figure

__all__ = ["DEFAULT_MODELS", "StudyData", "StudyRecipe", "parse_model_spec", "load_study_data", "augment_batch",
           "evaluate_error", "train_model", "run_degradation_study", "plot_error_curves", "load_study_model"]

# Three depths of each kind: small enough for a 2-core CPU, deep enough for plain nets to differ.
DEFAULT_MODELS = ("plain-8", "plain-14", "plain-20", "resnet-8", "resnet-14", "resnet-20")
STUDY_JSON = "curves.json"
STUDY_PNG = "degradation.png"
_SPEC = re.compile(r"^(plain|resnet)-?(\d+)$")


def parse_model_spec(spec: str) -> tuple[int, bool]:
    """``'plain-20'`` -> ``(20, True)``, ``'resnet-56'`` -> ``(56, False)``."""
    match = _SPEC.match(spec.strip().lower())
    if not match:
        raise ValueError(f"model spec {spec!r} not understood; write 'plain-DEPTH' or 'resnet-DEPTH' with "
                         f"DEPTH = 6n+2, e.g. plain-20 resnet-20")
    return int(match.group(2)), match.group(1) == "plain"


@dataclasses.dataclass
class StudyData:
    """Images as uint8 (N, 3, S, S) tensors with int64 labels, and how to normalise them."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list
    source: dict
    pixel_mean: list = None
    pixel_std: list = None

    def __post_init__(self):
        if self.pixel_mean is None:
            # Per-channel statistics of the training set; the paper subtracts the per-pixel mean,
            # per-channel mean/std is the same idea and is recorded with the weights.
            x = self.train_images.float() / 255
            self.pixel_mean = x.mean(dim=(0, 2, 3)).tolist()
            self.pixel_std = x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float network input."""
        mean = torch.tensor(self.pixel_mean).view(1, -1, 1, 1)
        std = torch.tensor(self.pixel_std).view(1, -1, 1, 1)
        return (images.float() / 255 - mean) / std


def load_study_data(data_dir=None, cifar10_dir=None, image_size: int | None = None, toy_train_per_class: int = 200,
                    toy_val_per_class: int = 50, seed: int = 0) -> StudyData:
    """The study's dataset: CIFAR-10 binary from ``cifar10_dir``, else the ImageNet-layout tree
    ``data_dir/{train,val}``, which is generated from the toy shapes first if it does not exist.
    Folder images are resized to ``image_size`` (default 16, where six toy-scale nets train in
    about ten CPU minutes); CIFAR-10 stays at 32."""
    if (data_dir is None) == (cifar10_dir is None):
        raise ValueError("give exactly one of data_dir (ImageNet layout) and cifar10_dir")
    if cifar10_dir is not None:
        from projects.paper.cifar_data import Cifar10Binary

        train, test = Cifar10Binary(cifar10_dir, train=True), Cifar10Binary(cifar10_dir, False)
        if image_size not in (None, 32):
            raise ValueError(f"CIFAR-10 images are 32x32; got image_size={image_size}")
        return StudyData(train.images, train.targets, test.images, test.targets, list(train.classes),
                         source=dict(kind="cifar10", path=str(cifar10_dir), image_size=32))
    image_size = image_size or 16
    data_dir = Path(data_dir)
    generated = not data_dir.exists()
    if generated:
        from projects.toy_data import make_classification_tree

        # Drawn at the generator's 64 px and resized on loading: the downscale's antialiasing
        # keeps shape edges that drawing directly at 16-32 px would break into pixel noise.
        make_classification_tree(str(data_dir), seed, toy_train_per_class, toy_val_per_class, 64)
    for split in ("train", "val"):
        if not (data_dir / split).is_dir():
            raise FileNotFoundError(
                f"{data_dir} has no {split}/ folder; an ImageNet-layout dataset needs "
                f"{data_dir}/train/<class>/* and {data_dir}/val/<class>/* (or pass a path that "
                f"does not exist yet to generate the toy shapes there)")
    from torchvision.transforms import v2

    from resnet_det.data.imagenet import ImageFolderDataset

    # Read by pretraining's dataset (the shared image reader), resized by PIL, held as tensors.
    resize = v2.Compose([v2.ToPILImage(), v2.Resize((image_size, image_size)), v2.PILToTensor()])
    train = ImageFolderDataset(data_dir / "train", resize, strict=True)
    test = ImageFolderDataset(data_dir / "val", resize, classes=train.classes, strict=True)
    source = dict(kind="folder", path=str(data_dir), image_size=image_size, generated=generated)
    return StudyData(*_tensors(train), *_tensors(test), train.classes, source=source)


def _tensors(dataset):
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    return images, torch.tensor([label for _, label in dataset.samples])


def augment_batch(images: torch.Tensor, generator: torch.Generator, pad: int | None = None):
    """The paper's CIFAR augmentation on a batch: zero-pad by ``pad`` (default: 1/8 of the side,
    the paper's 4 px at 32 px), random crop back, random horizontal flip."""
    n, _, h, w = images.shape
    pad = max(1, h // 8) if pad is None else pad
    padded = F.pad(images, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator).tolist()
    out = torch.stack([padded[k, :, i : i + h, j : j + w] for k, (i, j) in enumerate(offsets)])
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), out.flip(3), out)


@dataclasses.dataclass
class StudyRecipe:
    """One training recipe shared by every model of a study (the paper's CIFAR recipe, scaled).

    SGD with momentum and weight decay; ``lr`` divided by 10 at the ``lr_steps`` fractions of
    ``iterations`` (the paper: 32k and 48k of 64k, i.e. 0.5 and 0.75)."""

    iterations: int = 1200
    batch_size: int = 32
    lr: float = 0.025
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_steps: tuple = (0.5, 0.75)
    eval_period: int = 50
    augment: bool = True
    seed: int = 0


def evaluate_error(model, images, labels, normalize, batch_size: int = 256) -> float:
    """Top-1 error (fraction) of ``model`` in eval mode on uint8 ``images``, by pretraining's evaluator."""
    from resnet_det.evaluation.accuracy import evaluate

    batches = [(images[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, len(labels), batch_size)]
    return evaluate(model, batches, normalize=normalize)["top1_err"] / 100


def train_model(model, data: StudyData, recipe: StudyRecipe, log=None) -> dict:
    """Train ``model`` with ``recipe``; returns its curves: iterations, training error (mean
    minibatch error since the previous point, as the paper plots it), test error, training loss."""
    from resnet_det.engine.solver import build_lr_scheduler, build_optimizer

    # The paper decays every parameter alike.
    optimizer = build_optimizer(model, recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay,
                                weight_decay_norm=recipe.weight_decay)
    milestones = sorted({max(1, round(f * recipe.iterations)) for f in recipe.lr_steps})
    scheduler = build_lr_scheduler(optimizer, recipe.iterations, schedule="step", steps=milestones, gamma=0.1)
    # The same generator seed for every model: all see the same batches in the same order.
    gen = torch.Generator().manual_seed(recipe.seed)
    n = len(data.train_labels)
    batch_size = min(recipe.batch_size, n)
    order, cursor = torch.randperm(n, generator=gen), 0
    curves = dict(iteration=[], train_error=[], test_error=[], train_loss=[], lr=[])
    wrong = seen = steps = 0
    loss_sum = 0.0
    start = time.perf_counter()
    model.train()
    for it in range(1, recipe.iterations + 1):
        if cursor + batch_size > n:
            order, cursor = torch.randperm(n, generator=gen), 0
        idx = order[cursor : cursor + batch_size]
        cursor += batch_size
        images, labels = data.train_images[idx], data.train_labels[idx]
        if recipe.augment:
            images = augment_batch(images, gen)
        logits = model(data.normalize(images))
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        wrong += (logits.detach().argmax(1) != labels).sum().item()
        seen += len(labels)
        loss_sum += loss.item()
        steps += 1
        if it % recipe.eval_period == 0 or it == recipe.iterations:
            test_error = evaluate_error(model, data.test_images, data.test_labels, data.normalize)
            for key, value in dict(iteration=it, train_error=wrong / seen, test_error=test_error,
                                   train_loss=loss_sum / steps, lr=lr).items():
                curves[key].append(value)
            if log:
                log(f"  iter {it:5d}  loss {loss_sum / steps:.3f}  train err {100 * wrong / seen:5.1f}%  test err "
                    f"{100 * test_error:5.1f}%  lr {lr:g}  {time.perf_counter() - start:.0f}s")
            wrong = seen = steps = 0
            loss_sum = 0.0
    curves["seconds"] = time.perf_counter() - start
    return curves


def run_degradation_study(models, data: StudyData, out_dir, recipe: StudyRecipe | None = None, log=print) -> dict:
    """Train each model spec (``'plain-20'``, ``'resnet-20'``, ...) with one recipe on ``data``;
    writes ``<name>.safetensors`` per model, ``curves.json`` and ``degradation.png`` in
    ``out_dir`` and returns the json's content."""
    recipe = recipe or StudyRecipe()
    log = log or (lambda message: None)
    specs = [(spec, *parse_model_spec(spec)) for spec in models]
    for _spec, depth, plain in specs:
        build_cifar_resnet(depth, plain=plain)  # a bad depth fails now, not after hours
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = dict(recipe=dataclasses.asdict(recipe), data=dict(
        data.source, classes=list(data.classes), num_train=len(data.train_labels), num_test=len(data.test_labels),
        pixel_mean=data.pixel_mean, pixel_std=data.pixel_std), models={})
    for _spec, depth, plain in specs:
        name = f"{'plain' if plain else 'resnet'}-{depth}"
        log(f"{name}: training {recipe.iterations} iterations")
        # Same initial weights for a given spec regardless of which models precede it.
        torch.manual_seed(recipe.seed)
        model = build_cifar_resnet(depth, plain=plain, num_classes=len(data.classes))
        curves = train_model(model, data, recipe, log=log)
        weights = save_safetensors(model.state_dict(), out_dir / f"{name}.safetensors",
                                   metadata=dict(arch=model.arch, pixel_mean=data.pixel_mean, pixel_std=data.pixel_std,
                                                 classes=list(data.classes), iterations=recipe.iterations))
        result["models"][name] = dict(depth=depth, plain=plain, weights=weights.name, **curves)
        with atomic_write(out_dir / STUDY_JSON, mode="w") as f:  # partial results survive an interrupted run
            json.dump(result, f, indent=1)
    plot_error_curves(result, out_dir / STUDY_PNG)
    return result


def plot_error_curves(result: dict, path, title: str | None = None) -> Path:
    """Figure 6 style: training error (thin) and test error (bold) vs iterations, plain nets on
    the left, ResNets on the right, one colour per depth."""
    from matplotlib import colormaps

    models = result["models"]
    colors = dict(zip(sorted({m["depth"] for m in models.values()}), colormaps["tab10"].colors))
    kinds = [k for k in (True, False) if any(m["plain"] == k for m in models.values())]
    fig = new_figure((6 * len(kinds), 4.5))
    ymax = max([max(m["train_error"] + m["test_error"], default=0) for m in models.values()] + [0.05])
    for ax, plain in zip(fig.subplots(1, len(kinds), squeeze=False)[0], kinds):
        for name, m in models.items():
            if m["plain"] == plain:
                c, x = colors[m["depth"]], m["iteration"]
                ax.plot(x, [100 * e for e in m["train_error"]], color=c, lw=0.9, ls="--")
                ax.plot(x, [100 * e for e in m["test_error"]], color=c, lw=2.4, label=name)
        ax.set_title("plain networks" if plain else "ResNets")
        ax.set_xlabel("iteration")
        ax.set_ylabel("error (%)")
        ax.set_ylim(0, min(100, 100 * ymax * 1.05))
        ax.grid(alpha=0.3)
        ax.legend(title="bold: test, thin dashed: train", fontsize=8, title_fontsize=8)
    data = result.get("data", {})
    fig.suptitle(title or f"{data.get('kind', '')} {data.get('path', '')}: {data.get('num_train', '?')} train / "
                 f"{data.get('num_test', '?')} test images, {result['recipe']['iterations']} iterations", fontsize=9)
    return save_figure(fig, path)


def load_study_model(path):
    """``(model in eval mode, metadata)`` from a ``<name>.safetensors`` written by the study."""
    meta = read_safetensors_metadata(path)
    if not meta or meta.get("arch", {}).get("name") != "cifar_resnet":
        raise ValueError(f"{path}: no CIFAR-ResNet architecture record in its metadata; expected a weights "
                         f"file written by tools/degradation_study.py")
    arch = dict(meta["arch"])
    arch.pop("name")
    model = build_cifar_resnet(arch.pop("depth"), **arch)
    load_state_dict_checked(model, load_state_dict_file(path), source=str(path))
    return model.eval(), meta
