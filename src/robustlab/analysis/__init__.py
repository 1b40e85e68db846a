"""Analyses of a trained model: attention studies, embeddings, loss landscapes, attention over an
attack's iterations, the error surface under one-step perturbations, transfer between models.
Each is a function returning numbers (and arrays to plot); `plots` draws
them and `robustlab explain` writes them into a report."""

from robustlab.analysis.attention_study import (
    attention_grid,
    attention_trace,
    foreground,
    object_iou_study,
    shift_iou_study,
)
from robustlab.analysis.embeddings import embedding_study, embeddings, label_transitions, tsne
from robustlab.analysis.error_surface import (
    eps_grid,
    gradient_correlation,
    label_leaking,
    pearson,
    softmax_arguments,
)
from robustlab.analysis.landscape import loss_landscape
from robustlab.analysis.transfer import transfer_matrix

__all__ = ["attention_grid", "attention_trace", "embedding_study", "embeddings", "eps_grid", "foreground",
           "gradient_correlation", "label_leaking", "label_transitions", "loss_landscape",
           "object_iou_study", "pearson", "shift_iou_study", "softmax_arguments", "transfer_matrix", "tsne"]
