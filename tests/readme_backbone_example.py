"""The README's "A backbone for detection and segmentation" example; tests/test_hub_timm.py runs it and compares
what it prints with the block at the end of this file."""

from pathlib import Path

import timm
import torch
from torchvision.models.detection import FasterRCNN

import resnetlab

torch.manual_seed(0)
images = torch.rand(2, 3, 64, 64)  # small, to run in seconds on a CPU

# Faster R-CNN on ResNet-50 + FPN, as torchvision's resnet_fpn_backbone (FrozenBatchNorm2d, stem + layer1 frozen).
backbone = resnetlab.backbone("resnet50", trainable_layers=3)
print({k: tuple(v.shape) for k, v in backbone(images).items()})
detector = FasterRCNN(backbone, num_classes=3, min_size=64, max_size=64).train()
targets = [{"boxes": torch.tensor([[8.0, 12.0, 40.0, 48.0]]), "labels": torch.tensor([1])}] * 2
losses = detector(list(images), targets)
sum(losses.values()).backward()
print(sorted(losses))
detector.eval()
with torch.no_grad():
    print(sorted(detector(list(images))[0]))

# DeepLabV3 (torchvision's heads) on a dilated ResNet-50: output stride 8, as deeplabv3_resnet50.
segmenter = resnetlab.segmentation_model("resnet50", num_classes=5, head="deeplabv3", aux=True).eval()
with torch.no_grad():
    print({k: tuple(v.shape) for k, v in segmenter(images).items()})

# torch.hub on a local checkout (the folder holding hubconf.py): create_model's arguments, nothing downloaded.
checkout = Path(resnetlab.__file__).parents[2]
model = torch.hub.load(str(checkout), "resnet18", source="local", num_classes=10)
print(type(model).__name__, model.num_classes)

# timm both ways: the state-dict keys are the same.
theirs = timm.create_model("resnet18", pretrained=False).eval()
ours = resnetlab.create_model("resnet18").eval()
ours.load_state_dict(theirs.state_dict())  # timm -> resnetlab
back = timm.create_model("resnet18", pretrained=False).eval()
back.load_state_dict(ours.state_dict())  # resnetlab -> timm
with torch.no_grad():
    logits = ours(images)
    print(torch.allclose(logits, theirs(images), atol=1e-5), torch.allclose(back(images), logits, atol=1e-5))

# Prints:
# {'0': (2, 256, 16, 16), '1': (2, 256, 8, 8), '2': (2, 256, 4, 4), '3': (2, 256, 2, 2), 'pool': (2, 256, 1, 1)}
# ['loss_box_reg', 'loss_classifier', 'loss_objectness', 'loss_rpn_box_reg']
# ['boxes', 'labels', 'scores']
# {'out': (2, 5, 64, 64), 'aux': (2, 5, 64, 64)}
# ResNet 10
# True True
