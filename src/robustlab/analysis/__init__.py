"""Analyses of a trained model: attention studies, embeddings, loss landscapes, attention over an
attack's iterations. Each is a function returning numbers (and arrays to plot); `plots` draws
them and `robustlab explain` writes them into a report."""

from robustlab.analysis.attention_study import (
    attention_grid,
    attention_trace,
    foreground,
    object_iou_study,
    shift_iou_study,
)
from robustlab.analysis.embeddings import embedding_study, embeddings, label_transitions, tsne
from robustlab.analysis.landscape import loss_landscape

__all__ = ["attention_grid", "attention_trace", "embedding_study", "embeddings", "foreground",
           "label_transitions", "loss_landscape", "object_iou_study", "shift_iou_study", "tsne"]
