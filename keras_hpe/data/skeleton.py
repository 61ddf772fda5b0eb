"""Joints and parts: the 14 NYU evaluation joints and the 20 hand parts.

Every model predicts the 14 joints in `JOINT_NAMES` order; every label map uses
the part ids of `PART_NAMES`: 0 is not hand, the forearm where there is depth
and every pixel without depth.
"""

from __future__ import annotations

# The 14 evaluation joints, in this order: NYU indices
# [0, 3, 6, 9, 12, 15, 18, 21, 24, 25, 27, 30, 31, 32] of the 36 annotated.
NYU_EVAL_JOINT_INDICES = (0, 3, 6, 9, 12, 15, 18, 21, 24, 25, 27, 30, 31, 32)
JOINT_NAMES = (
    "pinky_tip", "pinky_mid", "ring_tip", "ring_mid", "middle_tip", "middle_mid",
    "index_tip", "index_mid", "thumb_tip", "thumb_mid", "thumb_root",
    "wrist_back", "wrist", "palm",
)
NUM_JOINTS = len(JOINT_NAMES)

PART_NAMES = (
    "not_hand", "palm",
    "thumb_metacarpal", "thumb_proximal", "thumb_distal",
    "index_knuckle", "index_proximal", "index_middle", "index_distal",
    "middle_knuckle", "middle_proximal", "middle_middle", "middle_distal",
    "ring_knuckle", "ring_proximal", "ring_middle", "ring_distal",
    "little_knuckle", "little_proximal", "little_middle", "little_distal",
)
NUM_PARTS = len(PART_NAMES) - 1  # 20 hand parts, not hand excluded
NUM_LABELS = len(PART_NAMES)  # 21 symbols, not hand included

# The part(s) each joint belongs to: a finger's "mid" joint (PIP) sits between
# its proximal and middle phalanges, the thumb's mid (IP) between proximal and
# distal, the thumb root (MCP) between metacarpal and proximal; the wrist points
# and the palm centre lie on the palm.
JOINT_PARTS: tuple[tuple[int, ...], ...] = (
    (20,), (18, 19),
    (16,), (14, 15),
    (12,), (10, 11),
    (8,), (6, 7),
    (4,), (3, 4), (2, 3),
    (1,), (1,), (1,),
)

# Bones of the 14-joint skeleton, for drawing.
SKELETON_EDGES = (
    (0, 1), (1, 13), (2, 3), (3, 13), (4, 5), (5, 13), (6, 7), (7, 13),
    (8, 9), (9, 10), (10, 13), (11, 13), (12, 13),
)

# A fixed colour per part (RGB, 0-255): fingers in one hue family each, darker
# towards the palm, so pictures read the same everywhere.
PART_COLORS = (
    (0, 0, 0), (200, 200, 200),
    (120, 40, 0), (200, 80, 0), (255, 150, 40),
    (0, 60, 120), (0, 100, 200), (40, 150, 255), (140, 200, 255),
    (0, 100, 0), (0, 160, 0), (60, 220, 60), (160, 255, 160),
    (100, 0, 100), (160, 0, 160), (220, 60, 220), (255, 160, 255),
    (120, 100, 0), (180, 160, 0), (230, 210, 30), (255, 240, 130),
)
