"""The digital twin's mouse: ten labelled body parts in 3D, jumping from one platform to another.

World frame, in mm: x along the jump, y lateral (+y is the mouse's left side, where the labelled
limbs are), z up. The take-off platform's top is the plane z = 0 for x <= 0, the landing platform's
top is z = 0 for x >= ``gap_mm``; between them is the gap. The mouse faces +x.

Twin time ``t_s`` is in seconds from trigger pulse 0. The mouse stands still, crouches, pushes off,
flies (its centre of mass on a parabola, g = 9810 mm/s^2), lands and settles into the same still
pose on the landing platform. Positions are C1 in time everywhere (the centre of mass is C1, and C2
except at the take-off and landing impacts' force changes), so finite-difference velocities of the
body parts are meaningful.

The model is built from a few pieces, each simple and exact:

- the centre of mass (the skeleton's root): piecewise closed forms whose second derivative is the
  vertical ground-reaction force divided by the body mass, so platform forces follow from it;
- the trunk (nose, eye, iliac crest, hip, tail base and the unlabelled shoulder): a rigid shape
  about the centre of mass, pitched nose-up for the push-off and nose-down for the landing;
- the paws (toe, forepaw): planted on a platform, or carried by the limb's root (hip, shoulder) in
  between, joined by cubic Hermite segments whose velocity is zero at each contact;
- the rest of the hind limb: the foot (toe -> MTP -> ankle) at keyframed angles, the knee by
  two-link inverse kinematics between hip and ankle.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BODY_PARTS: tuple[str, ...] = (
    "nose",
    "eye",
    "forepaw",
    "iliac_crest",
    "hip",
    "knee",
    "ankle",
    "mtp",
    "toe",
    "tail_base",
)

# Lines drawn between parts. The forelimb hangs from the shoulder, which is not labelled; the eye
# is the nearest labelled part, so the forelimb edge is drawn from it.
SKELETON_EDGES: tuple[tuple[str, str], ...] = (
    ("nose", "eye"),
    ("eye", "iliac_crest"),
    ("iliac_crest", "tail_base"),
    ("iliac_crest", "hip"),
    ("hip", "knee"),
    ("knee", "ankle"),
    ("ankle", "mtp"),
    ("mtp", "toe"),
    ("eye", "forepaw"),
)

# Phase codes returned by JumpModel.phase_at are indices into this tuple.
PHASES: tuple[str, ...] = ("still", "crouch", "push_off", "flight", "landing")
PHASE_STILL, PHASE_CROUCH, PHASE_PUSH_OFF, PHASE_FLIGHT, PHASE_LANDING = range(len(PHASES))

GRAVITY_MM_PER_S2 = 9810.0

# --- the mouse's geometry ------------------------------------------------------------------------
# Trunk points relative to the centre of mass in the trunk frame (x forward, y left, z up), mm.
_TRUNK_OFFSETS_MM: dict[str, tuple[float, float, float]] = {
    "nose": (40.0, 0.0, 3.0),
    "eye": (29.0, 6.0, 9.0),
    "iliac_crest": (-25.0, 6.0, 14.0),
    "hip": (-33.0, 8.0, 7.0),
    "tail_base": (-48.0, 0.0, 4.0),
}
SHOULDER_OFFSET_MM: tuple[float, float, float] = (17.0, 7.0, 3.0)
# Centre of mass above the platform when standing still.
_STANDING_COM_HEIGHT_MM = 20.0
# Standing paws relative to the centre of mass (world-aligned; z puts them on the platform).
_STANDING_FOREPAW_MM = (16.0, 7.0, -_STANDING_COM_HEIGHT_MM)
_STANDING_TOE_MM = (-40.0, 9.0, -_STANDING_COM_HEIGHT_MM)
# Where the standing mouse's forepaw is, behind the take-off platform's edge.
_FOREPAW_BEHIND_EDGE_MM = 5.0
# The hind paws land at least this far past the landing platform's edge.
_TOE_PAST_EDGE_MM = 3.0
# Hind limb segments: femur (hip-knee), tibia (knee-ankle), metatarsus (ankle-MTP), toes (MTP-toe).
FEMUR_MM = 15.0
TIBIA_MM = 18.0
METATARSUS_MM = 12.0
TOES_MM = 8.0
_LIMB_Y_MM = 9.0
# The knee's inverse kinematics eases the hip-ankle distance over this range near its limits.
_KNEE_EASE_MM = 4.0

# --- the jump's shape ----------------------------------------------------------------------------
_CROUCH_DROP_MM = 8.0
_CROUCH_BACK_MM = 4.0
# The crouch lowers the body over this share of the crouch phase, then holds still, loaded.
_CROUCH_MOVING_SHARE = 0.6
# ...but never with a vertical acceleration above this share of g.
_CROUCH_MAX_G = 0.5
# Peak second derivative of the quintic smoothstep on [0, 1]: 10 / sqrt(3).
_SMOOTHSTEP_PEAK_ACCEL = 10.0 / math.sqrt(3.0)
# Trunk pitch (nose up positive), degrees, at the phase boundaries.
_PITCH_CROUCH_DEG = 5.0
_PITCH_TAKEOFF_DEG = 5.0
_PITCH_LANDING_DEG = -22.0
_PITCH_SETTLE_S = 0.15
# After the forepaws touch down, the body slides this far forward over them while stopping.
_LANDING_SLIDE_MM = 12.0
# The hind paws touch down this long after the forepaws.
_HIND_TOUCHDOWN_DELAY_S = 0.035
# Landing: the vertical deceleration takes this long (a range is tried; see _landing_force_plan).
_LANDING_DURATIONS_S = (0.15, 0.12, 0.2, 0.1, 0.25, 0.3, 0.08)
# Sharpness of the landing impact (exponent of the impact term of the landing force).
_IMPACT_SHARPNESS = 12
# Paw lift-off and touchdown segments, and the tucked paws during flight (relative to limb root).
_PAW_LIFT_S = 0.03
_PAW_TOUCHDOWN_S = 0.02
_PAW_CLEARANCE_MM = 4.0
_FOREPAW_LIFT_SHARE = 0.3  # of the push-off, when the forepaws leave the platform
_FOREPAW_TUCK_MM = (6.0, 0.0, -16.0)
_TOE_TUCK_MM = (-12.0, 1.0, -28.0)
# Foot angles (degrees above the backward horizontal) of toe->MTP and MTP->ankle.
_FOOT_STILL_DEG = (30.0, 50.0)
_FOOT_CROUCH_DEG = (25.0, 45.0)
_FOOT_TAKEOFF_DEG = (115.0, 125.0)
_FOOT_TUCK_DEG = (45.0, 75.0)
_FOOT_TOUCHDOWN_DEG = (40.0, 70.0)


def _bounds(**bounds: float) -> dict[str, Any]:
    return dict(bounds)


@dataclass(frozen=True)
class JumpParameters:
    """The jump, as the rig's ``[sim.jump]`` table gives it; bounds are in the field metadata."""

    crouch_onset_s: float = field(default=1.5, metadata=_bounds(ge=0.0))
    crouch_duration_s: float = field(default=0.35, metadata=_bounds(gt=0.0))
    push_off_duration_s: float = field(default=0.08, metadata=_bounds(gt=0.0))
    gap_mm: float = field(default=80.0, metadata=_bounds(gt=0.0))
    # Apex height of the centre of mass above its height at take-off.
    height_mm: float = field(default=30.0, metadata=_bounds(gt=0.0))
    body_mass_g: float = field(default=25.0, metadata=_bounds(gt=0.0))

    def __post_init__(self) -> None:
        checks = {"gt": float.__gt__, "ge": float.__ge__, "lt": float.__lt__, "le": float.__le__}
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"JumpParameters.{spec.name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"JumpParameters.{spec.name} must be finite, got {value!r}")
            for key, holds in checks.items():
                if key in spec.metadata and not holds(float(value), float(spec.metadata[key])):
                    raise ValueError(
                        f"JumpParameters.{spec.name} must be {key} {spec.metadata[key]}, "
                        f"got {value!r}"
                    )


# --- small exact curves --------------------------------------------------------------------------


def _smoothstep(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quintic smoothstep of u clipped to [0, 1], and its derivative in u; both (T,)."""
    u = np.clip(u, 0.0, 1.0)
    value = u * u * u * (10.0 + u * (-15.0 + 6.0 * u))
    rate = 30.0 * u * u * (1.0 - u) * (1.0 - u)
    return value, rate


class _Keyframes:
    """Values (K, D) at increasing times (K,), eased between keys with zero rate at every key."""

    def __init__(self, times_s: list[float], values: list[tuple[float, ...]]) -> None:
        self.times_s = np.asarray(times_s, dtype=np.float64)
        self.values = np.asarray(values, dtype=np.float64)
        if np.any(np.diff(self.times_s) <= 0):
            raise ValueError(f"keyframe times must increase: {self.times_s}")

    def at(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Value (T, D) and rate per second (T, D) at times (T,)."""
        segment = np.clip(
            np.searchsorted(self.times_s, t_s, side="right") - 1, 0, len(self.times_s) - 2
        )
        start_s = self.times_s[segment]
        span_s = self.times_s[segment + 1] - start_s
        ease, ease_rate = _smoothstep((t_s - start_s) / span_s)
        step = self.values[segment + 1] - self.values[segment]
        value = self.values[segment] + ease[:, None] * step
        rate = (ease_rate / span_s)[:, None] * step
        return value, rate


def _hermite(
    s: np.ndarray, p0: np.ndarray, v0: np.ndarray, p1: np.ndarray, v1: np.ndarray, span_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cubic Hermite position (T, 3) and velocity (T, 3) at s in [0, 1] (T,); v in units per s."""
    s = s[:, None]
    s2, s3 = s * s, s * s * s
    h00, h10, h01, h11 = 2 * s3 - 3 * s2 + 1, s3 - 2 * s2 + s, -2 * s3 + 3 * s2, s3 - s2
    d00, d10, d01, d11 = 6 * s2 - 6 * s, 3 * s2 - 4 * s + 1, -6 * s2 + 6 * s, 3 * s2 - 2 * s
    position = h00 * p0 + h10 * span_s * v0 + h01 * p1 + h11 * span_s * v1
    velocity = (d00 * p0 + d10 * span_s * v0 + d01 * p1 + d11 * span_s * v1) / span_s
    return position, velocity


def _quintic_to_rest(p0: float, v0: float, a0: float, p1: float, span_s: float) -> np.ndarray:
    """Polynomial coefficients (6,), highest power first, in seconds from the start: from
    position, velocity, acceleration (p0, v0, a0) to rest at p1 after span_s."""
    step = p1 - p0
    span2, span3 = span_s * span_s, span_s * span_s * span_s
    c3 = (20 * step - 12 * v0 * span_s - 3 * a0 * span2) / (2 * span3)
    c4 = (-30 * step + 16 * v0 * span_s + 3 * a0 * span2) / (2 * span3 * span_s)
    c5 = (12 * step - 6 * v0 * span_s - a0 * span2) / (2 * span3 * span2)
    return np.array([c5, c4, c3, a0 / 2, v0, p0])


def _rotate_pitch(offsets: np.ndarray, pitch_rad: np.ndarray) -> np.ndarray:
    """Offsets (P, 3) in the trunk frame -> world-aligned (T, P, 3), pitched by (T,) radians
    about the y axis, nose up for positive pitch."""
    cos, sin = np.cos(pitch_rad)[:, None], np.sin(pitch_rad)[:, None]
    x, y, z = offsets[:, 0][None, :], offsets[:, 1][None, :], offsets[:, 2][None, :]
    return np.stack(
        (
            x * cos - z * sin,
            np.broadcast_to(y, (pitch_rad.size, offsets.shape[0])),
            x * sin + z * cos,
        ),
        axis=-1,
    )


def _rotate_pitch_rate(
    offsets: np.ndarray, pitch_rad: np.ndarray, pitch_rate: np.ndarray
) -> np.ndarray:
    """Time derivative (T, P, 3) of _rotate_pitch for a pitch rate (T,) in rad/s."""
    cos, sin = np.cos(pitch_rad)[:, None], np.sin(pitch_rad)[:, None]
    rate = pitch_rate[:, None]
    x, z = offsets[:, 0][None, :], offsets[:, 2][None, :]
    zeros = np.zeros((pitch_rad.size, offsets.shape[0]))
    return np.stack(((-x * sin - z * cos) * rate, zeros, (x * cos - z * sin) * rate), axis=-1)


# --- push-off and landing force shapes -----------------------------------------------------------
# Push-off vertical force in body weights, u = time / push-off duration in [0, 1]:
#   f(u) = 1 - u^3 + A u^3 (1 - u)
# It starts at body weight (the loaded crouch), peaks late (u ~ 0.7) and falls to exactly 0 at
# take-off, where the centre of mass's acceleration becomes -g without a jump. A is solved so
# that the vertical take-off speed gives the requested apex height. The horizontal push has the
# shape u^3 (1 - u): zero at both ends.


def _push_off_gain(vertical_speed_mm_per_s: float, push_off_s: float) -> float:
    # Integral of f - 1 over u is A/20 - 1/4; times g * push_off_s it must equal the speed.
    return 20.0 * (vertical_speed_mm_per_s / (GRAVITY_MM_PER_S2 * push_off_s) + 0.25)


@dataclass(frozen=True)
class _LandingForce:
    """Vertical landing force in body weights, u = time since touchdown / span_s in [0, 1]:
    f(u) = 1 - (1 - u)^3 + impact * u (1 - u)^n + settle * u^2 (1 - u)^3.
    Zero at touchdown (continuous with flight), an impact peak a few ms later, body weight at
    u = 1 with zero slope. impact and settle are solved so that the centre of mass stops exactly
    at the standing height."""

    span_s: float
    impact: float
    settle: float

    def body_weights(self, u: np.ndarray) -> np.ndarray:
        u = np.clip(u, 0.0, 1.0)
        rest = 1.0 - u
        return (
            1.0
            - rest**3
            + self.impact * u * rest**_IMPACT_SHARPNESS
            + self.settle * u * u * rest**3
        )


def _beta(a: int, b: int) -> float:
    """Integral over [0, 1] of u^a (1 - u)^b."""
    return math.factorial(a) * math.factorial(b) / math.factorial(a + b + 1)


def _landing_force_plan(drop_mm: float, vertical_speed_mm_per_s: float) -> _LandingForce:
    """Solve the landing force for a centre of mass that arrives moving down at
    ``vertical_speed_mm_per_s`` and must come to rest ``drop_mm`` lower (negative: higher)."""
    n = _IMPACT_SHARPNESS
    u = np.linspace(0.0, 1.0, 4001)
    for span_s in _LANDING_DURATIONS_S:
        # Integrals of each term of f - 1 (first) and of its running integral (second), in u.
        # int_0^1 int_0^u g(w) dw du = int_0^1 (1 - w) g(w) dw.
        base = (-_beta(0, 3), -_beta(0, 4))
        impact = (_beta(1, n), _beta(1, n + 1))
        settle = (_beta(2, 3), _beta(2, 4))
        g_span2 = GRAVITY_MM_PER_S2 * span_s * span_s
        # Velocity: -v + g T I1 = 0; position: -drop - v T + g T^2 I2 = 0 (relative to start).
        rhs = np.array(
            [
                vertical_speed_mm_per_s / (GRAVITY_MM_PER_S2 * span_s) - base[0],
                (vertical_speed_mm_per_s * span_s - drop_mm) / g_span2 - base[1],
            ]
        )
        matrix = np.array([[impact[0], settle[0]], [impact[1], settle[1]]])
        impact_gain, settle_gain = np.linalg.solve(matrix, rhs)
        plan = _LandingForce(span_s, float(impact_gain), float(settle_gain))
        if impact_gain > 0 and np.all(plan.body_weights(u) >= 0.0):
            return plan
    raise ValueError(
        f"no plausible landing for a {drop_mm:.1f} mm drop at {vertical_speed_mm_per_s:.0f} mm/s"
    )


def _landing_position_coefficients(
    plan: _LandingForce, start_mm: float, speed_mm_per_s: float
) -> np.ndarray:
    """Polynomial (highest power first, in seconds since touchdown) of the landing height."""
    # z'' = g (f - 1); expand f - 1 as a polynomial in u, integrate twice, rescale to seconds.
    n = _IMPACT_SHARPNESS
    u_poly = np.polynomial.polynomial
    rest = np.array([1.0, -1.0])
    f_minus_1 = -u_poly.polypow(rest, 3)
    f_minus_1 = u_poly.polyadd(
        f_minus_1, plan.impact * u_poly.polymul([0.0, 1.0], u_poly.polypow(rest, n))
    )
    f_minus_1 = u_poly.polyadd(
        f_minus_1, plan.settle * u_poly.polymul([0.0, 0.0, 1.0], u_poly.polypow(rest, 3))
    )
    span = plan.span_s
    accel_u = GRAVITY_MM_PER_S2 * f_minus_1  # mm/s^2 as a function of u
    # Position(u) = start - v T u + T^2 * double integral of accel in u.
    double = u_poly.polyint(accel_u, 2) * span * span
    position_u = u_poly.polyadd(double, [start_mm, -speed_mm_per_s * span])
    # To seconds: u = tau / span.
    scale = span ** -np.arange(position_u.size, dtype=np.float64)
    return (position_u * scale)[::-1]


# --- the model -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PawPath:
    """A paw that is planted, swings carried by its limb root, and is planted again.

    Planted at ``start_mm`` until ``lift_s``; a Hermite swing to ``lift_end_mm`` (= root + first
    key) at ``keys.times_s[0]``; root + eased keys until ``keys.times_s[-1]``; a Hermite swing
    from ``descent_start_mm`` to ``end_mm`` at ``touchdown_s``, arriving at rest; planted at
    ``end_mm`` after. Swing ends move with the root's velocity, so the path is C1.
    """

    root: str
    start_mm: np.ndarray
    end_mm: np.ndarray
    lift_s: float
    touchdown_s: float
    keys: _Keyframes
    lift_end_mm: np.ndarray
    lift_end_velocity_mm_per_s: np.ndarray
    descent_start_mm: np.ndarray
    descent_start_velocity_mm_per_s: np.ndarray


class JumpModel:
    """One jump of the twin mouse, a pure function of time and the parameters.

    Events (seconds from trigger pulse 0), exact by construction:

    - ``crouch_onset_s``: the centre of mass starts to lower (``params.crouch_onset_s``).
    - ``push_off_onset_s``: the crouch ends and the push begins.
    - ``takeoff_s``: the last hind-paw part, the toe, leaves the take-off platform: the toe is at
      z = 0 up to and including this instant and z > 0 after it. The vertical force on the
      take-off platform falls continuously to exactly 0 at this instant and stays 0.
    - ``landing_s``: first contact with the landing platform: the forepaw reaches z = 0 (at
      x >= ``gap_mm``) at this instant; before it no part touches z = 0 since take-off. The
      centre of mass is then back at its take-off height (end of the ballistic flight), and the
      landing platform's force starts rising from 0.
    - ``hind_touchdown_s``: the toe reaches the landing platform.
    - ``settled_s``: from here on the mouse stands still in the standing pose.

    Phases: still (t < crouch_onset_s or t >= settled_s), crouch, push_off (until takeoff_s),
    flight (takeoff_s <= t < landing_s), landing (landing_s <= t < settled_s).
    """

    def __init__(self, params: JumpParameters) -> None:
        if not isinstance(params, JumpParameters):
            raise TypeError(f"JumpModel needs JumpParameters, got {type(params).__name__}")
        self.params = params
        self._trunk_names = tuple(_TRUNK_OFFSETS_MM)
        self._trunk_and_shoulder_offsets = np.array(
            [_TRUNK_OFFSETS_MM[name] for name in self._trunk_names] + [SHOULDER_OFFSET_MM]
        )
        self._root_offsets = {
            "hip": np.array([_TRUNK_OFFSETS_MM["hip"]]),
            "shoulder": np.array([SHOULDER_OFFSET_MM]),
        }
        self._plan_centre_of_mass()
        self._plan_pitch()
        self._plan_paws()
        self._plan_feet()
        self._events = self._compute_events()
        self._standing_points_mm = self._posed_points_mm(np.array([self.crouch_onset_s - 1.0]))[0]
        self._settled_points_mm = self._posed_points_mm(np.array([self.settled_s + 1.0]))[0]

    # --- planning (once) -------------------------------------------------------------------------

    def _plan_centre_of_mass(self) -> None:
        p = self.params
        g = GRAVITY_MM_PER_S2
        self.crouch_onset_s = p.crouch_onset_s
        # Lowering faster than a share of g would need the platform to pull the mouse down: a
        # quick crouch moves for longer, and a crouch too short for that is shallower.
        slowest_s = math.sqrt(_SMOOTHSTEP_PEAK_ACCEL * _CROUCH_DROP_MM / (_CROUCH_MAX_G * g))
        self.crouch_moving_s = min(
            p.crouch_duration_s, max(p.crouch_duration_s * _CROUCH_MOVING_SHARE, slowest_s)
        )
        crouch_depth = min(
            1.0,
            _CROUCH_MAX_G
            * g
            * self.crouch_moving_s**2
            / (_SMOOTHSTEP_PEAK_ACCEL * _CROUCH_DROP_MM),
        )
        self.push_off_onset_s = p.crouch_onset_s + p.crouch_duration_s
        self.takeoff_s = self.push_off_onset_s + p.push_off_duration_s
        self.vertical_speed_mm_per_s = math.sqrt(2.0 * g * p.height_mm)
        self.flight_time_s = 2.0 * self.vertical_speed_mm_per_s / g
        self.landing_s = self.takeoff_s + self.flight_time_s

        standing_x = -_FOREPAW_BEHIND_EDGE_MM - _STANDING_FOREPAW_MM[0]
        self.standing_com_mm = np.array([standing_x, 0.0, _STANDING_COM_HEIGHT_MM])
        self.crouched_com_mm = self.standing_com_mm + crouch_depth * np.array(
            [-_CROUCH_BACK_MM, 0.0, -_CROUCH_DROP_MM]
        )
        # The final standing pose is the first one shifted so that the toe is just past the edge.
        final_x = p.gap_mm + _TOE_PAST_EDGE_MM - _STANDING_TOE_MM[0]
        self.final_com_mm = np.array([final_x, 0.0, _STANDING_COM_HEIGHT_MM])
        landing_x = final_x - _LANDING_SLIDE_MM

        # Push-off: vertical acceleration g (f(u) - 1), horizontal A_x u^3 (1 - u); both integrate
        # to closed forms. The horizontal displacement during push-off is v_x T / 3.
        push_s = p.push_off_duration_s
        self.push_gain = _push_off_gain(self.vertical_speed_mm_per_s, push_s)
        self.horizontal_speed_mm_per_s = (landing_x - self.crouched_com_mm[0]) / (
            self.flight_time_s + push_s / 3.0
        )
        self.takeoff_com_mm = self.crouched_com_mm + np.array(
            [
                self.horizontal_speed_mm_per_s * push_s / 3.0,
                0.0,
                self.vertical_speed_mm_per_s * push_s / 3.0 + g * push_s * push_s / 30.0,
            ]
        )
        self.landing_com_mm = np.array([landing_x, 0.0, self.takeoff_com_mm[2]])

        drop_mm = self.takeoff_com_mm[2] - _STANDING_COM_HEIGHT_MM
        self.landing_force = _landing_force_plan(drop_mm, self.vertical_speed_mm_per_s)
        self.landing_z_poly = _landing_position_coefficients(
            self.landing_force, self.takeoff_com_mm[2], self.vertical_speed_mm_per_s
        )
        slide_s = 2.0 * _LANDING_SLIDE_MM / self.horizontal_speed_mm_per_s
        self.landing_slide_s = max(slide_s, 0.02)
        self.landing_x_poly = _quintic_to_rest(
            landing_x, self.horizontal_speed_mm_per_s, 0.0, final_x, self.landing_slide_s
        )
        # Position, velocity and acceleration polynomials of the landing.
        self._landing_x_polys = [np.polyder(self.landing_x_poly, k) for k in range(3)]
        self._landing_z_polys = [np.polyder(self.landing_z_poly, k) for k in range(3)]
        self.hind_touchdown_s = self.landing_s + _HIND_TOUCHDOWN_DELAY_S
        self.settled_s = self.landing_s + max(
            self.landing_force.span_s,
            self.landing_slide_s,
            _PITCH_SETTLE_S,
            _HIND_TOUCHDOWN_DELAY_S + 0.1,
        )

    def _plan_pitch(self) -> None:
        deg = math.radians
        self.pitch = _Keyframes(
            [
                self.crouch_onset_s,
                self.crouch_onset_s + self.crouch_moving_s,
                self.push_off_onset_s,
                self.takeoff_s,
                self.landing_s,
                self.landing_s + _PITCH_SETTLE_S,
            ],
            [
                (0.0,),
                (deg(_PITCH_CROUCH_DEG),),
                (deg(_PITCH_CROUCH_DEG),),
                (deg(_PITCH_TAKEOFF_DEG),),
                (deg(_PITCH_LANDING_DEG),),
                (0.0,),
            ],
        )

    def _plan_paws(self) -> None:
        standing_forepaw = self.standing_com_mm + np.array(_STANDING_FOREPAW_MM)
        standing_toe = self.standing_com_mm + np.array(_STANDING_TOE_MM)
        final_toe = self.final_com_mm + np.array(_STANDING_TOE_MM)
        final_forepaw = self.final_com_mm + np.array(_STANDING_FOREPAW_MM)
        # The forepaw touches down where it stands in the final pose; the landing slide then
        # carries the body forward over it.
        forepaw_lift_s = (
            self.push_off_onset_s + _FOREPAW_LIFT_SHARE * self.params.push_off_duration_s
        )
        self.forepaw_path = self._paw_path(
            "shoulder",
            standing_forepaw,
            final_forepaw,
            forepaw_lift_s,
            self.landing_s,
            np.array(_FOREPAW_TUCK_MM),
        )
        self.toe_path = self._paw_path(
            "hip",
            standing_toe,
            final_toe,
            self.takeoff_s,
            self.hind_touchdown_s,
            np.array(_TOE_TUCK_MM),
        )

    def _paw_path(
        self,
        root: str,
        start_mm: np.ndarray,
        end_mm: np.ndarray,
        lift_s: float,
        touchdown_s: float,
        tuck_mm: np.ndarray,
    ) -> _PawPath:
        """Plan a swing whose paw stays above z = 0 between lift and touchdown.

        The Hermite lift from rest at z = 0 to height z1 with vertical speed w1 stays above 0
        iff z1 > 0 and 3 z1 > T w1; the touchdown from z0, w0 to rest at 0 iff z0 > 0 and
        3 z0 + T w0 > 0. The swing time T shrinks until both hold.
        """
        lift_swing_s = min(_PAW_LIFT_S, (touchdown_s - lift_s) / 3.0)
        touchdown_swing_s = min(_PAW_TOUCHDOWN_S, (touchdown_s - lift_s) / 3.0)
        root_at_touchdown, _ = self._root_state(root, np.array([touchdown_s]))
        # Before touchdown the paw hangs a little above where it will land, relative to the
        # root: so it descends with the body and meets the platform from above, at rest.
        reach_mm = end_mm - root_at_touchdown[0] + np.array([0.0, 0.0, _PAW_CLEARANCE_MM])
        for _ in range(30):
            carried_from_s = lift_s + lift_swing_s
            carried_to_s = touchdown_s - touchdown_swing_s
            root_from, velocity_from = self._root_state(root, np.array([carried_from_s]))
            root_to, velocity_to = self._root_state(root, np.array([carried_to_s]))
            lift_height = root_from[0, 2] + tuck_mm[2]
            descent_height = root_to[0, 2] + reach_mm[2]
            lift_ok = lift_height > 0 and 3 * lift_height > lift_swing_s * velocity_from[0, 2]
            touchdown_ok = (
                descent_height > 0
                and 3 * descent_height + touchdown_swing_s * velocity_to[0, 2] > 0
            )
            if lift_ok and touchdown_ok:
                keys = _Keyframes([carried_from_s, carried_to_s], [tuple(tuck_mm), tuple(reach_mm)])
                return _PawPath(
                    root,
                    start_mm,
                    end_mm,
                    lift_s,
                    touchdown_s,
                    keys,
                    lift_end_mm=root_from[0] + tuck_mm,
                    lift_end_velocity_mm_per_s=velocity_from[0],
                    descent_start_mm=root_to[0] + reach_mm,
                    descent_start_velocity_mm_per_s=velocity_to[0],
                )
            lift_swing_s *= 1.0 if lift_ok else 0.8
            touchdown_swing_s *= 1.0 if touchdown_ok else 0.8
        raise ValueError(f"these jump parameters give no clean swing of the {root}'s paw")

    def _plan_feet(self) -> None:
        """Foot angles: keyframed while standing, crouching and in the air; during the push-off
        they follow the rise of the centre of mass, so the heel lifts as the leg extends."""
        self.feet_before_push = _Keyframes(
            [self.crouch_onset_s, self.crouch_onset_s + self.crouch_moving_s],
            [_FOOT_STILL_DEG, _FOOT_CROUCH_DEG],
        )
        self.mid_flight_s = 0.5 * (self.takeoff_s + self.landing_s)
        self.feet_after_tuck = _Keyframes(
            [self.mid_flight_s, self.hind_touchdown_s, self.settled_s],
            [_FOOT_TUCK_DEG, _FOOT_TOUCHDOWN_DEG, _FOOT_STILL_DEG],
        )
        push_rise_mm = self.takeoff_com_mm[2] - self.crouched_com_mm[2]
        self.foot_push_step_deg = np.subtract(_FOOT_TAKEOFF_DEG, _FOOT_CROUCH_DEG)
        # Rate at take-off, carried into the flight so the foot moves C1.
        self.foot_takeoff_rate_deg_per_s = (
            self.foot_push_step_deg * self.vertical_speed_mm_per_s / push_rise_mm
        )

    def _foot_angles_deg(self, t_s: np.ndarray, com_z_mm: np.ndarray) -> np.ndarray:
        """Angles (T, 2) in degrees above the backward horizontal of toe->MTP and MTP->ankle."""
        angles = self.feet_before_push.at(t_s)[0]
        push = (t_s >= self.push_off_onset_s) & (t_s < self.takeoff_s)
        rise = (com_z_mm[push] - self.crouched_com_mm[2]) / (
            self.takeoff_com_mm[2] - self.crouched_com_mm[2]
        )
        angles[push] = np.asarray(_FOOT_CROUCH_DEG) + rise[:, None] * self.foot_push_step_deg
        tucking = (t_s >= self.takeoff_s) & (t_s < self.mid_flight_s)
        if np.any(tucking):
            span = self.mid_flight_s - self.takeoff_s
            angles[tucking], _ = _hermite(
                (t_s[tucking] - self.takeoff_s) / span,
                np.asarray(_FOOT_TAKEOFF_DEG),
                self.foot_takeoff_rate_deg_per_s,
                np.asarray(_FOOT_TUCK_DEG),
                np.zeros(2),
                span,
            )
        later = t_s >= self.mid_flight_s
        angles[later] = self.feet_after_tuck.at(t_s[later])[0]
        return angles

    # --- evaluation ------------------------------------------------------------------------------

    def centre_of_mass_state(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Position (T, 3) mm, velocity (T, 3) mm/s and acceleration (T, 3) mm/s^2 at times (T,)."""
        t_s = _times(t_s)
        g = GRAVITY_MM_PER_S2
        position = np.tile(self.standing_com_mm, (t_s.size, 1))
        velocity = np.zeros((t_s.size, 3))
        acceleration = np.zeros((t_s.size, 3))

        crouch = (t_s >= self.crouch_onset_s) & (t_s < self.push_off_onset_s)
        if np.any(crouch):
            span = self.crouch_moving_s
            u = np.clip((t_s[crouch] - self.crouch_onset_s) / span, 0.0, 1.0)
            ease = u**3 * (10 - 15 * u + 6 * u * u)
            ease_rate = 30 * u * u * (1 - u) ** 2 / span
            ease_accel = 60 * u * (1 - u) * (1 - 2 * u) / (span * span)
            step = self.crouched_com_mm - self.standing_com_mm
            position[crouch] = self.standing_com_mm + ease[:, None] * step
            velocity[crouch] = ease_rate[:, None] * step
            acceleration[crouch] = ease_accel[:, None] * step

        push = (t_s >= self.push_off_onset_s) & (t_s < self.takeoff_s)
        if np.any(push):
            span = self.params.push_off_duration_s
            u = (t_s[push] - self.push_off_onset_s) / span
            gain = self.push_gain
            # Horizontal: a = A_x (u^3 - u^4) with A_x = 20 v_x / T.
            ax_gain = 20.0 * self.horizontal_speed_mm_per_s / span
            x_acc = ax_gain * (u**3 - u**4)
            x_vel = ax_gain * span * (u**4 / 4 - u**5 / 5)
            x_pos = ax_gain * span * span * (u**5 / 20 - u**6 / 30)
            # Vertical: a = g ((A - 1) u^3 - A u^4).
            z_acc = g * ((gain - 1) * u**3 - gain * u**4)
            z_vel = g * span * ((gain - 1) * u**4 / 4 - gain * u**5 / 5)
            z_pos = g * span * span * ((gain - 1) * u**5 / 20 - gain * u**6 / 30)
            position[push] = self.crouched_com_mm + np.stack((x_pos, 0 * u, z_pos), axis=-1)
            velocity[push] = np.stack((x_vel, 0 * u, z_vel), axis=-1)
            acceleration[push] = np.stack((x_acc, 0 * u, z_acc), axis=-1)

        flight = (t_s >= self.takeoff_s) & (t_s < self.landing_s)
        if np.any(flight):
            tau = t_s[flight] - self.takeoff_s
            vx, vz = self.horizontal_speed_mm_per_s, self.vertical_speed_mm_per_s
            position[flight] = self.takeoff_com_mm + np.stack(
                (vx * tau, 0 * tau, vz * tau - 0.5 * g * tau * tau), axis=-1
            )
            velocity[flight] = np.stack((vx + 0 * tau, 0 * tau, vz - g * tau), axis=-1)
            acceleration[flight] = np.stack((0 * tau, 0 * tau, -g + 0 * tau), axis=-1)

        landing = t_s >= self.landing_s
        if np.any(landing):
            tau = t_s[landing] - self.landing_s
            position[landing] = self.final_com_mm
            for axis, polys, span in (
                (0, self._landing_x_polys, self.landing_slide_s),
                (2, self._landing_z_polys, self.landing_force.span_s),
            ):
                moving = tau < span
                tau_moving = tau[moving]
                rows = np.flatnonzero(landing)[moving]
                position[rows, axis] = np.polyval(polys[0], tau_moving)
                velocity[rows, axis] = np.polyval(polys[1], tau_moving)
                acceleration[rows, axis] = np.polyval(polys[2], tau_moving)
        return position, velocity, acceleration

    def centre_of_mass_mm(self, t_s: np.ndarray) -> np.ndarray:
        """Centre of mass (T, 3) in mm at times (T,) in seconds from pulse 0."""
        return self.centre_of_mass_state(t_s)[0]

    def _root_state(self, root: str, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position and velocity (T, 3) of a limb root ("hip" or "shoulder")."""
        com, com_velocity, _ = self.centre_of_mass_state(t_s)
        pitch, pitch_rate = self.pitch.at(t_s)
        offsets = self._root_offsets[root]
        position = com + _rotate_pitch(offsets, pitch[:, 0])[:, 0]
        velocity = com_velocity + _rotate_pitch_rate(offsets, pitch[:, 0], pitch_rate[:, 0])[:, 0]
        return position, velocity

    def _paw_mm(self, path: _PawPath, t_s: np.ndarray, root_mm: np.ndarray) -> np.ndarray:
        """Paw position (T, 3) along its path at times (T,), given its root's positions (T, 3)."""
        position = np.tile(path.start_mm, (t_s.size, 1))
        position[t_s >= path.touchdown_s] = path.end_mm
        carried_from_s, carried_to_s = path.keys.times_s[0], path.keys.times_s[-1]
        rest = np.zeros(3)

        lifting = (t_s > path.lift_s) & (t_s < carried_from_s)
        if np.any(lifting):
            span = carried_from_s - path.lift_s
            position[lifting], _ = _hermite(
                (t_s[lifting] - path.lift_s) / span,
                path.start_mm,
                rest,
                path.lift_end_mm,
                path.lift_end_velocity_mm_per_s,
                span,
            )

        carried = (t_s >= carried_from_s) & (t_s < carried_to_s)
        if np.any(carried):
            offset, _ = path.keys.at(t_s[carried])
            position[carried] = root_mm[carried] + offset

        landing = (t_s >= carried_to_s) & (t_s < path.touchdown_s)
        if np.any(landing):
            span = path.touchdown_s - carried_to_s
            position[landing], _ = _hermite(
                (t_s[landing] - carried_to_s) / span,
                path.descent_start_mm,
                path.descent_start_velocity_mm_per_s,
                path.end_mm,
                rest,
                span,
            )
        return position

    def points_mm(self, t_s: np.ndarray) -> np.ndarray:
        """Positions (T, 10, 3) in mm of BODY_PARTS at times (T,) in seconds from pulse 0."""
        t_s = _times(t_s)
        points = np.empty((t_s.size, len(BODY_PARTS), 3))
        before = t_s < self.crouch_onset_s
        after = t_s >= self.settled_s
        # Most frames of a trial show the mouse standing still: those are a copy.
        points[before] = self._standing_points_mm
        points[after] = self._settled_points_mm
        moving = ~(before | after)
        if np.any(moving):
            points[moving] = self._posed_points_mm(t_s[moving])
        return points

    def _posed_points_mm(self, t_s: np.ndarray) -> np.ndarray:
        """points_mm for any times (T,), computed from the pose."""
        com = self.centre_of_mass_mm(t_s)
        pitch, _ = self.pitch.at(t_s)
        # The trunk's parts, then the shoulder (last row), which carries the forelimb.
        trunk = com[:, None, :] + _rotate_pitch(self._trunk_and_shoulder_offsets, pitch[:, 0])
        parts = dict(zip(self._trunk_names, np.moveaxis(trunk[:, :-1], 1, 0), strict=True))
        parts["forepaw"] = self._paw_mm(self.forepaw_path, t_s, trunk[:, -1])
        toe = self._paw_mm(self.toe_path, t_s, parts["hip"])
        angles = np.radians(self._foot_angles_deg(t_s, com[:, 2]))
        toe_to_mtp = np.stack(
            (-np.cos(angles[:, 0]), np.zeros(t_s.size), np.sin(angles[:, 0])), axis=-1
        )
        mtp_to_ankle = np.stack(
            (-np.cos(angles[:, 1]), np.zeros(t_s.size), np.sin(angles[:, 1])), axis=-1
        )
        parts["toe"] = toe
        parts["mtp"] = toe + TOES_MM * toe_to_mtp
        parts["ankle"] = parts["mtp"] + METATARSUS_MM * mtp_to_ankle
        parts["knee"] = _knee_mm(parts["hip"], parts["ankle"])
        return np.stack([parts[name] for name in BODY_PARTS], axis=1)

    def phase_at(self, t_s: np.ndarray) -> np.ndarray:
        """Phase codes (T,) int8, indices into PHASES, at times (T,)."""
        t_s = _times(t_s)
        edges = np.array(
            [
                self.crouch_onset_s,
                self.push_off_onset_s,
                self.takeoff_s,
                self.landing_s,
                self.settled_s,
            ]
        )
        codes = np.array(
            [PHASE_STILL, PHASE_CROUCH, PHASE_PUSH_OFF, PHASE_FLIGHT, PHASE_LANDING, PHASE_STILL],
            dtype=np.int8,
        )
        return codes[np.searchsorted(edges, t_s, side="right")]

    def platform_forces_n(self, t_s: np.ndarray) -> np.ndarray:
        """Vertical forces (T, 2) in newtons on the take-off and the landing platform, noise-free.

        Whatever platform the mouse stands on carries m (g + a_z) of its centre of mass; the
        take-off platform is unloaded from ``takeoff_s`` on, the landing one until ``landing_s``.
        """
        t_s = _times(t_s)
        _, _, acceleration = self.centre_of_mass_state(t_s)
        # mm/s^2 -> m/s^2 and g -> kg: mass_g * 1e-3 * accel_mm * 1e-3.
        total_n = self.params.body_mass_g * (GRAVITY_MM_PER_S2 + acceleration[:, 2]) * 1e-6
        on_takeoff = t_s < self.takeoff_s
        on_landing = t_s >= self.landing_s
        forces = np.zeros((t_s.size, 2))
        forces[on_takeoff, 0] = total_n[on_takeoff]
        forces[on_landing, 1] = total_n[on_landing]
        return forces

    @property
    def body_weight_n(self) -> float:
        return self.params.body_mass_g * GRAVITY_MM_PER_S2 * 1e-6

    def true_events(self) -> dict[str, float]:
        """The jump's ground truth (a new dict each call); see :meth:`_compute_events`."""
        return dict(self._events)

    def _compute_events(self) -> dict[str, float]:
        """The jump's ground truth: event times in s from pulse 0, kinematics in mm, mm/s, N.

        ``jump_height_mm``: apex height of the centre of mass minus its take-off height;
        ``jump_distance_mm``: horizontal centre-of-mass displacement from take-off to landing;
        ``takeoff_speed_mm_per_s``: centre-of-mass speed at take-off;
        ``peak_push_off_force_n``: peak vertical force on the take-off platform.
        """
        span = self.params.push_off_duration_s
        u = np.linspace(0.0, 1.0, 20001)
        push_forces = 1.0 - u**3 + self.push_gain * u**3 * (1.0 - u)
        landing_forces = self.landing_force.body_weights(u)
        vx, vz = self.horizontal_speed_mm_per_s, self.vertical_speed_mm_per_s
        return {
            "crouch_onset_s": self.crouch_onset_s,
            "push_off_onset_s": self.push_off_onset_s,
            "takeoff_s": self.takeoff_s,
            "apex_s": self.takeoff_s + vz / GRAVITY_MM_PER_S2,
            "landing_s": self.landing_s,
            "hind_touchdown_s": self.hind_touchdown_s,
            "settled_s": self.settled_s,
            "flight_time_s": self.flight_time_s,
            "jump_height_mm": vz * vz / (2.0 * GRAVITY_MM_PER_S2),
            "jump_distance_mm": float(self.landing_com_mm[0] - self.takeoff_com_mm[0]),
            "takeoff_speed_mm_per_s": math.hypot(vx, vz),
            "takeoff_angle_deg": math.degrees(math.atan2(vz, vx)),
            "peak_push_off_force_n": float(push_forces.max()) * self.body_weight_n,
            "peak_push_off_force_s": self.push_off_onset_s + float(u[push_forces.argmax()]) * span,
            "peak_landing_force_n": float(landing_forces.max()) * self.body_weight_n,
            "body_weight_n": self.body_weight_n,
        }


def _times(t_s: np.ndarray) -> np.ndarray:
    t_s = np.asarray(t_s, dtype=np.float64)
    if t_s.ndim != 1:
        raise ValueError(f"times must be a 1-D array (T,), got shape {t_s.shape}")
    if not np.all(np.isfinite(t_s)):
        raise ValueError("times must be finite")
    return t_s


def _soft_clamp(value: np.ndarray, low: float, high: float, give: float) -> np.ndarray:
    """value (N,) unchanged inside [low + give, high - give], easing exponentially toward low
    and high outside it, never reaching them: C1 and strictly increasing."""
    top = high - give
    bottom = low + give
    above = value > top
    below = value < bottom
    out = value.astype(np.float64, copy=True)
    out[above] = top + give * (1.0 - np.exp(-(value[above] - top) / give))
    out[below] = bottom - give * (1.0 - np.exp(-(bottom - value[below]) / give))
    return out


def _knee_mm(hip_mm: np.ndarray, ankle_mm: np.ndarray) -> np.ndarray:
    """Knee (T, 3) by two-link inverse kinematics in the x-z plane, bending forward.

    The hip-ankle distance is eased away from full extension and full flexion first (the leg
    stretches or folds a little instead), because the exact solution's knee moves infinitely
    fast where the leg is straight or folded: this keeps the knee C1.
    """
    delta = ankle_mm[:, [0, 2]] - hip_mm[:, [0, 2]]
    distance = np.maximum(np.linalg.norm(delta, axis=1), 1e-9)
    direction = delta / distance[:, None]
    # The bending side: the normal (-dz, dx) points forward when the leg points down.
    normal = np.stack((-direction[:, 1], direction[:, 0]), axis=-1)
    reach = _soft_clamp(
        distance, abs(FEMUR_MM - TIBIA_MM) + 1.0, FEMUR_MM + TIBIA_MM - 0.5, _KNEE_EASE_MM
    )
    along = (reach**2 + FEMUR_MM**2 - TIBIA_MM**2) / (2.0 * reach)
    across = np.sqrt(np.clip(FEMUR_MM**2 - along**2, 0.0, None))
    knee_xz = hip_mm[:, [0, 2]] + along[:, None] * direction + across[:, None] * normal
    return np.stack((knee_xz[:, 0], np.full(hip_mm.shape[0], _LIMB_Y_MM), knee_xz[:, 1]), axis=-1)
