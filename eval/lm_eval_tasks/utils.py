"""Metric for the acme_support lm-eval task: the reply contains the reference fact."""


def contains_reference(references, predictions):
    return float(references[0].lower() in predictions[0].lower())
