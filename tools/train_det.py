"""Train and evaluate Faster R-CNN with this package's ResNet / VGG-16 backbones (detectron2).

Toy data, on a CPU, in minutes (writes datasets/toy first):

    python tools/make_toy_data.py --out datasets/toy
    python tools/train_det.py --config configs/toy/faster_rcnn_r18_c4_voc.yaml
    python tools/train_det.py --config configs/toy/faster_rcnn_r18_c4_coco.yaml

The paper's detectors (COCO / VOC under $DETECTRON2_DATASETS, default ./datasets), starting
from the backbone file that tools/pretrain_cls.py wrote (or a torchvision checkpoint):

    python tools/train_det.py --config configs/faster_rcnn_r101_coco.yaml --num-gpus 8 \\
        MODEL.WEIGHTS output/pretrain_r101/backbone.safetensors
    # VGG-16 instead of ResNet-101: the same command with configs/faster_rcnn_vgg16_coco.yaml
    # (the two files differ in their _BASE_ line only)

Other uses:

    --resume                 continue from OUTPUT_DIR/last_checkpoint (same data order and
                             random numbers as an uninterrupted run)
    --eval-only              evaluate MODEL.WEIGHTS (or, with --resume, the last checkpoint)
    --eval-only --deploy     ... after the inference deploy step (resnet_det.modeling.
                             fast_inference: BN folded, channels_last, faster post-processing
                             and RoI pooling; detections equal up to float rounding)
    --num-gpus N             N processes on this machine (GPUs; with MODEL.DEVICE cpu, CPU
                             processes talking over gloo)
    --num-machines M --machine-rank R --dist-url tcp://HOST:PORT
                             multi-machine training, run once on each machine
    KEY VALUE ...            config overrides, e.g. SOLVER.BASE_LR 0.01 MODEL.DEVICE cpu
    --debug                  full tracebacks for expected errors too (or RESNET_DET_DEBUG=1)

Your own data (docs/custom_data.md): a VOC-layout folder with your class names,

    python tools/train_det.py --config configs/toy/faster_rcnn_r18_c4_voc.yaml \
        DATASETS.VOC_REGISTER "[['mine_trainval', 'data/mine', 'trainval', ['cat', 'dog']],
                                ['mine_test', 'data/mine', 'test', ['cat', 'dog']]]" \
        DATASETS.TRAIN "('mine_trainval',)" DATASETS.TEST "('mine_test',)" \
        MODEL.ROI_HEADS.NUM_CLASSES 2

or a COCO json with DATASETS.COCO_JSON_REGISTER "[['mine_train', 'train.json', 'images/']]".

MODEL.DEVICE defaults to cpu (with a log line) where CUDA is not available. OUTPUT_DIR
receives config.yaml, log.txt, metrics.json, TensorBoard events, model_*.pth checkpoints
(written atomically; last_checkpoint names the newest), and eval_results.json with the
final COCO (AP, AP50, AP75, APs/m/l, per class) or VOC (AP50 = VOC07 11-point for VOC2007
test, AP50_allpoints, per class) metrics. Exit status is non-zero on any failure, including
a NaN/inf loss (the message gives the iteration and every loss term). Expected errors (config,
dataset, weights) print their message alone and exit with status 2.
"""
import sys

from resnet_det.utils.cli import silence_known_warnings

silence_known_warnings()  # before detectron2's imports, which warn

from resnet_det.engine.detection import command_line  # noqa: E402

if __name__ == "__main__":
    sys.exit(command_line(doc=__doc__))
