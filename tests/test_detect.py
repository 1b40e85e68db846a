"""`robustlab detect`: the C&W-wb attack raises the KDE density it is meant to, and the command
writes PDM's tables for a tiny run, refusing bad options in one line."""

import json

import pytest
import torch

from robustlab.attacks import ATTACKS
from robustlab.cli import main
from robustlab.config import load_config
from robustlab.experiment import load_data, load_run, train
from robustlab.experiment.detect import _outputs, detection_of, fit_detector, kde_evading_cw

TINY = ["data.name=synthetic", "data.options={train_size: 512, test_size: 128}", "data.batch_size=64",
        "model.options={width: 8, embedding_dim: 32}", "train.epochs=5", "train.monitor_images=0"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("detect")
    cfg = load_config("configs/standard_fmnist.yaml", [*TINY, f"out_dir={out}", "name=std"])
    train(cfg, log=lambda _: None)
    return out / "std"


def test_white_box_cw_raises_the_density_that_plain_cw_leaves_low(run):
    loaded = load_run(run)
    ds = load_data(loaded.cfg)
    model = loaded.model.eval()
    detector = fit_detector(model, ds.train.images.float() / 255, ds.train.labels, per_class=40,
                            bandwidth=1.0)
    x, y = ds.test.images[:24].float() / 255, ds.test.labels[:24]
    z, pred = _outputs(model, x)
    tau = float(torch.tensor(detector.score(z, pred)).median())
    plain = ATTACKS.build("cw_l2", steps=100, search_steps=5)(model, x, y)
    evading = kde_evading_cw(detector, tau, steps=100, search_steps=5)(model, x, y)

    def density_of_successes(x_adv):
        z_adv, p_adv = _outputs(model, x_adv)
        ok = (p_adv != y) & (pred == y)
        return torch.tensor(detector.score(z_adv[ok], p_adv[ok])), ok

    plain_density, plain_ok = density_of_successes(plain)
    wb_density, wb_ok = density_of_successes(evading)
    assert plain_ok.sum() >= 20 and wb_ok.sum() >= 3
    assert (wb_density >= tau - 1e-6).all()  # a C&W-wb point counts only once it is dense enough
    assert wb_density.mean() > plain_density.mean() + 50  # plain C&W lands far off the clusters

    def distortion(x_adv, ok):
        return (x_adv - x).flatten(1).norm(dim=1)[ok].mean()

    assert distortion(evading, wb_ok) > distortion(plain, plain_ok)  # evading costs distortion
    gray = detection_of(model, detector, x, y, plain)
    assert gray["successful"] == int(plain_ok.sum()) and 0 <= gray["auc"] <= 1


def test_detect_command_writes_the_tables(run, tmp_path, capsys):
    code = main(["detect", str(run), "--images", "24", "--per-class", "30", "--cw-hc-steps", "10",
                 "--wb-steps", "20", "--proxy-epochs", "1", "--out", str(tmp_path / "d")])
    out = capsys.readouterr().out
    assert code == 0 and "gray-box FGSM-0.05" in out and "black-box" in out
    numbers = json.loads((tmp_path / "d" / "detect.json").read_text())
    assert set(numbers["gray_box"]) == {"FGSM-0.05", "FGSM-0.1", "BIM-0.05", "BIM-0.1", "C&W", "C&W-hc",
                                        "JSMA"}
    for row in numbers["gray_box"].values():
        assert row["auc"] is None or 0 <= row["auc"] <= 1
    assert 0 < numbers["clean_accuracy"] <= 1 and numbers["davies_bouldin"] > 0
    assert (tmp_path / "d" / "kde.pt").is_file()
    assert (tmp_path / "d" / "proxy" / "checkpoints" / "last.pt").is_file()
    page = (tmp_path / "d" / "detect.html").read_text()
    assert "Gray-box detection (PDM Table 2)" in page and "data:image/png;base64," in page
    # a second run reuses the fitted detector and the distilled proxy
    assert main(["detect", str(run), "--images", "24", "--per-class", "30", "--threats", "gray",
                 "--cw-hc-steps", "10", "--out", str(tmp_path / "d")]) == 0
    assert "fitting the KDE detector" not in capsys.readouterr().err


@pytest.mark.parametrize("args, expected", [
    (["--threats", "gray,purple"], "unknown threat model(s) purple"),
    (["--images", "0"], "--images=0"),
    (["--eps", "3"], "--eps=3"),
])
def test_detect_bad_input(run, capsys, args, expected):
    code = main(["detect", str(run), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and expected in err
