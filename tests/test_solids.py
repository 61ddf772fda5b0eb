"""The hand and its forearms as labelled solids: parts, the sensor stub, the synthetic arm and its prior."""

import numpy as np
import pytest

from keras_hpe.data.hand_model import sample_hands
from keras_hpe.data.skeleton import NUM_PARTS
from keras_hpe.data.solids import ArmPrior, hand_solids, sample_arms
from keras_hpe.errors import UserError


def test_solids_cover_all_parts_and_forearm_is_unlabelled():
    hands = sample_hands(np.random.default_rng(5), 3)
    solids = hand_solids(hands)
    labels = np.concatenate([solids.capsule_labels, solids.ellipsoid_labels])
    assert set(labels.tolist()) == set(range(1, NUM_PARTS + 1))
    assert solids.capsule_a.shape == (3, len(solids.capsule_labels), 3)
    with_arm = hand_solids(hands, forearm=True)
    assert len(with_arm.ellipsoid_labels) > len(solids.ellipsoid_labels)
    assert np.all(with_arm.ellipsoid_labels[len(solids.ellipsoid_labels):] == 0)
    # Tip joints lie inside their distal capsule (the capsule stops half a radius short of the tip).
    one = hand_solids(hands[0])
    tip_capsule = list(one.capsule_labels).index(20)
    distance = np.linalg.norm(one.capsule_b[tip_capsule] - hands[0].joints_xyz[0])
    assert distance < one.capsule_radius_mm[tip_capsule]


def test_wrist_angles_fill_the_range_of_motion_and_no_more():
    prior = ArmPrior()
    arms = sample_arms(np.random.default_rng(9), np.ones(4000), prior)
    flexion, deviation = arms.flexion_deg, arms.deviation_deg
    assert flexion.max() <= prior.flexion_deg and flexion.min() >= -prior.extension_deg
    assert deviation.max() <= prior.radial_deviation_deg and deviation.min() >= -prior.ulnar_deviation_deg
    assert flexion.max() > 0.95 * prior.flexion_deg and flexion.min() < -0.95 * prior.extension_deg
    assert deviation.max() > 0.95 * prior.radial_deviation_deg and deviation.min() < -0.95 * prior.ulnar_deviation_deg
    # Flexion and deviation limit each other: inside the ellipse of the four limits, which the samples fill.
    f = flexion / np.where(flexion > 0, prior.flexion_deg, prior.extension_deg)
    d = deviation / np.where(deviation > 0, prior.radial_deviation_deg, prior.ulnar_deviation_deg)
    assert np.all(f**2 + d**2 <= 1 + 1e-9)
    assert np.mean(f**2 + d**2 > 0.5) == pytest.approx(0.5, abs=0.03)  # uniform in the ellipse's area


def test_arm_shapes_scale_with_the_hand():
    prior = ArmPrior()
    scale = np.random.default_rng(10).uniform(0.8, 1.2, 2000)
    arms = sample_arms(np.random.default_rng(11), scale, prior)
    for name, ratio in (("wrist", prior.wrist_thickness_ratio), ("elbow", prior.elbow_thickness_ratio)):
        width = getattr(arms, f"{name}_width_mm") / scale
        low, high = getattr(prior, f"{name}_width_mm")
        assert np.all((width >= low) & (width <= high))
        thickness = getattr(arms, f"{name}_thickness_mm") / getattr(arms, f"{name}_width_mm")
        assert np.all((thickness >= ratio[0]) & (thickness <= ratio[1]))
    length = arms.length_mm / scale
    assert np.all((length >= prior.length_mm[0]) & (length <= prior.length_mm[1]))
    assert np.all(arms.elbow_width_mm > arms.wrist_width_mm)  # the forearm widens towards the elbow


def test_arm_is_attached_at_the_wrist_at_its_wrist_angles():
    """In the hand's frame the forearm leaves the wrist centre in the direction its wrist angles give."""
    rng = np.random.default_rng(12)
    hands = sample_hands(rng, 200)
    arms = sample_arms(rng, hands.scale)
    plain, solids = hand_solids(hands), hand_solids(hands, arm=arms)
    np.testing.assert_array_equal(solids.capsule_a, plain.capsule_a)  # the arm moves no part of the hand
    np.testing.assert_array_equal(solids.ellipsoid_center, plain.ellipsoid_center)
    assert solids.tapered_labels.tolist() == [0, 0] and plain.tapered_labels.size == 0

    def in_hand_frame(points):
        return np.einsum("nji,nkj->nki", hands.rotation, points - hands.translation_mm[:, None])

    start, end = in_hand_frame(solids.tapered_a).mean(axis=1), in_hand_frame(solids.tapered_b).mean(axis=1)
    axis = (end - start) / np.linalg.norm(end - start, axis=-1, keepdims=True)
    # Flexion turns the forearm towards the palm side (-z), radial deviation towards the thumb (+x).
    np.testing.assert_allclose(np.degrees(np.arcsin(-axis[:, 2])), arms.flexion_deg, atol=1e-9)
    np.testing.assert_allclose(np.degrees(np.arctan2(axis[:, 0], -axis[:, 1])), arms.deviation_deg, atol=1e-9)
    assert np.all(axis[:, 1] < -0.2)  # always away from the fingers: never through the palm
    # The wrist caps start half a radius into the heel of the palm; the elbow end lies `length` from the wrist.
    wrist_radius = solids.tapered_radius_a_mm[:, 0]
    np.testing.assert_allclose(np.einsum("ni,ni->n", start, axis), 0.5 * wrist_radius, rtol=1e-9)
    elbow_tip = np.einsum("ni,ni->n", end, axis) + solids.tapered_radius_b_mm[:, 0]
    np.testing.assert_allclose(elbow_tip, arms.length_mm, rtol=1e-9)
    # Width across the two capsules, thickness their diameter.
    width = np.linalg.norm(solids.tapered_a[:, 1] - solids.tapered_a[:, 0], axis=-1) + 2 * wrist_radius
    np.testing.assert_allclose(width, arms.wrist_width_mm, rtol=1e-9)
    np.testing.assert_allclose(2 * wrist_radius, arms.wrist_thickness_mm, rtol=1e-9)


def test_bad_arm_priors_raise_user_error():
    with pytest.raises(UserError, match="length_mm"):
        ArmPrior(length_mm=(290.0, 230.0))
    with pytest.raises(UserError, match="thickness_ratio"):
        ArmPrior(wrist_thickness_ratio=(0.7, 1.2))
    with pytest.raises(UserError, match="flexion_deg"):
        ArmPrior(flexion_deg=95.0)
    hands = sample_hands(np.random.default_rng(0), 2)
    with pytest.raises(UserError, match="not both"):
        hand_solids(hands, forearm=True, arm=sample_arms(np.random.default_rng(0), hands.scale))
