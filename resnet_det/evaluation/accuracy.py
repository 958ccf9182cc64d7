"""Top-1/top-5 classification error in detectron2's evaluator form, so that detectron2's
``inference_on_dataset`` and ``EvalHook`` run it as they run detection's COCO/VOC evaluators."""
from __future__ import annotations

import torch
from detectron2.evaluation import DatasetEvaluator, inference_on_dataset
from detectron2.utils import comm

from resnet_det.data.transforms import NormalizeBatch

__all__ = ["ClassificationEvaluator", "ClassScores", "autocast", "evaluate"]


def autocast(device, amp):
    """The autocast context of ``SOLVER.AMP`` ('off' | 'bf16' | 'fp16') on ``device``."""
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16, enabled=amp != "off")


class ClassScores(torch.nn.Module):
    """``model`` as an evaluation model: a loader's ``(images, labels, ...)`` batch of uint8
    (0..255) or float (0..1) images in, class probabilities out, normalised on ``device`` (by
    ``normalize``, default ImageNet's :class:`NormalizeBatch`); 5-D batches (``B x crops x C x H x
    W``, e.g. 10-crop) average the crops' softmax scores, as the paper does."""

    def __init__(self, model, *, device=None, amp="off", channels_last=False, normalize=None):
        super().__init__()
        self.model, self.amp, self.channels_last = model, amp, channels_last
        self.device = device or next(model.parameters()).device
        # Each batch is done with in-loop: NormalizeBatch may write the next one into its tensor.
        self.normalize = normalize or NormalizeBatch(reuse_output=True).to(self.device)
        self.train(model.training)  # inference_context restores this mode afterwards

    def forward(self, batch):
        images = self.normalize(batch[0].to(self.device, non_blocking=True))
        crops = images.shape[1] if images.dim() == 5 else 1
        if images.dim() == 5:
            images = images.flatten(0, 1)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.amp):
            logits = self.model(images)
        return logits.float().softmax(-1).view(-1, crops, logits.shape[-1]).mean(1)


class ClassificationEvaluator(DatasetEvaluator):
    """Top-1/top-5 error (%) of class scores against the batch labels; counts stay on the
    device until :meth:`evaluate` (no host sync per batch) and are summed over processes."""

    def __init__(self, device="cpu"):
        self._device = device

    def reset(self):
        self._counts = torch.zeros(3, dtype=torch.float64, device=self._device)  # top-1 hits, top-5 hits, images

    def process(self, inputs, outputs):
        labels = inputs[1].to(outputs.device, non_blocking=True)
        hits = outputs.topk(min(5, outputs.shape[1]), dim=1).indices == labels[:, None]
        self._counts += torch.stack([hits[:, 0].sum(), hits.any(1).sum(),
                                     torch.tensor(labels.shape[0], device=outputs.device)]).double()

    def evaluate(self):
        if comm.get_world_size() > 1:
            torch.distributed.all_reduce(self._counts)
        top1, top5, n = self._counts.tolist()
        if n == 0:
            raise ValueError("evaluation loader yielded no images")
        # Rounded so that e.g. 66.0 is not logged as 65.99999999999999.
        return {"top1_err": round(100.0 * (n - top1) / n, 6), "top5_err": round(100.0 * (n - top5) / n, 6),
                "num_images": int(n)}


def evaluate(model, loader, *, device=None, amp="off", channels_last=False, normalize=None) -> dict:
    """Top-1/top-5 error (%) of ``model`` over ``loader`` (see :class:`ClassScores`), with
    detectron2's ``inference_on_dataset``; counts are summed over processes when distributed."""
    scores = ClassScores(model, device=device, amp=amp, channels_last=channels_last, normalize=normalize)
    return inference_on_dataset(scores, loader, ClassificationEvaluator(scores.device))
