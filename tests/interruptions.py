"""Keras callbacks that stand for a killed training process, for the resume tests."""

import keras


class Interrupt(Exception):
    """Stands for a killed process."""


class StopAfter(keras.callbacks.Callback):
    """Raise after batch `batch` of epoch `epoch`, like a kill mid-epoch."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.stop_epoch, self.stop_batch, self.epoch = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == self.stop_epoch and batch == self.stop_batch:
            raise Interrupt()


class RecordEpochs(keras.callbacks.Callback):
    """Records the epochs a fit runs (a resumed fit starts after the last finished one) and its optimiser's steps."""

    def __init__(self):
        super().__init__()
        self.epochs, self.steps = [], None

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)

    def on_train_end(self, logs=None):
        self.steps = int(self.model.optimizer.iterations)
