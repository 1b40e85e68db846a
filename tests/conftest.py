import pytest
import torch

from robustlab.data import dataset_status


def fashion_mnist_here() -> bool:
    return dict((name, ok) for name, ok, _ in dataset_status())["fashion-mnist"]


@pytest.fixture(scope="session")
def trained_fmnist(tmp_path_factory):
    """A small_cnn (width 16) trained for 2 epochs on 8,192 Fashion-MNIST images (~85% clean),
    with 500 test images: the small standard-trained model attack tests run against."""
    if not fashion_mnist_here():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    from robustlab.config import load_config
    from robustlab.experiment import load_data, train

    out = tmp_path_factory.mktemp("runs")
    cfg = load_config(None, [
        "model.options={width: 16, embedding_dim: 64}", "train.epochs=2", "data.train_limit=8192",
        "data.test_limit=500", "train.channels_last=true", "train.monitor_images=0", f"out_dir={out}",
        "name=fixture"])
    run = train(cfg, log=lambda _: None)
    test = load_data(cfg).test
    model = run.model.cpu().eval().to(memory_format=torch.contiguous_format)
    return model, test.images.float() / 255, test.labels
