"""Shared Flax building blocks and reference models."""

from ._mlp import MLP as MLP
from ._mlp import SmallCNN as SmallCNN
from ._afno import AFNO2D as AFNO2D
from ._afno import AFNOBlock as AFNOBlock
from ._afno import AFNONet as AFNONet
from ._afno import afno2d_mix as afno2d_mix
from ._afno import afno2d_mix_reference as afno2d_mix_reference
from ._resnet import BasicBlock as BasicBlock
from ._resnet import BottleneckBlock as BottleneckBlock
from ._resnet import ResNet as ResNet
from ._resnet import ResNet18 as ResNet18
from ._resnet import ResNet34 as ResNet34
from ._resnet import ResNet50 as ResNet50
from ._resnet import ResNet101 as ResNet101
from ._resnet import ResNet152 as ResNet152
from ._vgg import VGG as VGG
from ._vgg import VGG11_LAYERS as VGG11_LAYERS
from ._vgg import VGG16_LAYERS as VGG16_LAYERS
from ._vgg import adaptive_avg_pool as adaptive_avg_pool
from ._lif import LIF as LIF
from ._lif import lif as lif
from ._lif import lif_reference as lif_reference
from ._lif import spike as spike
