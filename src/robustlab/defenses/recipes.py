"""Recipes: how a defense makes its adversarial inputs + which terms with which weights.

Every recipe is a function of eps (the training L-inf budget, in [0, 1] units) and the paper's
hyperparameters; `build_objective` checks the options, builds the recipe, and applies extra
terms from the config, so combining papers (ALP's pairing on top of TRADES, ...) is
configuration, not a new class:

    build_objective("trades", eps=0.1, beta=6.0, terms={"logit_pairing": 0.5})
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from functools import partial
from typing import Any

from robustlab.attention import NORMALIZATIONS
from robustlab.config import fraction_or_value
from robustlab.data import check_eps
from robustlab.defenses.adversaries import (
    AttackAdversary,
    BidirectionalAdversary,
    CascadeAdversary,
    FreeAdversary,
    RandomEpsOneStep,
    check_mode,
    training_pgd,
)
from robustlab.defenses.objective import FORWARDS, Objective, check_params, make_terms
from robustlab.defenses.pairing import SiamesePairing
from robustlab.defenses.terms import SMOOTHING_MODES
from robustlab.errors import UserError, check_ranges
from robustlab.registry import Registry

RECIPES: Registry = Registry("recipe")
NO_ADVERSARY = ("standard", "rce", "siamese_rvl", "pdm", "distill")  # recipes that take no eps


def _pgd(eps: float, steps: int, step_size: float | None, attack_mode: str, **params) -> AttackAdversary:
    check_mode(attack_mode)
    return AttackAdversary(training_pgd(eps, steps, step_size, **params), attack_mode)


def _objective(name: str, spec: dict, adversary=None, **kw) -> Objective:
    return Objective(make_terms(spec), name=name, adversary=adversary, **kw)


@RECIPES.register("standard", paper="standard (non-adversarial) training",
                  adversary="none")
def standard(eps: float | None = None, label_smoothing: float = 0.0) -> Objective:
    """Plain empirical risk minimisation: the baseline every paper compares against."""
    return _objective("standard", {"clean_ce": {"weight": 1.0, "label_smoothing": label_smoothing}})


@RECIPES.register("madry", paper="Madry et al. 2018: PGD adversarial training (eq. 2.1)",
                  adversary="PGD-k with random start (k=7, step 2.5 eps / k)")
def madry(eps: float, steps: int = 7, step_size: float | None = None, attack_mode: str = "eval",
          label_smoothing: float = 0.0) -> Objective:
    return _objective("madry", {"adv_ce": {"weight": 1.0, "label_smoothing": label_smoothing}},
                      _pgd(eps, steps, step_size, attack_mode))


@RECIPES.register("trades", paper="TRADES, Zhang et al. 2019 eq. 5: CE(f(x), y) + beta KL(f(x) || f(x'))",
                  adversary="PGD-10 on the KL from a N(0, 0.001^2) start")
def trades(eps: float, beta: float = 6.0, steps: int = 10, step_size: float | None = None,
           attack_mode: str = "eval", label_smoothing: float = 0.0) -> Objective:
    adversary = _pgd(eps, steps, step_size, attack_mode, loss="kl", start_std=0.001)
    # Separate forwards of x and x_adv, as the authors' train_trades_cifar10.py.
    return _objective("trades", {"clean_ce": {"weight": 1.0, "label_smoothing": label_smoothing},
                                 "trades_kl": beta}, adversary, forward="separate")


@RECIPES.register("mart", paper="MART, Wang et al. 2020: BCE(x') + beta KL(p(x) || p(x')) (1 - p_y(x))",
                  adversary="PGD-10 on CE from a N(0, 0.001^2) start")
def mart(eps: float, beta: float = 6.0, steps: int = 10, step_size: float | None = None,
         attack_mode: str = "eval") -> Objective:
    # The authors' mart.py starts its attack at x + 0.001 N(0, 1), as TRADES does (a uniform start
    # in the ball is 0.037 from x on average at eps 0.1), and forwards x and x_adv separately.
    return _objective("mart", {"mart_bce": 1.0, "mart_kl": beta},
                      _pgd(eps, steps, step_size, attack_mode, start_std=0.001), forward="separate")


@RECIPES.register("alp", paper="ALP, Kannan et al. 2018: CE on clean + adversarial halves + "
                  "lambda ||z(x) - z(x')||^2", adversary="PGD-k with random start (k=7)")
def alp(eps: float, pairing: float = 0.5, steps: int = 7, step_size: float | None = None,
        attack_mode: str = "eval", label_smoothing: float = 0.0) -> Objective:
    ce = {"label_smoothing": label_smoothing}
    return _objective("alp", {"clean_ce": {"weight": 0.5, **ce}, "adv_ce": {"weight": 0.5, **ce},
                              "logit_pairing": pairing}, _pgd(eps, steps, step_size, attack_mode))


@RECIPES.register("sml", paper="SML / TLA, Mao et al. 2019: CE(x') + lambda1 angular triplet "
                  "(adversarial anchor, clean positive, hard negative) + lambda2 L_norm",
                  adversary="PGD-k with random start (k=7)")
def sml(eps: float, margin: float = 0.03, triplet_weight: float = 2.0, norm_weight: float = 0.001,
        steps: int = 7, step_size: float | None = None, attack_mode: str = "eval",
        label_smoothing: float = 0.0) -> Objective:
    """Weights and margin as Mao et al. (the values AGKD-BML reuses: m 0.03, 2, 0.001)."""
    return _objective("sml", {"adv_ce": {"weight": 1.0, "label_smoothing": label_smoothing},
                              "sml_triplet": {"weight": triplet_weight, "margin": margin},
                              "embedding_norm": norm_weight},
                      _pgd(eps, steps, step_size, attack_mode))


@RECIPES.register("kurakin", paper="Kurakin et al. 2017 (Cascade paper Sec. 3.1): k of m images "
                  "replaced by one-step adversarial ones, lambda-weighted CE",
                  adversary="step_ll with per-image eps ~ clipped |N(0, (eps/2)^2)| on k = m/2")
def kurakin(eps: float, lam: float = 0.3, adv_fraction: float = 0.5, attack: str = "step_ll",
            attack_mode: str = "eval") -> Objective:
    """eps is max_e, the largest training eps; lambda 0.3 and k/m = 64/128 as the Cascade paper."""
    adversary = RandomEpsOneStep(attack=attack, max_eps=eps, fraction=adv_fraction, mode=attack_mode)
    return _objective("kurakin", {"kurakin_ce": {"weight": 1.0, "lam": lam}}, adversary)


def _similarity(name: str, eps: float, pivot: bool, lam: float, lambda2: float, power: int, on: str,
                adv_fraction: float, attack: str, attack_mode: str, adversary=None) -> Objective:
    one_step = RandomEpsOneStep(attack=attack, max_eps=eps, fraction=adv_fraction, mode=attack_mode)
    return _objective(name, {"unified_ce": {"weight": 1.0, "lam": lam},
                             "embedding_distance": {"weight": lambda2, "power": power, "pivot": pivot,
                                                    "on": on}},
                      adversary or one_step)


SIMILARITY = ("the Cascade paper (Na et al. 2018) Sec. 3, Alg. 1: k one-step images *added* beside "
              "their clean originals, lambda-weighted CE + lambda2 sum |E_adv - E|^N, {which}")
SIMILARITY_ADVERSARY = "step_ll with per-image eps ~ truncated N(0, (eps/2)^2) on [0, eps], k = B"


@RECIPES.register("bidirection", paper=SIMILARITY.format(which="both embeddings move"),
                  adversary=SIMILARITY_ADVERSARY)
def bidirection(eps: float, lam: float = 0.3, lambda2: float = 1e-4, power: int = 2, on: str = "logits",
                adv_fraction: float = 1.0, attack: str = "step_ll", attack_mode: str = "eval") -> Objective:
    """Low-level similarity learning with the bidirectional distance. The loader batch is the m - k
    clean images and adv_fraction = k / (m - k): 1.0 with a batch of 64 is the paper's m = 128,
    k = 64. lambda 0.3 and lambda2 1e-4 as the paper (see `embedding_distance` for other sizes)."""
    return _similarity("bidirection", eps, False, lam, lambda2, power, on, adv_fraction, attack, attack_mode)


@RECIPES.register("pivot", paper=SIMILARITY.format(which="the clean embedding a fixed pivot"),
                  adversary=SIMILARITY_ADVERSARY)
def pivot(eps: float, lam: float = 0.3, lambda2: float = 1e-5, power: int = 2, on: str = "logits",
          adv_fraction: float = 1.0, attack: str = "step_ll", attack_mode: str = "eval") -> Objective:
    """As `bidirection`, but only the adversarial embedding moves (Sec. 3.2's pivot loss).

    lambda2 1e-5, not the paper's 1e-4: with the clean logits a fixed target, the update of the
    shared weights moves both embeddings and the distance grows instead of shrinking. On small_cnn
    / Fashion-MNIST (9,600 images, batch 64 + 64) the loss is NaN by step 48 at 1e-4 and by step
    120 at 3e-5; 1e-5 trains (84.9%, as bidirection at 1e-4). On the 256-d penultimate embedding
    (on="embedding", scaled 10/256) 1e-4 trains too. Bidirection has no such problem."""
    return _similarity("pivot", eps, True, lam, lambda2, power, on, adv_fraction, attack, attack_mode)


@RECIPES.register("cascade", paper="the Cascade paper (Na et al. 2018) Sec. 6: saved iter_FGSM images "
                  "of an already defended network injected beside one-step images, with (pivot) or "
                  "without (Kurakin's) similarity learning",
                  adversary="saved_fraction of k from the bank (defense.source), the rest step_ll")
def cascade(eps: float, similarity: bool = True, pivot: bool = True, saved_fraction: float = 0.5,
            lam: float = 0.3, lambda2: float | None = None, power: int = 2, on: str = "logits",
            adv_fraction: float | None = None, attack: str = "step_ll",
            attack_mode: str = "eval") -> Objective:
    """Table 5: 32 saved images of k = 64. With similarity, the pivot recipe's loss (lambda2 None:
    1e-5, see pivot; pivot=False: the bidirectional one at the paper's 1e-4) over the k
    images added beside the batch (adv_fraction default 1.0, k / (m - k)); without, Kurakin's loss
    with the k images replacing theirs (adv_fraction default 0.5, k / m). The saved images are
    not augmented (the paper: "we didn't perform random crop for these images"), so with
    data.augment on, a saved image and its clean partner in the distance term differ by the
    partner's crop and flip too, as in the paper; Fashion-MNIST trains without augmentation."""
    fraction = adv_fraction if adv_fraction is not None else (1.0 if similarity else 0.5)
    lambda2 = lambda2 if lambda2 is not None else (1e-5 if pivot else 1e-4)
    one_step = RandomEpsOneStep(attack=attack, max_eps=eps, fraction=fraction, mode=attack_mode)
    adversary = CascadeAdversary(one_step, saved_fraction)
    if similarity:
        return _similarity("cascade", eps, pivot, lam, lambda2, power, on, fraction, attack, attack_mode,
                           adversary)
    return _objective("cascade", {"kurakin_ce": {"weight": 1.0, "lam": lam}}, adversary)


@RECIPES.register("fast_at", paper="Fast AT, Wong et al. 2020: FGSM from a uniform random start, "
                  "step alpha = 1.25 eps", adversary="FGSM with random start, alpha 1.25 eps")
def fast_at(eps: float, alpha: float | None = None, attack_mode: str = "eval",
            label_smoothing: float = 0.0) -> Objective:
    step = alpha if alpha is not None else 1.25 * eps
    return _objective("fast_at", {"adv_ce": {"weight": 1.0, "label_smoothing": label_smoothing}},
                      _pgd(eps, 1, step, attack_mode))


@RECIPES.register("free_at", paper="Free AT, Shafahi et al. 2019 Alg. 1: each minibatch replayed m "
                  "times; one backward gives the weight and the perturbation gradients",
                  adversary="running perturbation, step eps per replay")
def free_at(eps: float, replays: int = 8, label_smoothing: float = 0.0) -> Objective:
    """Shafahi et al. divide the epochs by m to keep the cost of standard training."""
    check_ranges([(isinstance(replays, int) and replays >= 1, "replays", replays, "an integer >= 1")])
    return _objective("free_at", {"adv_ce": {"weight": 1.0, "label_smoothing": label_smoothing}},
                      FreeAdversary(eps), replays=replays)


@RECIPES.register("atat", paper="ATAT eq. 7: CE on the clean + adversarial mixture + lambda1 Grad-CAM "
                  "attention transfer (eq. 5, p = 2) + lambda2 ||z(x) - z(x_adv)||_2 (eq. 6)",
                  adversary="PGD-7 with random start (step 2.5 eps / 7)", teacher="standard-trained, frozen")
def atat(eps: float, at_weight: float = 1.0, lp_weight: float = 1.0, p: float = 2.0,
         layers: list | None = None, steps: int = 7, step_size: float | None = None,
         attack_mode: str = "eval", label_smoothing: float = 0.0) -> Objective:
    """lambda1 = lambda2 = 1: ATAT Sec. 4.3 switches its terms on and off with weights 1 and 0. CE
    on the mixture is 0.5 CE(x) + 0.5 CE(x_adv), as ALP's. `layers` (module names) sums eq. 5
    over more layers than the top conv one. The student starts from the teacher's weights (Sec.
    3.2) when defense.init_from_teacher is set, as configs/atat_fmnist.yaml does."""
    ce = {"label_smoothing": label_smoothing}
    return _objective("atat", {"clean_ce": {"weight": 0.5, **ce}, "adv_ce": {"weight": 0.5, **ce},
                               "attention_transfer": {"weight": at_weight, "p": p, "layers": layers},
                               "logit_pairing": {"weight": lp_weight, "squared": False}},
                      _pgd(eps, steps, step_size, attack_mode))


CLASSIFICATION = {"ce": {"clean_ce": "clean_ce", "adv_ce": "adv_ce"},
                  "soft_margin": {"clean_ce": "clean_soft_margin", "adv_ce": "adv_soft_margin"}}


def _with_aad(base: Objective, name: str, alpha: float, beta: float, kappa: float | None,
              classification: str) -> Objective:
    """AAD eq. 10 on top of a base recipe: L_c (the base's classification terms, CE or AAD's
    multi-label soft margin) + alpha L_r (eq. 8) + beta L_p (eq. 9)."""
    if classification not in CLASSIFICATION:
        raise UserError(f"classification={classification!r}: choose ce or soft_margin")
    check_ranges([(alpha >= 0, "alpha", alpha, ">= 0"), (beta >= 0, "beta", beta, ">= 0")])
    rename = CLASSIFICATION[classification]
    terms = {}
    for term, (fn, weight) in base.terms.items():
        if term in rename and rename[term] != term:  # the soft margin takes no label smoothing
            term, fn = rename[term], make_terms({rename[term]: weight})[rename[term]][0]
        terms[term] = (fn, weight)
    terms.update(make_terms({"attention_rectification": {"weight": alpha, "kappa": kappa},
                             "attention_preservation": beta}))
    return dataclasses.replace(base, terms={t: v for t, v in terms.items() if v[1] != 0}, name=name)


@RECIPES.register("aad_madry", paper="AAD eq. 10 on Madry's PGD training: L_c + 0.01 attention "
                  "rectification (eq. 8) + 0.01 attention preservation (eq. 9)",
                  adversary="PGD-7 with random start (Madry et al.)")
def aad_madry(eps: float, alpha: float = 0.01, beta: float = 0.01, kappa: float | None = None,
              classification: str = "ce", steps: int = 7, step_size: float | None = None,
              attack_mode: str = "eval", label_smoothing: float = 0.0) -> Objective:
    """AAD's L_c is a multi-label soft-margin loss (classification=soft_margin); CE is the
    default here so that aad_madry differs from madry only by AAD's two terms."""
    return _with_aad(madry(eps, steps, step_size, attack_mode, label_smoothing), "aad_madry",
                     alpha, beta, kappa, classification)


@RECIPES.register("aad_alp", paper="AAD eq. 10 on ALP: ALP's loss + 0.01 attention rectification "
                  "(eq. 8) + 0.01 attention preservation (eq. 9)", adversary="PGD-7 with random start")
def aad_alp(eps: float, alpha: float = 0.01, beta: float = 0.01, kappa: float | None = None,
            classification: str = "ce", pairing: float = 0.5, steps: int = 7,
            step_size: float | None = None, attack_mode: str = "eval",
            label_smoothing: float = 0.0) -> Objective:
    return _with_aad(alp(eps, pairing, steps, step_size, attack_mode, label_smoothing), "aad_alp",
                     alpha, beta, kappa, classification)


def _agkd_bml(name: str, eps: float, *, kd_weight: float, triplet_weight: float, norm_weight: float,
              margin: float, steps: int, step_size: float | None, attack_mode: str,
              label_smoothing: float, normalization: str = "none") -> Objective:
    """AGKD-BML eq. 9: L_ce + L_AGKD + lambda1 L_tr + lambda2 L_norm on bidirectional targeted
    PGD pairs (Alg. 1); the ablations drop terms, never change the adversary. CE is on the
    forward examples with their true labels, as the authors' code."""
    weights = {"kd_weight": kd_weight, "triplet_weight": triplet_weight, "norm_weight": norm_weight}
    check_ranges([(w >= 0, name, w, ">= 0") for name, w in weights.items()])
    if normalization not in NORMALIZATIONS:
        raise UserError(f"normalization={normalization!r}: choose one of {', '.join(NORMALIZATIONS)}")
    spec: dict[str, Any] = {"adv_ce": {"weight": 1.0, "label_smoothing": label_smoothing}}
    if kd_weight:
        spec["attention_kd"] = {"weight": kd_weight, "normalization": normalization}
    if triplet_weight:
        spec["bml_triplet"] = {"weight": triplet_weight, "margin": margin}
    if norm_weight and triplet_weight:
        spec["bml_norm"] = norm_weight
    check_mode(attack_mode)
    attack = AttackAdversary(training_pgd(eps, steps, step_size), attack_mode)
    return _objective(name, spec, BidirectionalAdversary(attack))


_AGKD_ADVERSARY = ("targeted PGD-{k} with random start: x^s towards its most confusing class, a "
                   "random clean image of that class back towards s")


@RECIPES.register("agkd_bml", paper="AGKD-BML, Wang et al. 2021 eq. 9: CE + attention distillation "
                  "(eq. 8) + 2 bidirectional angular triplet (eq. 6) + 0.001 L_norm (eq. 7)",
                  adversary=_AGKD_ADVERSARY.format(k=2), teacher="standard-trained, frozen")
def agkd_bml(eps: float, steps: int = 2, step_size: float | None = None, kd_weight: float = 1.0,
             triplet_weight: float = 2.0, norm_weight: float = 0.001, margin: float = 0.03,
             normalization: str = "none", attack_mode: str = "eval",
             label_smoothing: float = 0.0) -> Objective:
    """The paper trains with 2-step attacks and label smoothing 0.5 (train.label_smoothing=0.5);
    label smoothing is a known source of gradient masking, so it is off by default here."""
    return _agkd_bml("agkd_bml", eps, kd_weight=kd_weight, triplet_weight=triplet_weight,
                     norm_weight=norm_weight, margin=margin, steps=steps, step_size=step_size,
                     attack_mode=attack_mode, label_smoothing=label_smoothing, normalization=normalization)


@RECIPES.register("agkd_bml_7", paper="AGKD-BML-7 (Wang et al. 2021 Table 1): AGKD-BML trained with "
                  "7-step attacks", adversary=_AGKD_ADVERSARY.format(k=7), teacher="standard-trained, frozen")
def agkd_bml_7(eps: float, steps: int = 7, step_size: float | None = None, kd_weight: float = 1.0,
               triplet_weight: float = 2.0, norm_weight: float = 0.001, margin: float = 0.03,
               normalization: str = "none", attack_mode: str = "eval",
               label_smoothing: float = 0.0) -> Objective:
    return _agkd_bml("agkd_bml_7", eps, kd_weight=kd_weight, triplet_weight=triplet_weight,
                     norm_weight=norm_weight, margin=margin, steps=steps, step_size=step_size,
                     attack_mode=attack_mode, label_smoothing=label_smoothing, normalization=normalization)


@RECIPES.register("agkd", paper="AGKD-BML ablation 'AGKD' (Table 2): CE + attention distillation, no "
                  "metric learning", adversary=_AGKD_ADVERSARY.format(k=2),
                  teacher="standard-trained, frozen")
def agkd(eps: float, steps: int = 2, step_size: float | None = None, kd_weight: float = 1.0,
         normalization: str = "none", attack_mode: str = "eval", label_smoothing: float = 0.0) -> Objective:
    return _agkd_bml("agkd", eps, kd_weight=kd_weight, triplet_weight=0.0, norm_weight=0.0, margin=0.03,
                     steps=steps, step_size=step_size, attack_mode=attack_mode,
                     label_smoothing=label_smoothing, normalization=normalization)


@RECIPES.register("bml", paper="AGKD-BML ablation 'BML' (Table 2): CE + bidirectional metric "
                  "learning, no distillation", adversary=_AGKD_ADVERSARY.format(k=2))
def bml(eps: float, steps: int = 2, step_size: float | None = None, triplet_weight: float = 2.0,
        norm_weight: float = 0.001, margin: float = 0.03, attack_mode: str = "eval",
        label_smoothing: float = 0.0) -> Objective:
    return _agkd_bml("bml", eps, kd_weight=0.0, triplet_weight=triplet_weight, norm_weight=norm_weight,
                     margin=margin, steps=steps, step_size=step_size, attack_mode=attack_mode,
                     label_smoothing=label_smoothing)


@RECIPES.register("distill", paper="knowledge distillation, Hinton et al. 2015: KL to a frozen teacher's "
                  "outputs (the black-box proxy of PDM Sec. 4.4)", adversary="none",
                  teacher="the model to copy")
def distill(eps: float | None = None, temperature: float = 1.0) -> Objective:
    return _objective("distill", {"distill_kl": {"weight": 1.0, "temperature": temperature}})


@RECIPES.register("rce", paper="RCE, Pang et al. 2018 (PDM's baseline): reverse cross-entropy; the "
                  "model's output is the reversed logits, so its argmax is its class", adversary="none")
def rce(eps: float | None = None) -> Objective:
    return _objective("rce", {"reverse_ce": 1.0})


def _pdm(name: str, reverse: bool, same_prob: float, siamese_weight: float,
         variance_weight: float) -> Objective:
    """PDM Alg. 1 line 23: the classification loss of both Siamese sub-networks + the Siamese
    cosine loss + RVL, weights 1 in the paper."""
    check_ranges([(siamese_weight >= 0, "siamese_weight", siamese_weight, ">= 0"),
                  (variance_weight >= 0, "variance_weight", variance_weight, ">= 0")])
    spec: dict[str, Any] = {"reverse_ce" if reverse else "clean_ce": 1.0,
                            "siamese_ce": {"weight": 1.0, "reverse": reverse},
                            "siamese_cosine": siamese_weight, "reduce_variance": variance_weight}
    return _objective(name, {t: w for t, w in spec.items() if w != 0}, pairing=SiamesePairing(same_prob))


@RECIPES.register("siamese_rvl", paper="PDM Sec. 3.1-3.2: CE on both Siamese inputs + |cos(z1, z2) - s| + "
                  "reduce-variance loss (no RCE)", adversary="none (Siamese partner: same class w.p. Q)")
def siamese_rvl(eps: float | None = None, same_prob: float = 0.5, siamese_weight: float = 1.0,
                variance_weight: float = 1.0) -> Objective:
    """PDM does not state Q; 0.5 (balanced similar / dissimilar pairs) is ours. RVL weight 1 as
    Alg. 1; see pdm for what small_cnn takes."""
    return _pdm("siamese_rvl", False, same_prob, siamese_weight, variance_weight)


@RECIPES.register("pdm", paper="PDM, Rozenberg et al. (Alg. 1): RCE on both Siamese inputs + "
                  "|cos(z1, z2) - s| + reduce-variance loss",
                  adversary="none (Siamese partner: same class w.p. Q)")
def pdm(eps: float | None = None, same_prob: float = 0.5, siamese_weight: float = 1.0,
        variance_weight: float = 1.0) -> Objective:
    """RVL weight 1 as Alg. 1 (the paper's ResNet-56 with Leaky-ReLU(0.1), configs/paper/). RVL is
    not scale-invariant: its minimum is every embedding of a class equal. On small_cnn /
    Fashion-MNIST (10,000 images x 2 epochs, 10,000 test images) weight 1 stays at chance
    accuracy with ReLU (10.0%) and with Leaky-ReLU(0.1) (10.0%); with Leaky-ReLU weight 0.001
    trains to 85.4%, above rce (83.2%), where ReLU had diverged at that weight (53.6%) and
    trained only at a tenth of it. configs/pdm_fmnist.yaml therefore uses Leaky-ReLU and 0.001."""
    return _pdm("pdm", True, same_prob, siamese_weight, variance_weight)


def build_objective(recipe: str, *, eps: float | None = None, label_smoothing: float = 0.0,
                    label_smoothing_mode: str = "all", forward: str | None = None,
                    terms: Mapping[str, Any] | None = None, **options: Any) -> Objective:
    """The recipe's objective with `options`, plus extra or re-weighted `terms` (weight 0
    drops a term). `label_smoothing` reaches the recipe's CE terms where it has them, spread
    as `label_smoothing_mode` says (see terms.smoothed_ce); `forward` (joint | separate)
    replaces the recipe's choice of one or several train-mode forwards."""
    factory = RECIPES.get(recipe)
    check_params("recipe", recipe, factory, options, skip=("eps", "label_smoothing"))
    if eps is not None:
        check_eps(eps, "eps")
    kwargs = {key: fraction_or_value(f"defense.options.{key}", value) for key, value in options.items()}
    if "label_smoothing" in _parameters(factory):
        kwargs["label_smoothing"] = label_smoothing
    elif label_smoothing:
        raise UserError(f"recipe {recipe!r} has no CE term to smooth; set train.label_smoothing=0 "
                        "or add a smoothed term under defense.terms")
    if "eps" in _parameters(factory):
        if eps is None and recipe not in NO_ADVERSARY:
            raise UserError(f"recipe {recipe!r} needs eps (defense.eps), e.g. 0.1 for Fashion-MNIST")
        kwargs["eps"] = eps
    objective = factory(**kwargs)
    if terms:
        merged = {**objective.terms, **make_terms(terms)}
        objective.terms = {name: term for name, term in merged.items() if term[1] != 0}
    if not objective.terms:
        raise UserError(f"recipe {recipe!r} has no term left: every weight is 0")
    if label_smoothing_mode not in SMOOTHING_MODES:
        raise UserError(f"train.label_smoothing_mode={label_smoothing_mode!r}: choose "
                        f"{' or '.join(SMOOTHING_MODES)}")
    # A term's own smoothing_mode (defense.terms) wins over train.label_smoothing_mode.
    objective.terms = {name: (partial(fn, smoothing_mode=label_smoothing_mode)
                              if "smoothing_mode" in _parameters(fn)
                              and "smoothing_mode" not in getattr(fn, "keywords", {}) else fn, weight)
                       for name, (fn, weight) in objective.terms.items()}
    if forward is not None:
        if forward not in FORWARDS:
            raise UserError(f"defense.forward={forward!r}: choose {' or '.join(FORWARDS)} (or null: "
                            "the recipe's own)")
        objective.forward = forward
    return objective


def describe_recipes(eps: float = 0.1) -> list[dict[str, Any]]:
    """Each recipe's paper, adversary, default term weights and options (for `robustlab recipes`)."""
    rows = []
    for name in RECIPES.names():
        factory = RECIPES.get(name)
        objective = factory(**({"eps": eps} if "eps" in _parameters(factory) else {}))
        options = {p.name: p.default for p in inspect.signature(factory).parameters.values()
                   if p.name not in ("eps", "label_smoothing")}
        forward = objective.forward if len(objective.image_sets) > 1 else "one forward"
        rows.append({"name": name, **RECIPES.info[name], "terms": objective.weights,
                     "replays": objective.replays, "forward": forward, "options": options,
                     "reads": sorted(objective.reads)})
    return rows


def _parameters(fn) -> set[str]:
    return set(inspect.signature(fn).parameters)
