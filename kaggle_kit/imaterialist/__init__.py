"""The two-stage iMaterialist-fashion-2019 pipeline: segment garments (stage 1), name their attributes (stage 2).

Modules: `data` (label_descriptions.json and train.csv readers with validation), `training` (both stages built from
the kernel's settings), `synth` (a synthetic dataset in exactly the competition's format), `metric` (the
competition's IoU-threshold metric, two modes), `masks` (decoding training masks), `stage1` (per-pixel multi-label
unet; `light_unet`, a decoder for CPU runs), `stage2` (attribute classifier on garment crops), `submission`
(instances and attributes streamed into the submission CSV).
"""

from kaggle_kit.imaterialist.data import Labels, parse_class_id, read_labels, read_train_csv
from kaggle_kit.imaterialist.metric import score_submission

__all__ = ["Labels", "parse_class_id", "read_labels", "read_train_csv", "score_submission"]
