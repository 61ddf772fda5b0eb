"""Binary morphology on (B, H, W, C) masks with max pooling, in keras.ops.

A square structuring element of odd side `size`: dilation is a stride-1 max
pool, erosion a stride-1 min pool, each done as a row then a column pass (a
square is separable for max and min, and two 1-D passes are cheaper). Pixels outside the image count as 0 for
both (scipy.ndimage's default `border_value=0`), so a part touching the crop
border is eroded there, exactly as `scipy.ndimage.binary_opening` does.
"""

from __future__ import annotations

from keras import ops

from keras_hpe.errors import UserError


def check_structuring_size(size: int, field: str = "size") -> int:
    """Return `size` as an int if it is a valid (odd, >= 1) square element side, else raise UserError."""
    if int(size) != size or size < 1 or size % 2 == 0:
        raise UserError(f"{field} must be an odd integer >= 1 (square structuring element side), got {size}")
    return int(size)


def binary_dilation(masks, size: int):
    """Dilate 0/1 masks (B, H, W, C) by a `size` x `size` square."""
    # "same" max pooling ignores padded pixels: outside the image is 0.
    for window in ((size, 1), (1, size)):
        masks = ops.max_pool(masks, pool_size=window, strides=1, padding="same", data_format="channels_last")
    return masks


def binary_erosion(masks, size: int):
    """Erode 0/1 masks (B, H, W, C) by a `size` x `size` square; outside the image counts as 0."""
    pad = size // 2
    # Explicit zero padding: a "same" min pool would treat outside pixels as 1.
    inverted = -ops.pad(masks, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    for window in ((size, 1), (1, size)):
        inverted = ops.max_pool(inverted, pool_size=window, strides=1, padding="valid", data_format="channels_last")
    return -inverted


def binary_opening(masks, size: int):
    """Open 0/1 masks (B, H, W, C): erosion then dilation, removing specks thinner than `size`."""
    return binary_dilation(binary_erosion(masks, size), size)
