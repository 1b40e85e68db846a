"""Model zoo: every model is a `Classifier` (normalize -> body -> embedding -> classifier).

`create_model(name, num_classes, in_channels, image_size, mean, std, **options)` builds one from
the `MODELS` registry: small_cnn, lenet, resnet (resnet20/32/56), preact_resnet18, wide_resnet
(wrn28_10, wrn34_10). Inputs are always in [0, 1]; normalization lives inside the model.
`HookedClassifier` gives any other nn.Module the contract through forward hooks (adapter.py);
`load_model` imports a user's `module:factory` and its weights (external.py).
"""

# The model modules are imported for their registrations in MODELS.
from robustlab.models import lenet, preact_resnet, resnet, small_cnn, wide_resnet  # noqa: F401
from robustlab.models.adapter import HookedClassifier, HookedModel, offers_contract
from robustlab.models.base import MODELS, Classifier, Normalize, Out, create_model
from robustlab.models.external import load_model
from robustlab.models.lenet import LeNet
from robustlab.models.preact_resnet import PreActResNet18
from robustlab.models.resnet import ResNet
from robustlab.models.small_cnn import SmallCNN
from robustlab.models.wide_resnet import WideResNet

__all__ = [
    "MODELS",
    "Classifier",
    "HookedClassifier",
    "HookedModel",
    "LeNet",
    "Normalize",
    "Out",
    "PreActResNet18",
    "ResNet",
    "SmallCNN",
    "WideResNet",
    "create_model",
    "load_model",
    "offers_contract",
]
