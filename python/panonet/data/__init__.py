"""Data: the Cityscapes class table (:mod:`panonet.data.labels`), the Cityscapes-layout dataset
(:mod:`panonet.data.cityscapes`), training augmentation (:mod:`panonet.data.transforms`) and the
synthetic street-scene generator (:mod:`panonet.data.synthetic`)."""

from panonet.data import labels
from panonet.data.cityscapes import CityscapesPanoptic, DatasetError
from panonet.data.transforms import collate

__all__ = ["CityscapesPanoptic", "DatasetError", "collate", "labels"]
