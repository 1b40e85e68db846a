"""Loss terms: one function per paper equation, each `(step, **params) -> scalar`.

A term reads what it needs from the `Step` cache (clean / adversarial / mixed outputs), so two
terms on the same adversarial batch share one attack and one forward. Registry info: `paper`
(the equation), `needs` (which Step outputs it reads; "teacher" means a teacher is built) and
`reads`: which parts of a model's outputs beyond the logits it reads ("embedding", "features";
a function of the term's parameters where they decide it), so a plain nn.Module without those
layers is refused before training (`Objective.reads`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab.attacks.losses import kl_divergence, other_max
from robustlab.attention import cam_from, channel_mean, grad_cam, mask_out, normalize
from robustlab.defenses.step import Step
from robustlab.errors import UserError
from robustlab.models import Out
from robustlab.models.modes import running_stats_frozen
from robustlab.registry import Registry

TERMS: Registry = Registry("loss term")


# ---- shared pieces -----------------------------------------------------------------------

def angular_distance(a: Tensor, b: Tensor) -> Tensor:
    """d(a, b) = 1 - |a . b| / (||a||_2 ||b||_2), row-wise (Mao et al. 2019; AGKD-BML eq. 6)."""
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
    return 1 - cos.abs()


def triplet(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float) -> Tensor:
    """Per-triplet [d(a, p) - d(a, n) + m]_+ with the angular distance (AGKD-BML eq. 6)."""
    return F.relu(angular_distance(anchor, positive) - angular_distance(anchor, negative) + margin)


# ---- classification terms ----------------------------------------------------------------

SMOOTHING_MODES = ("all", "wrong_classes")


def smoothed_ce(logits: Tensor, y: Tensor, smoothing: float = 0.0, mode: str = "all") -> Tensor:
    """CE against q = (1 - s) one_hot(y) + s u: u = 1/K on every class (Szegedy et al. 2016 Sec. 7,
    torch's `label_smoothing`), or 1/(K - 1) on the wrong classes only (mode wrong_classes: the
    AGKD-BML authors' code, where the true class keeps exactly 1 - s)."""
    if mode not in SMOOTHING_MODES:
        raise UserError(f"label_smoothing_mode={mode!r}: choose {' or '.join(SMOOTHING_MODES)}")
    if mode == "all" or smoothing == 0:
        return F.cross_entropy(logits, y, label_smoothing=smoothing)
    one_hot = F.one_hot(y, logits.shape[1]).to(logits.dtype)
    q = (1 - smoothing) * one_hot + smoothing * (1 - one_hot) / (logits.shape[1] - 1)
    return -(q * logits.log_softmax(1)).sum(1).mean()


@TERMS.register("clean_ce", paper="standard training; label smoothing: Szegedy et al. 2016 Sec. 7",
                needs=("clean",))
def clean_ce(step: Step, label_smoothing: float = 0.0, smoothing_mode: str = "all") -> Tensor:
    """Cross-entropy on clean inputs, optionally against smoothed labels (`smoothed_ce`)."""
    return smoothed_ce(step.clean.logits, step.y, label_smoothing, smoothing_mode)


@TERMS.register("adv_ce", paper="Madry et al. 2018 eq. 2.1: CE on the inner maximiser x_adv",
                needs=("adv",))
def adv_ce(step: Step, label_smoothing: float = 0.0, smoothing_mode: str = "all") -> Tensor:
    """CE(f(x_adv), y), the outer minimisation of min_theta E[max_delta L(x + delta, y)]."""
    return smoothed_ce(step.adv.logits, step.y_adv, label_smoothing, smoothing_mode)


def lambda_weighted_ce(logits: Tensor, y: Tensor, k: int, lam: float) -> Tensor:
    """(sum_{i in CLEAN} L(x_i, y_i) + lam sum_{i in ADV} L(x_i^adv, y_i)) / (n_clean + lam k),
    the first k rows being the adversarial ones (Kurakin et al. 2017 eq. 1; Cascade Sec. 3.1)."""
    per_sample = F.cross_entropy(logits, y, reduction="none")
    weight = torch.ones_like(per_sample)
    weight[:k] = lam
    return (weight * per_sample).sum() / ((len(y) - k) + lam * k)


@TERMS.register("kurakin_ce", paper="Kurakin et al. 2017 eq. 1 (the Cascade paper's Sec. 3.1 loss)",
                needs=("mixed",))
def kurakin_ce(step: Step, lam: float = 0.3) -> Tensor:
    """`lambda_weighted_ce` over one minibatch of m images whose first k are *replaced* by their
    adversarial versions: the denominator is (m - k) + lam k."""
    return lambda_weighted_ce(step.mixed.logits, step.y, step.k, lam)


@TERMS.register("unified_ce", paper="the Cascade paper (Na et al. 2018) Sec. 3.1, the total loss's "
                "first part, over Alg. 1's B'", needs=("augmented",))
def unified_ce(step: Step, lam: float = 0.3) -> Tensor:
    """`lambda_weighted_ce` over B' = the k adversarial images *added* beside the m - k clean ones
    (the whole loader batch): the denominator is (m - k) + lam k with m - k = B."""
    return lambda_weighted_ce(step.augmented.logits, step.y_augmented, step.k, lam)


PAPER_EMBEDDING_SIZE = 10  # the Cascade paper's embedding: the 10 logits of its MNIST/CIFAR-10 ResNets
EMBEDDINGS = ("logits", "embedding")


@TERMS.register("embedding_distance", paper="the Cascade paper (Na et al. 2018) Sec. 3.1-3.2: "
                "lambda2 sum_i |E_i^adv - E_i|^N, bidirectional or pivot", needs=("augmented",),
                reads=lambda on="logits", **_: ("embedding",) if on == "embedding" else ())
def embedding_distance(step: Step, power: int = 2, pivot: bool = False, on: str = "logits") -> Tensor:
    """sum over the k pairs of sum_j |E_adv,j - E_j|^N (N = 2: the squared L2 distance).

    Bidirectional (pivot False) moves both embeddings; pivot detaches the clean one, so it is a
    fixed target and only the adversarial embedding moves (Sec. 3.2). `on`: the paper's
    embedding is the softmax's argument (Fig. 1, Sec. 4.1), our `logits`; `embedding` is the
    penultimate layer. The recipe's weight is the paper's lambda2 for its 10-d embedding; for D
    dimensions the sum is scaled by 10 / D, so each dimension keeps the paper's weight.
    """
    if on not in EMBEDDINGS:
        raise UserError(f"on={on!r} is not an embedding: choose {' or '.join(EMBEDDINGS)}")
    if isinstance(power, bool) or not isinstance(power, int) or power < 1:
        raise UserError(f"power={power!r} is out of range: the exponent N is an integer >= 1")
    e = getattr(step.augmented, on)
    k = step.k
    adv, clean = e[:k], e[k: 2 * k]
    if pivot:
        clean = clean.detach()
    return (adv - clean).abs().pow(power).sum() * (PAPER_EMBEDDING_SIZE / e.shape[1])


# ---- TRADES and MART -----------------------------------------------------------------------

@TERMS.register("trades_kl", paper="TRADES, Zhang et al. 2019 eq. 5: (1/B) sum KL(f(x) || f(x_adv))",
                needs=("clean", "adv"))
def trades_kl(step: Step) -> Tensor:
    """The robust regulariser of TRADES; the recipe weights it by beta (1/lambda in the paper).
    Gradients flow through both distributions, as in the authors' code."""
    log_p = step.clean.logits[: step.k].log_softmax(1)
    return kl_divergence(log_p, step.adv.logits.log_softmax(1)).mean()


MART_MARGIN_FLOOR = 1.0001  # the authors' mart.py: -log(1.0001 - p + 1e-12)


@TERMS.register("mart_bce", paper="MART, Wang et al. 2020 (ICLR), surrogate loss of Sec. 3.3: "
                "boosted CE (BCE) on x_adv", needs=("adv",))
def mart_bce(step: Step) -> Tensor:
    """BCE(p(x'), y) = -log p_y(x') - log(1 - max_{k != y} p_k(x')): CE plus a margin term that
    pushes down the strongest wrong class. As the authors' mart.py, the margin term is
    -log(1.0001 - p + 1e-12): it is capped at 9.2 with a gradient of at most 1e4 when the wrong
    class takes all the mass (with 1 - p the cap is 27.6, the gradient 1e12)."""
    logits, y = step.adv.logits, step.y_adv
    wrong = other_max(logits.softmax(1), y)
    margin = -torch.log(MART_MARGIN_FLOOR - wrong + 1e-12)
    return (F.cross_entropy(logits, y, reduction="none") + margin).mean()


@TERMS.register("mart_kl", paper="MART, Wang et al. 2020 (ICLR), surrogate loss of Sec. 3.3: "
                "KL(p(x) || p(x')) (1 - p_y(x))", needs=("clean", "adv"))
def mart_kl(step: Step) -> Tensor:
    """The misclassification-aware regulariser: the KL term weighs most on images the model
    gets wrong (small clean p_y(x)); the recipe weights it by beta."""
    log_p = step.clean.logits[: step.k].log_softmax(1)
    p_true = log_p.exp().gather(1, step.y_adv[:, None]).squeeze(1)
    # 1.0000001 - p, as the authors' mart.py: an image the model is certain of keeps a tiny weight
    return (kl_divergence(log_p, step.adv.logits.log_softmax(1)) * (1.0000001 - p_true)).mean()


# ---- pairing and metric learning -----------------------------------------------------------

@TERMS.register("logit_pairing",
                paper="ALP, Kannan et al. 2018 Sec. 3: L2 loss between f(x) and f(x_adv); "
                      "ATAT eq. 6 with squared=false", needs=("clean", "adv"))
def logit_pairing(step: Step, squared: bool = True) -> Tensor:
    """(1/B) sum ||z(x) - z(x_adv)||_2^2 on the logits (Kannan et al.), or the plain norm
    ||z(x) - z(x_adv)||_2 (ATAT eq. 6, L_lp)."""
    diff = step.clean.logits[: step.k] - step.adv.logits
    return diff.pow(2).sum(1).mean() if squared else diff.norm(dim=1).mean()


def hard_negatives(step: Step) -> Tensor:
    """For each adversarial anchor, the clean embedding of another class nearest to it in
    angular distance (Mao et al. 2019's hard negative mining); [k] indices into the batch, -1
    where the batch holds no other class."""
    def compute() -> Tensor:
        anchors, clean = step.adv.embedding.detach(), step.clean.embedding.detach()
        a = F.normalize(anchors, dim=1)
        c = F.normalize(clean, dim=1)
        dist = 1 - (a @ c.T).abs()
        dist = dist.masked_fill(step.y_adv[:, None] == step.y[None, :], float("inf"))
        best = dist.argmin(1)
        return torch.where(torch.isinf(dist.min(1).values), torch.full_like(best, -1), best)

    return step.memo("hard_negatives", compute)


def _sml_triplets(step: Step) -> tuple[Tensor, Tensor, Tensor]:
    """(anchor, positive, negative) embeddings of the anchors that have a negative."""
    negative = hard_negatives(step)
    keep = (negative >= 0).nonzero().flatten()
    # index_select, not advanced indexing: a hard negative serves several anchors, and the
    # backward of `e[idx]` with repeated rows is index_put_(accumulate=True), whose parallel CPU
    # kernel adds in a run-dependent order once e has >= 32,768 elements (128 x 256 here), so
    # two identical runs drifted apart; index_select's backward (index_add_) is serial.
    anchor = step.adv.embedding.index_select(0, keep)
    positive = step.clean.embedding[: step.k].index_select(0, keep)
    return anchor, positive, step.clean.embedding.index_select(0, negative.index_select(0, keep))


def _bml_triplets(step: Step) -> tuple[Tensor, Tensor, Tensor]:
    """AGKD-BML eq. 7: anchor E(x^s_{y_mc}) (forward example), positive E(x^s) (clean),
    negative E(x^{y_mc}_s) (the partner's backward example)."""
    return step.adv.embedding, step.clean.embedding[: step.k], step.partner_adv.embedding


def _triplet_loss(triplets: tuple[Tensor, Tensor, Tensor], margin: float) -> Tensor:
    anchor, positive, negative = triplets
    if len(anchor) == 0:
        return anchor.sum() * 0  # keeps the graph: no triplet in a one-class batch
    return triplet(anchor, positive, negative, margin).mean()


def _norm_loss(triplets: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    anchor, positive, negative = triplets
    if len(anchor) == 0:
        return anchor.sum() * 0
    return (anchor.norm(dim=1) + positive.norm(dim=1) + negative.norm(dim=1)).mean()


@TERMS.register("sml_triplet", paper="SML / TLA, Mao et al. 2019: angular triplet loss, adversarial "
                "anchor, clean positive, hard negative (AGKD-BML eq. 6)",
                needs=("clean", "adv"), reads=("embedding",))
def sml_triplet(step: Step, margin: float = 0.03) -> Tensor:
    """mean [d(E(x_adv), E(x)) - d(E(x_adv), E(x_neg)) + m]_+ over the batch."""
    return _triplet_loss(_sml_triplets(step), margin)


@TERMS.register("embedding_norm", paper="Mao et al. 2019 / AGKD-BML eq. 7: L_norm = ||E(x_a)|| + "
                "||E(x_p)|| + ||E(x_n)|| of the triplets",
                needs=("clean", "adv"), reads=("embedding",))
def embedding_norm(step: Step) -> Tensor:
    """Keeps the embeddings from growing to satisfy the angular margin; mean over triplets."""
    return _norm_loss(_sml_triplets(step))


@TERMS.register("bml_triplet", paper="AGKD-BML eq. 6-7: L_tr(x^s_{y_mc}, x^s, x^{y_mc}_s), forward "
                "example as anchor, its clean image as positive, the partner's backward example "
                "as negative",
                needs=("clean", "adv", "partner"), reads=("embedding",))
def bml_triplet(step: Step, margin: float = 0.03) -> Tensor:
    """mean [d(E(x^s_mc), E(x^s)) - d(E(x^s_mc), E(x^mc_s)) + m]_+ with the angular distance."""
    return _triplet_loss(_bml_triplets(step), margin)


@TERMS.register("bml_norm", paper="AGKD-BML eq. 7: L_norm = ||E(x^s_{y_mc})|| + ||E(x^s)|| + "
                "||E(x^{y_mc}_s)||",
                needs=("clean", "adv", "partner"), reads=("embedding",))
def bml_norm(step: Step) -> Tensor:
    """The embedding-norm regulariser over the bidirectional triplets; mean over the batch."""
    return _norm_loss(_bml_triplets(step))


# ---- attention distillation ---------------------------------------------------------------

def _resized(teacher: Tensor, student: Tensor) -> Tensor:
    """The teacher's maps at the student's map size (a teacher of another architecture)."""
    if teacher.shape[1:] == student.shape[1:]:
        return teacher
    return F.interpolate(teacher[:, None], size=student.shape[1:], mode="bilinear", align_corners=False)[:, 0]


def attention_distance(teacher_features: Tensor, student_features: Tensor, how: str = "none") -> Tensor:
    """D(A(F_t), A(F_s)) = mean over images and cells of |A_t - A_s| (AGKD-BML eq. 4, D = L1),
    A the channel mean. A teacher map of another size is resized to the student's."""
    student = channel_mean(student_features)
    teacher = _resized(channel_mean(teacher_features), student)
    return (normalize(teacher, how) - normalize(student, how)).abs().mean()


@TERMS.register("attention_kd", paper="AGKD-BML eq. 4 and 8: L1 between the teacher's channel-mean "
                "attention on the clean image and the student's on its adversarial example, "
                "for the forward and (with a pairing adversary) the backward pair",
                needs=("teacher", "adv", "partner"), reads=("features",))
def attention_kd(step: Step, normalization: str = "none") -> Tensor:
    """L_AGKD = L_KD(x^s, x^s_mc) + L_KD(x^mc, x^mc_s); the backward pair only when the
    adversary made partners (bidirectional), so the term also distills under plain PGD."""
    loss = attention_distance(step.teacher_clean.features[: step.k], step.adv.features, normalization)
    if step.has_pairs:
        loss = loss + attention_distance(step.teacher_partner.features, step.partner_adv.features,
                                         normalization)
    return loss


# ---- Grad-CAM attention: ATAT and AAD ------------------------------------------------------------

def student_cam(step: Step, which: str) -> Tensor:
    """Grad-CAM of the training model for the true labels on the clean (all B) or adversarial
    (k) images, from the step's cached outputs and differentiable w.r.t. the parameters (double
    backward); computed once per batch."""
    def compute() -> Tensor:
        out, rows = step.forward_rows(which)
        return cam_from(out.features, out.logits, step.y_adv if which == "adv" else step.y,
                        create_graph=True, rows=rows)

    return step.memo(f"cam_{which}", compute)


def _layer_cams(step: Step, layer: str | None) -> tuple[Tensor, Tensor, Tensor]:
    """(teacher on x, student on x_adv, student on x) Grad-CAMs of the true class at `layer`."""
    if layer is None:
        return step.teacher_cam, student_cam(step, "adv"), student_cam(step, "clean")[: step.k]
    teacher = getattr(step.teacher, "model", step.teacher)
    x, y = step.x[: step.k], step.y_adv

    def compute() -> tuple[Tensor, Tensor, Tensor]:
        return (grad_cam(teacher, x, y, layer=layer),
                grad_cam(step.model, step.x_adv, y, layer=layer, create_graph=True),
                grad_cam(step.model, x, y, layer=layer, create_graph=True))

    return step.memo(f"cams_{layer}", compute)


@TERMS.register("attention_transfer", paper="ATAT eq. 5: sum_l ||v(ATT_T(x)) - v(ATT_S(x_adv))||_p + "
                "||v(ATT_T(x)) - v(ATT_S(x))||_p, Grad-CAM of the true class at the top conv layer",
                needs=("teacher", "clean", "adv"), reads=("features",))
def attention_transfer(step: Step, p: float = 2.0, layers: list | None = None) -> Tensor:
    """The teacher's Grad-CAM on the clean image guides the student's on both the adversarial
    and the clean image; mean over the batch of the p-norms (p = 2 in ATAT).

    `layers`: module names to sum over (eq. 5's J); None is the top conv layer, the paper's
    choice, read from the step's outputs. A named layer costs one more student forward per
    image set (its Grad-CAM needs that layer's activations), outside DDP's forward: use it in
    single-process training.
    """
    pairs = [_layer_cams(step, layer) for layer in layers or [None]]
    loss = 0
    for teacher, adv, clean in pairs:
        teacher = _resized(teacher, adv).flatten(1)
        loss = loss + ((teacher - adv.flatten(1)).norm(p=p, dim=1).mean()
                       + (teacher - clean.flatten(1)).norm(p=p, dim=1).mean())
    return loss


def _masked_outputs(step: Step, kappa: float | None) -> tuple[Out, Out]:
    """Outputs on x^m and x^m_adv (AAD eq. 7), one forward of both, once per batch.

    The forward leaves BatchNorm's running statistics as they were: the masked images (about
    half their pixels zeroed) exist only for this loss term, and letting them into the eval-time
    statistics cost a Madry model 27 PGD-10 points (68.4% -> 41.2%, clean accuracy unchanged)."""
    def compute() -> tuple[Out, Out]:
        x_m = mask_out(step.x[: step.k], student_cam(step, "clean")[: step.k], kappa)
        x_adv_m = mask_out(step.x_adv, student_cam(step, "adv"), kappa)
        with running_stats_frozen(step.model):
            out = step.forward(torch.cat([x_m, x_adv_m]))
        k = step.k
        return out.rows(slice(0, k)), out.rows(slice(k, None))

    return step.memo(f"masked_{kappa}", compute)


@TERMS.register("attention_rectification", paper="AAD eq. 8: -[||f(x) - f(x^m)||_2 + ||f(x_adv) - "
                "f(x^m_adv)||_2] on softmax outputs, x^m = x * (1 - Att(x)) (eq. 7)",
                needs=("clean", "adv"), reads=("features",))
def attention_rectification(step: Step, kappa: float | None = None) -> Tensor:
    """Pushes the prediction on the image with its attention area removed away from the
    prediction on the whole image, so the area must hold all the evidence. kappa None: the
    map's mean (AAD's default)."""
    masked, masked_adv = _masked_outputs(step, kappa)
    p_clean = step.clean.logits[: step.k].softmax(1)
    return -((p_clean - masked.logits.softmax(1)).norm(dim=1).mean()
             + (step.adv.logits.softmax(1) - masked_adv.logits.softmax(1)).norm(dim=1).mean())


@TERMS.register("attention_preservation", paper="AAD eq. 9: L1(g(x), g(x_adv)), Grad-CAM of the true "
                "class on the clean and the adversarial image",
                needs=("clean", "adv"), reads=("features",))
def attention_preservation(step: Step) -> Tensor:
    """Mean over the batch of sum over cells |g(x) - g(x_adv)|."""
    clean = student_cam(step, "clean")[: step.k]
    return (clean - student_cam(step, "adv")).abs().flatten(1).sum(1).mean()


def _soft_margin(logits: Tensor, y: Tensor) -> Tensor:
    return F.multilabel_soft_margin_loss(logits, F.one_hot(y, logits.shape[1]).to(logits.dtype))


@TERMS.register("clean_soft_margin", paper="AAD eq. 10's L_c: multi-label soft-margin loss on the "
                "one-hot label, clean images", needs=("clean",))
def clean_soft_margin(step: Step) -> Tensor:
    """mean_c -[y_c log sigmoid(z_c) + (1 - y_c) log sigmoid(-z_c)] on clean inputs."""
    return _soft_margin(step.clean.logits, step.y)


@TERMS.register("adv_soft_margin", paper="AAD eq. 10's L_c on the adversarial images",
                needs=("adv",))
def adv_soft_margin(step: Step) -> Tensor:
    """The multi-label soft-margin loss on x_adv."""
    return _soft_margin(step.adv.logits, step.y_adv)


# ---- PDM: Siamese training, reduce-variance loss, reverse cross-entropy -------------------------

def _reverse_ce(logits: Tensor, y: Tensor) -> Tensor:
    """Pang et al. (2018): -sum_i R_i log softmax(-z)_i, R the reverse one-hot label (0 at y,
    1/(K-1) elsewhere). Pang et al. train softmax(z') with reverse labels and predict with the
    reversed logits -z'; here the model's own output is that reversed logit vector (z = -z'), so
    the loss reads softmax(-z) and the model's argmax is its class, with no wrapper at inference."""
    k = logits.shape[1]
    reverse = (1 - F.one_hot(y, k).to(logits.dtype)) / (k - 1)
    return -(reverse * (-logits).log_softmax(1)).sum(1).mean()


@TERMS.register("reverse_ce", paper="RCE, Pang et al. 2018 (PDM Sec. 3.3): -R^y log F(x) with the "
                "reverse one-hot label", needs=("clean",))
def reverse_ce(step: Step) -> Tensor:
    """Reverse cross-entropy on the clean batch."""
    return _reverse_ce(step.clean.logits, step.y)


@TERMS.register("siamese_ce", paper="PDM Alg. 1 line 23: the classification loss of the second "
                "Siamese sub-network, CE or (reverse=true) RCE", needs=("siamese",))
def siamese_ce(step: Step, reverse: bool = False) -> Tensor:
    """CE(F(x_siamese), y_siamese), or its reverse cross-entropy."""
    logits, y = step.siamese_out.logits, step.siamese.y
    return _reverse_ce(logits, y) if reverse else F.cross_entropy(logits, y)


@TERMS.register("siamese_cosine", paper="PDM Sec. 3.1 / Alg. 1 line 17: mean |cos(z_1, z_2) - s|, s = 1 "
                "for a same-class pair, 0 otherwise",
                needs=("clean", "siamese"), reads=("embedding",))
def siamese_cosine(step: Step) -> Tensor:
    """Pulls same-class embeddings to cosine 1 and pushes other-class ones to 0 (orthogonal)."""
    cos = F.cosine_similarity(step.clean.embedding, step.siamese_out.embedding, dim=1, eps=1e-12)
    return (cos - step.siamese.same).abs().mean()


@TERMS.register("reduce_variance", paper="PDM eq. 5 / Alg. 1 lines 18-22 (RVL): the sum over the "
                "classes in the batch of sigma_c = mean_i ||z_i^c - mu_c||_2",
                needs=("clean",), reads=("embedding",))
def reduce_variance(step: Step) -> Tensor:
    """RVL = sum_c sigma_c, sigma_c the mean distance of class c's embeddings to their batch mean.
    Alg. 1 adds each class's sigma_c with weight 1 (line 22: RVL = RVL + sigma_c)."""
    z, y = step.clean.embedding, step.y
    classes, inverse = torch.unique(y, return_inverse=True)
    counts = torch.bincount(inverse, minlength=len(classes)).to(z.dtype)
    means = torch.zeros(len(classes), z.shape[1], dtype=z.dtype, device=z.device)
    means = means.index_add(0, inverse, z) / counts[:, None]
    # index_select: `means[inverse]` repeats rows, and its backward is not deterministic on CPU
    # (see _sml_triplets).
    distance = (z - means.index_select(0, inverse)).norm(dim=1)
    sigma = torch.zeros(len(classes), dtype=z.dtype, device=z.device).index_add(0, inverse, distance)
    return (sigma / counts).sum()


@TERMS.register("distill_kl", paper="Hinton et al. 2015: KL(softmax(t / T) || softmax(s / T)) T^2 from a "
                "frozen teacher; PDM Sec. 4.4's proxy is distilled from the defended model this way",
                needs=("teacher", "clean"))
def distill_kl(step: Step, temperature: float = 1.0) -> Tensor:
    """The student matches the teacher's output distribution on the clean batch."""
    teacher = (step.teacher_clean.logits / temperature).log_softmax(1)
    student = (step.clean.logits / temperature).log_softmax(1)
    return kl_divergence(teacher, student).mean() * temperature ** 2
