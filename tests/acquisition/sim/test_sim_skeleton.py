"""The twin's jump: shapes, determinism, exact events, physics consistency and smoothness."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from acquisition.sim.skeleton import (
    BODY_PARTS,
    GRAVITY_MM_PER_S2,
    PHASES,
    SKELETON_EDGES,
    JumpModel,
    JumpParameters,
)

PART = {name: i for i, name in enumerate(BODY_PARTS)}

PARAMETER_SETS = [
    JumpParameters(),
    JumpParameters(gap_mm=40.0, height_mm=15.0),
    JumpParameters(gap_mm=150.0, height_mm=50.0, push_off_duration_s=0.06),
    JumpParameters(crouch_onset_s=0.0, crouch_duration_s=0.1, push_off_duration_s=0.12),
    JumpParameters(body_mass_g=32.0, height_mm=8.0, gap_mm=60.0),
]


@pytest.fixture(scope="module")
def model() -> JumpModel:
    return JumpModel(JumpParameters())


def test_body_parts_and_edges() -> None:
    assert BODY_PARTS == (
        "nose", "eye", "forepaw", "iliac_crest", "hip", "knee", "ankle", "mtp", "toe", "tail_base",
    )  # fmt: skip
    named = {part for edge in SKELETON_EDGES for part in edge}
    assert named == set(BODY_PARTS), "every part is on the skeleton, and only parts are"
    assert len(set(SKELETON_EDGES)) == len(SKELETON_EDGES)


def test_parameter_bounds_are_in_metadata_and_enforced() -> None:
    bounds = {spec.name: dict(spec.metadata) for spec in dataclasses.fields(JumpParameters)}
    assert bounds["crouch_onset_s"] == {"ge": 0.0}
    for name in ("crouch_duration_s", "push_off_duration_s", "gap_mm", "height_mm", "body_mass_g"):
        assert bounds[name] == {"gt": 0.0}
    with pytest.raises(ValueError, match="crouch_onset_s"):
        JumpParameters(crouch_onset_s=-0.1)
    JumpParameters(crouch_onset_s=0.0)
    with pytest.raises(ValueError, match="height_mm"):
        JumpParameters(height_mm=0.0)
    with pytest.raises(ValueError, match="gap_mm"):
        JumpParameters(gap_mm=float("nan"))
    with pytest.raises(TypeError):
        JumpModel({"gap_mm": 80.0})  # type: ignore[arg-type]


def test_shapes_dtypes_and_input_checks(model: JumpModel) -> None:
    t_s = np.linspace(-1.0, 4.0, 57)
    assert model.points_mm(t_s).shape == (57, 10, 3)
    assert model.points_mm(t_s).dtype == np.float64
    assert model.centre_of_mass_mm(t_s).shape == (57, 3)
    phases = model.phase_at(t_s)
    assert phases.shape == (57,)
    assert set(phases.tolist()) <= set(range(len(PHASES)))
    assert model.points_mm(np.array([])).shape == (0, 10, 3)
    with pytest.raises(ValueError):
        model.points_mm(np.zeros((2, 2)))
    with pytest.raises(ValueError):
        model.points_mm(np.array([0.0, np.nan]))


def test_deterministic() -> None:
    t_s = np.linspace(-0.5, 3.0, 701)
    first = JumpModel(JumpParameters()).points_mm(t_s)
    second = JumpModel(JumpParameters()).points_mm(t_s)
    assert np.array_equal(first, second)


def test_still_before_pulse_zero_and_after_settling(model: JumpModel) -> None:
    events = model.true_events()
    before = model.points_mm(np.array([-5.0, -0.001, 0.0, events["crouch_onset_s"] - 1e-6]))
    assert np.array_equal(before[0], before[1]) and np.array_equal(before[0], before[3])
    after = model.points_mm(np.array([events["settled_s"], events["settled_s"] + 100.0]))
    assert np.array_equal(after[0], after[1])
    # The mouse ends in the same still pose, moved along the jump only.
    shift = after[0] - before[0]
    assert np.allclose(shift, shift[0], atol=1e-9)
    assert shift[0, 1] == pytest.approx(0.0, abs=1e-9) and shift[0, 2] == pytest.approx(
        0.0, abs=1e-9
    )
    assert np.all(model.phase_at(np.array([-1.0, 0.0, events["settled_s"] + 1.0])) == 0)


def test_paws_stand_on_the_platforms_when_still(model: JumpModel) -> None:
    gap_mm = model.params.gap_mm
    start, end = model.points_mm(np.array([0.0, 10.0]))
    for pose, on_platform in ((start, lambda x: x <= 0), (end, lambda x: x >= gap_mm)):
        for paw in ("forepaw", "toe"):
            assert pose[PART[paw], 2] == pytest.approx(0.0, abs=1e-9)
            assert on_platform(pose[PART[paw], 0])
        assert np.all(pose[:, 2] >= 0.0)


@pytest.mark.parametrize(
    "params", PARAMETER_SETS, ids=lambda p: f"gap{p.gap_mm:g}_h{p.height_mm:g}"
)
def test_contact_events_are_exact(params: JumpParameters) -> None:
    model = JumpModel(params)
    events = model.true_events()
    takeoff_s, landing_s = events["takeoff_s"], events["landing_s"]
    assert events["flight_time_s"] == pytest.approx(landing_s - takeoff_s, abs=1e-12)

    stance = np.linspace(-0.2, takeoff_s, 4001)
    toe_stance = model.points_mm(stance)[:, PART["toe"]]
    assert np.all(toe_stance[:, 2] == 0.0), "the toe is on the take-off platform until take-off"
    assert np.all(toe_stance[:, 0] <= 0.0)

    # Strictly between take-off and landing nothing touches a platform's plane.
    airborne = np.linspace(takeoff_s, landing_s, 6001)[1:-1]
    points = model.points_mm(airborne)
    assert points[:, :, 2].min() > 0.0
    # The toe is in the air from take-off until it touches down after the forepaw.
    swing = np.linspace(takeoff_s, events["hind_touchdown_s"], 4001)[1:-1]
    assert model.points_mm(swing)[:, PART["toe"], 2].min() > 0.0

    landing_pose = model.points_mm(np.array([landing_s]))[0]
    assert landing_pose[PART["forepaw"], 2] == pytest.approx(0.0, abs=1e-9)
    assert landing_pose[PART["forepaw"], 0] >= params.gap_mm
    assert landing_pose[PART["toe"], 2] > 0.0
    touchdown_pose = model.points_mm(np.array([events["hind_touchdown_s"]]))[0]
    assert touchdown_pose[PART["toe"], 2] == pytest.approx(0.0, abs=1e-9)
    assert touchdown_pose[PART["toe"], 0] >= params.gap_mm


@pytest.mark.parametrize(
    "params", PARAMETER_SETS, ids=lambda p: f"gap{p.gap_mm:g}_h{p.height_mm:g}"
)
def test_flight_is_ballistic_with_the_requested_apex(params: JumpParameters) -> None:
    model = JumpModel(params)
    events = model.true_events()
    takeoff_s, landing_s = events["takeoff_s"], events["landing_s"]
    com_takeoff, com_landing = model.centre_of_mass_mm(np.array([takeoff_s, landing_s]))
    flight = np.linspace(takeoff_s, landing_s, 20001)
    com = model.centre_of_mass_mm(flight)
    apex_mm = com[:, 2].max() - com_takeoff[2]
    assert apex_mm == pytest.approx(params.height_mm, abs=0.1)
    assert events["jump_height_mm"] == pytest.approx(apex_mm, abs=0.1)
    assert com_landing[2] == pytest.approx(com_takeoff[2], abs=1e-6)
    assert events["jump_distance_mm"] == pytest.approx(com_landing[0] - com_takeoff[0], abs=1e-6)
    # Constant horizontal speed, vertical acceleration -g.
    dt_s = flight[1] - flight[0]
    vertical_accel = np.diff(com[:, 2], 2) / dt_s**2
    assert np.allclose(vertical_accel, -GRAVITY_MM_PER_S2, rtol=1e-3)
    assert np.allclose(np.diff(com[:, 0], 2), 0.0, atol=1e-9)
    # Take-off speed from the trajectory itself.
    h = 1e-6
    after = model.centre_of_mass_mm(np.array([takeoff_s, takeoff_s + h]))
    speed = np.linalg.norm(after[1] - after[0]) / h
    assert events["takeoff_speed_mm_per_s"] == pytest.approx(speed, rel=1e-3)


def test_phase_codes_follow_the_events(model: JumpModel) -> None:
    events = model.true_events()
    times = {
        "still": events["crouch_onset_s"] - 0.1,
        "crouch": events["crouch_onset_s"] + 0.01,
        "push_off": events["takeoff_s"] - 0.01,
        "flight": events["takeoff_s"] + 0.01,
        "landing": events["landing_s"] + 0.01,
    }
    codes = model.phase_at(np.array(list(times.values())))
    assert [PHASES[code] for code in codes] == list(times)
    at_events = model.phase_at(np.array([events["takeoff_s"], events["landing_s"]]))
    assert [PHASES[code] for code in at_events] == ["flight", "landing"]


def test_crouch_lowers_the_body(model: JumpModel) -> None:
    events = model.true_events()
    standing, crouched = model.centre_of_mass_mm(np.array([0.0, events["push_off_onset_s"] - 1e-3]))
    drop_mm = standing[2] - crouched[2]
    assert 8.0 <= drop_mm <= 12.0
    assert crouched[0] < standing[0], "the crouch shifts the body back a little"


@pytest.mark.parametrize(
    "params", PARAMETER_SETS, ids=lambda p: f"gap{p.gap_mm:g}_h{p.height_mm:g}"
)
def test_forces_follow_the_centre_of_mass(params: JumpParameters) -> None:
    model = JumpModel(params)
    events = model.true_events()
    weight_n = params.body_mass_g * 1e-3 * 9.81
    assert events["body_weight_n"] == pytest.approx(weight_n)
    t_s = np.linspace(-0.5, events["settled_s"] + 0.5, 40001)
    forces = model.platform_forces_n(t_s)
    assert forces.shape == (t_s.size, 2)
    assert np.all(forces >= -1e-12)
    still = t_s < events["crouch_onset_s"]
    assert np.allclose(forces[still, 0], weight_n) and np.all(forces[still, 1] == 0.0)
    assert np.all(forces[t_s >= events["takeoff_s"], 0] == 0.0)
    assert np.all(forces[t_s < events["landing_s"], 1] == 0.0)
    assert np.allclose(forces[t_s >= events["settled_s"], 1], weight_n)
    # The force falls continuously to 0 at take-off and starts from 0 at landing.
    edges = model.platform_forces_n(
        np.array([events["takeoff_s"] - 1e-6, events["landing_s"] + 1e-6])
    )
    assert edges[0, 0] < 0.01 * weight_n and edges[1, 1] < 0.01 * weight_n
    peak_n = forces[:, 0].max()
    assert events["peak_push_off_force_n"] == pytest.approx(peak_n, rel=1e-3)
    # Impulse-momentum: the push-off's extra impulse equals m * v_z at take-off.
    push = (t_s >= events["push_off_onset_s"]) & (t_s < events["takeoff_s"])
    dt_s = t_s[1] - t_s[0]
    impulse_ns = np.sum(forces[push, 0] - weight_n) * dt_s
    vertical_speed_m_per_s = np.sqrt(2 * 9.81 * params.height_mm * 1e-3)
    assert impulse_ns == pytest.approx(params.body_mass_g * 1e-3 * vertical_speed_m_per_s, rel=0.02)


def test_default_forces_are_plausible(model: JumpModel) -> None:
    events = model.true_events()
    ratio = events["peak_push_off_force_n"] / events["body_weight_n"]
    print(f"push-off peak {ratio:.2f} x body weight, landing peak "
          f"{events['peak_landing_force_n'] / events['body_weight_n']:.2f} x")  # fmt: skip
    assert 3.0 <= ratio <= 4.0
    crouch = np.linspace(events["crouch_onset_s"], events["push_off_onset_s"], 2001)
    crouch_force = model.platform_forces_n(crouch)[:, 0] / events["body_weight_n"]
    assert crouch_force.min() < 0.97 and crouch_force.max() > 1.03, "a dip then a rise"


def test_centre_of_mass_acceleration_matches_its_positions(model: JumpModel) -> None:
    events = model.true_events()
    rng = np.random.default_rng(3)
    times = rng.uniform(events["crouch_onset_s"], events["settled_s"], 300)
    h = 1e-4
    position, velocity, acceleration = model.centre_of_mass_state(times)
    around = model.centre_of_mass_mm(np.concatenate((times - h, times + h)))
    before, after = around[: times.size], around[times.size :]
    boundaries = np.array([events[k] for k in ("push_off_onset_s", "takeoff_s", "landing_s")])
    smooth = np.min(np.abs(times[:, None] - boundaries[None, :]), axis=1) > 2 * h
    finite_velocity = (after - before) / (2 * h)
    finite_acceleration = (after - 2 * position + before) / h**2
    assert np.allclose(finite_velocity[smooth], velocity[smooth], atol=0.05)
    assert np.allclose(finite_acceleration[smooth], acceleration[smooth], atol=5.0, rtol=1e-3)


@pytest.mark.parametrize(
    "params", PARAMETER_SETS[:3], ids=lambda p: f"gap{p.gap_mm:g}_h{p.height_mm:g}"
)
def test_every_part_moves_c1(params: JumpParameters) -> None:
    """No velocity jumps: around every event, velocity changes per 1 us step stay tiny."""
    model = JumpModel(params)
    events = model.true_events()
    step_s = 1e-6
    for name in ("crouch_onset_s", "push_off_onset_s", "takeoff_s", "landing_s",
                 "hind_touchdown_s", "settled_s"):  # fmt: skip
        t_s = events[name] + np.arange(-2000, 2000) * step_s
        velocity = np.diff(model.points_mm(t_s), axis=0) / step_s
        jump = np.abs(np.diff(velocity, axis=0)).max()
        # 1 mm/s per microsecond is 1e6 mm/s^2 (100 g); a kink would be a step of many mm/s.
        assert jump < 1.0, f"velocity jumps by {jump:.2f} mm/s at {name}"


def test_all_parts_stay_above_the_platforms(model: JumpModel) -> None:
    t_s = np.linspace(-0.5, 4.0, 9001)
    points = model.points_mm(t_s)
    gap = model.params.gap_mm
    over_platform = (points[:, :, 0] <= 0.0) | (points[:, :, 0] >= gap)
    assert np.all(points[:, :, 2][over_platform] >= -1e-9)
