"""Adversarial-input detection: the per-class KDE detector of Feinman et al. (2017) on penultimate
embeddings (PDM Sec. 4) and its metrics."""

from robustlab.detect.kde import KDEDetector
from robustlab.detect.metrics import detection_auc, detection_rate, roc

__all__ = ["KDEDetector", "detection_auc", "detection_rate", "roc"]
