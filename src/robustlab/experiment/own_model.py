"""The evaluate job for any nn.Module mapping [0, 1] images to logits: `evaluate_model` (which
is `robustlab.evaluate`) and `evaluate_external` (`robustlab eval --model`). The images come as
tensors, a DataLoader, or a data set; entries that need the Classifier contract read a named
feature layer through `HookedClassifier` or are skipped with the reason."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from robustlab.data import DATASETS, DEFAULT_EPS, check_eps, default_eps, load_dataset
from robustlab.data.batches import Split
from robustlab.errors import UserError
from robustlab.experiment.build import load_run
from robustlab.experiment.evaluate import check_limit, stamp
from robustlab.experiment.rundir import suite_state
from robustlab.models import HookedClassifier, load_model
from robustlab.models.modes import eval_mode
from robustlab.train import resolve_device
from robustlab.train.fit import say

Data = Tensor | Iterable | str | Path


def evaluate_model(model: nn.Module, x: Data, y: Tensor | None = None, *, suite: str | Path = "papers",
                   eps: float | None = None, out: str | Path | None = None, limit: int | None = None,
                   feature_layer: str | None = None, source: nn.Module | str | Path | None = None,
                   name: str | None = None, data_dir: str | Path | None = None,
                   device: str | None = None, batch_size: int = 256,
                   log: Callable[[str], None] = say) -> dict:
    """Run `suite` on any nn.Module mapping [0, 1] images to logits; returns the report dict and,
    with `out`, writes report.json / .md / .html there (and the state an interrupted call
    resumes from).

    x: images [N, C, H, W] in [0, 1] with their labels y [N]; or a DataLoader (any iterable)
    of (images, labels) batches; or a registered data set's name, or a folder / .npz file of
    your own (`folder` / `npz` data sets), whose first `limit` test images (default: the
    suite's) are used. eps: the L-inf budget (default: the data set's; required for other data).
    feature_layer: a submodule whose output is the feature map for the entries that need the
    Classifier contract (A3), read by a forward hook; without it, and unless the model has the
    contract itself, they are skipped with the reason. source: the transfer entries' source
    model (an nn.Module, or a robustlab run / checkpoint); without it they are skipped.
    device: None keeps the model where it is. The model's train / eval modes are restored.
    """
    from robustlab.eval.suite import load_suite
    from robustlab.eval.suite_run import run_suite
    from robustlab.report import write_report

    chosen = load_suite(suite)
    check_limit(limit)
    default_limit = chosen.images if isinstance(x, (str, Path)) else None  # a data set: as the CLI
    images = gather_images(x, y, limit=limit or default_limit, data_dir=data_dir)
    eps = user_eps(eps, images.dataset)
    dev = _device(model, device)
    target = HookedClassifier(model, feature_layer) if feature_layer else model
    title = name or model_name(model)
    log(f"{chosen.name} suite on {title}: {len(images.y)} images ({images.dataset}), eps {eps:.4g}, "
        f"{len(chosen.attacks)} attacks")
    with eval_mode(model):
        body = run_suite(target.to(dev), images.x, images.y, chosen, eps=eps,
                         num_classes=_num_classes(target, images, dev), device=dev, batch_size=batch_size,
                         sources=_source_resolver(source),
                         state_path=suite_state(Path(out)) if out is not None else None,
                         state_key=f"{fingerprint(model)}:{feature_layer}:{source_key(source)}", log=log)
    report = {"name": title, "dataset": images.dataset, "model": model_name(model),
              "feature_layer": feature_layer, **body, **stamp(dev, 1)}
    if out is not None:
        report["files"] = {k: str(v) for k, v in write_report(report, Path(out)).items()}
    return report


def evaluate_external(spec: str | None, weights: str | Path | None, data: str | Path, *,
                      out: str | Path | None = None, name: str | None = None, **options) -> dict:
    """`robustlab eval --model package.module:factory [--weights FILE] --data NAME|PATH`: the
    model `models.load_model` builds, evaluated by `evaluate_model`; the report goes to `out`
    (default reports/NAME, NAME the model's class name unless given)."""
    model = load_model(spec, weights)
    if weights is None:
        options.get("log", say)(f"warning: no --weights: {spec}'s freshly initialised weights are evaluated")
    name = name or model_name(model)
    return evaluate_model(model, data, out=out or Path("reports") / name, name=name, **options)


def user_eps(eps: float | None, dataset: str) -> float:
    """`eps`, or the data set's default; data without one (your own) must name its budget."""
    if eps is None and dataset not in DEFAULT_EPS:
        raise UserError(f"eps is needed for {dataset}: give the L-inf budget in [0, 1] units "
                        "(e.g. eps=8/255 for CIFAR-like images, 0.1 for Fashion-MNIST)")
    return check_eps(eps if eps is not None else default_eps(dataset), "eps")


@dataclass(frozen=True)
class Images:
    """What a suite attacks: images x [N, C, H, W] in [0, 1] on the CPU, labels y [N], and the
    data set's name (or how the images were given)."""

    x: Tensor
    y: Tensor
    dataset: str

    def stored(self) -> Split:
        """The images as every data set keeps them: uint8 (rounded to 1/255) and int64 labels."""
        return Split(self.x.mul(255).round().byte(), self.y.long())


def gather_images(data: Data, y: Tensor | None, *, limit: int | None,
                  data_dir: str | Path | None = None) -> Images:
    """The first `limit` images (all if None) of a tensor with labels `y`, an iterable of
    (images, labels) batches, or a data set (a registered name, or a folder / .npz path)."""
    if isinstance(data, (str, Path)):
        return _dataset_images(data, limit, data_dir)
    if isinstance(data, Tensor):
        if not isinstance(y, Tensor):
            raise UserError("images given as a tensor need their labels as a tensor: "
                            "evaluate(model, x, y)")
        return _checked(data[:limit], y[:limit], f"images {_shape(data)}")
    if y is not None:
        raise UserError("y goes with images given as a tensor; a DataLoader yields its own "
                        "(images, labels) batches")
    if not isinstance(data, Iterable):
        raise UserError(f"x is a {type(data).__name__}: give images as a tensor (with y), a "
                        "DataLoader of (images, labels) batches, or a data set's name")
    return _loader_images(data, limit)


def data_source(data: str | Path, data_dir: str | Path | None) -> tuple[str, str | Path | None]:
    """(data set name, data_dir) of a registered name, or of your folder / .npz file's path."""
    name = str(data)
    if name in DATASETS:
        return name, data_dir
    if Path(name).exists():
        if data_dir is not None:
            raise UserError(f"{name} is a path already: drop data_dir (it locates a registered "
                            "data set's files)")
        path = Path(name)
        return ("npz" if path.suffix == ".npz" or (path / "train.npz").is_file() else "folder"), path
    raise UserError(f"data {name!r} is neither a registered data set ({', '.join(DATASETS.names())}) "
                    "nor an existing folder of class folders or .npz file")


def _dataset_images(data: str | Path, limit: int | None, data_dir: str | Path | None) -> Images:
    """The first `limit` test images of a registered data set, or of your folder / .npz data."""
    ds = load_dataset(*data_source(data, data_dir))
    # data of one set (no test part of its own) is all test data to a model trained elsewhere
    split = ds.whole if ds.whole is not None else ds.test
    n = min(len(split), limit or len(split))
    return Images(split.images[:n].float().div(255), split.labels[:n], ds.name)


def _loader_images(batches: Iterable, limit: int | None) -> Images:
    xs, ys, n = [], [], 0
    for batch in batches:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise UserError(f"the data must yield (images, labels) batches; one was a "
                            f"{type(batch).__name__}")
        xs.append(batch[0])
        ys.append(batch[1])
        n += len(batch[1])
        if limit is not None and n >= limit:
            break  # the rest of the loader is never read
    if not xs:
        raise UserError("the DataLoader yielded no batches")
    if not all(isinstance(t, Tensor) for t in xs + ys):
        raise UserError("the DataLoader's batches must be tensors (images, labels)")
    x, y = torch.cat(xs), torch.cat(ys)
    return _checked(x[:limit], y[:limit], f"DataLoader {_shape(x)}")


def _checked(x: Tensor, y: Tensor, what: str) -> Images:
    if not x.is_floating_point() or x.dim() != 4 or len(x) == 0:
        raise UserError(f"images must be a non-empty float tensor [N, C, H, W] in [0, 1], got "
                        f"{x.dtype} {list(x.shape)}")
    if not torch.isfinite(x).all():
        raise UserError(f"images hold {int((~torch.isfinite(x)).sum())} NaN or infinite values; "
                        "give finite values in [0, 1]")
    lo, hi = x.min().item(), x.max().item()
    if lo < 0 or hi > 1:
        raise UserError(f"images must be in [0, 1] (put any normalization inside the model); "
                        f"got values in [{lo:.3g}, {hi:.3g}]")
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.shape != (len(x),):
        raise UserError(f"labels must be an integer tensor [{len(x)}], got {y.dtype} {list(y.shape)}")
    return Images(x.detach().cpu(), y.detach().cpu().long(), what)


def _shape(x: Tensor) -> str:
    return "x".join(str(d) for d in x.shape[1:])


def _device(model: nn.Module, device: str | None) -> torch.device:
    """`device` resolved, or where the model's parameters are (the CPU if it has none)."""
    if device is not None:
        return resolve_device(device)
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _num_classes(target: nn.Module, images: Images, dev: torch.device) -> int:
    """The model's logit count, checked on two images against the labels (and, for a hooked
    model, its feature layer read once, so a bad layer fails now, not after an hour)."""
    sample = images.x[:2].to(dev)
    with torch.no_grad():
        logits = target.forward_all(sample).logits if isinstance(target, HookedClassifier) else target(sample)
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        raise UserError(f"the model must return logits [B, K]; it returned "
                        f"{type(logits).__name__} {list(getattr(logits, 'shape', []))}")
    for label in (int(images.y.min()), int(images.y.max())):
        if not 0 <= label < logits.shape[1]:
            raise UserError(f"label {label} is outside the model's {logits.shape[1]} outputs")
    return logits.shape[1]


def _source_resolver(source: nn.Module | str | Path | None) -> Callable[[str], nn.Module] | None:
    """Every transfer entry's source: `source` (a module, or a robustlab run / checkpoint)."""
    if source is None:
        return None
    model = source if isinstance(source, nn.Module) else load_run(source).model
    return lambda _spec: model


def model_name(model: nn.Module) -> str:
    """The model's class name (a TorchScript model's original one; a hooked model's inner one)."""
    inner = model.model if isinstance(model, HookedClassifier) else model
    return getattr(inner, "original_name", None) or type(inner).__name__


def fingerprint(model: nn.Module) -> str:
    """A hash of the class name and every tensor of the state_dict: a saved evaluation state is
    reused only for the very same weights."""
    digest = hashlib.sha256(model_name(model).encode())
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def source_key(source: nn.Module | str | Path | None) -> str:
    return fingerprint(source) if isinstance(source, nn.Module) else str(source)

