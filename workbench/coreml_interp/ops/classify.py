"""`classify` (ops/defs/iOS15/classify.py): a classifier's label and its {class: probability} dict."""

from __future__ import annotations

import numpy as np

from ..registry import op


@op("classify")
def classify(probabilities, classes):
    p = probabilities.reshape(-1).double().numpy()
    classes = list(classes)
    return classes[int(np.argmax(p))], {c: float(v) for c, v in zip(classes, p)}
