"""TensorFlow and Keras, imported on first use.

Importing TensorFlow imports Keras, which imports matplotlib, which trips pyparsing's deprecation
warnings. They concern those packages, not the project, and the test suite turns warnings into
errors, so the import happens here with deprecation warnings silenced, and only here.
"""

from __future__ import annotations

import warnings
from typing import Any


def import_tensorflow() -> Any:
    """The ``tensorflow`` module (Keras is imported with it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import keras  # noqa: F401  (imported here so its import warnings are silenced too)
        import tensorflow as tf
    return tf


def import_keras() -> Any:
    """The ``keras`` module."""
    import_tensorflow()
    import keras

    return keras
