"""Copies of a Keras model, layer by layer, with each layer's class and config edited."""

from __future__ import annotations

from typing import Callable

import keras

# (operation, its config) -> (the class of the copy's operation, its config).
Edit = Callable[[keras.Operation, dict], tuple[type, dict]]


def clone_with(model: keras.Model, edit: Edit) -> keras.Model:
    """A copy of `model` (nested models included) holding its weights, each operation made by `edit`.

    Call it inside a distribution strategy's scope to place the copy there.
    """

    def clone(operation: keras.Operation) -> keras.Operation:
        cls, config = edit(operation, operation.get_config())
        return cls.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    return copy
