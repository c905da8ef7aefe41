"""Data: the Cityscapes class table (:mod:`panonet.data.labels`), datasets and transforms."""

from panonet.data import labels

__all__ = ["labels"]
