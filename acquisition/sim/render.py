"""Grayscale frames of the twin mouse as one camera sees it: platforms, a dark body, bright markers.

Rendering is split so that each frame costs well under a millisecond at 640x480:

- once per renderer: the static scene (two platforms on a floor in a room) is ray-cast through the
  camera's exact lens model, so its edges agree with ``PinholeCamera.project``; and a small bank
  of sensor-noise frames, a little larger than the image, is drawn from the seed;
- per frame: the mouse is drawn with OpenCV primitives into a copy of the background inside its
  bounding box only, blurred there, and noise is added with saturating uint8 arithmetic from one
  bank frame at a shift chosen by hashing (seed, trigger index).

So a frame is a pure function of (camera, settings, seed, trigger index, points).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from acquisition.sim.camera_model import PinholeCamera
from acquisition.sim.skeleton import BODY_PARTS

# --- the static scene, mm ------------------------------------------------------------------------
PLATFORM_LENGTH_MM = 200.0
PLATFORM_WIDTH_MM = 90.0
PLATFORM_HEIGHT_MM = 120.0  # platform tops at z = 0 stand on a floor at z = -PLATFORM_HEIGHT_MM
_ROOM_HALF_SIZE_MM = 900.0
_ROOM_HEIGHT_MM = 900.0

# Surfaces of the ray-cast scene; ray_cast_scene labels pixels with indices into SURFACES.
SURFACES = ("sky", "floor", "wall", "platform_top", "platform_side")
_SKY, _FLOOR, _WALL, _PLATFORM_TOP, _PLATFORM_SIDE = range(len(SURFACES))
# Base gray levels at brightness 1.
_SURFACE_GRAY = {
    _SKY: 120.0,
    _FLOOR: 110.0,
    _WALL: 135.0,
    _PLATFORM_TOP: 175.0,
    _PLATFORM_SIDE: 105.0,
}
_SURFACE_TEXTURE_DN = {
    _SKY: 4.0,
    _FLOOR: 10.0,
    _WALL: 10.0,
    _PLATFORM_TOP: 12.0,
    _PLATFORM_SIDE: 9.0,
}
# Lens vignetting: relative fall-off of light at the image corners.
_VIGNETTING = 0.15

# --- the mouse ------------------------------------------------------------------------------------
_BODY_GRAY = 45.0
_LIMB_GRAY = 38.0
_TAIL_GRAY = 75.0
# Radius (mm) and gray level of each part's painted marker; sizes and levels differ so a pose
# network can tell parts apart.
_MARKERS: dict[str, tuple[float, float]] = {
    "nose": (1.5, 250.0),
    "eye": (1.3, 225.0),
    "forepaw": (1.7, 240.0),
    "iliac_crest": (2.2, 255.0),
    "hip": (2.0, 215.0),
    "knee": (1.8, 248.0),
    "ankle": (1.6, 232.0),
    "mtp": (1.4, 244.0),
    "toe": (1.2, 222.0),
    "tail_base": (2.0, 205.0),
}
_MIN_MARKER_RADIUS_PX = 1.5
_TRUNK_RADIUS_MM = 10.0
_RUMP_RADIUS_MM = 8.5
_HEAD_RADIUS_MM = 6.5
_SNOUT_RADIUS_MM = 3.5
_THIGH_RADIUS_MM = 4.5
_SHANK_RADIUS_MM = 2.6
_FOOT_RADIUS_MM = 1.6
_FORELIMB_RADIUS_MM = 2.4
_TAIL_RADIUS_MM = 1.4
_TAIL_LENGTH_MM = 45.0
# The dorsal markers (eye, iliac crest) sit on the back: the trunk's axis runs this far below them.
_TRUNK_AXIS_BELOW_BACK_MM = 6.0

# --- sensor noise ---------------------------------------------------------------------------------
NOISE_BANK_SIZE = 16
_NOISE_SHIFT_PX = 32
_SUBPIXEL_BITS = 4  # cv2 drawing with fixed-point coordinates, 1/16 px
_INDEX = {name: i for i, name in enumerate(BODY_PARTS)}


class FrameRenderer:
    """Renders (height, width) uint8 frames of the twin mouse for one camera."""

    def __init__(
        self,
        camera: PinholeCamera,
        *,
        noise_dn: float = 2.0,
        blur_px: float = 0.0,
        brightness: float = 1.0,
        seed: int = 0,
        gap_mm: float = 80.0,
    ) -> None:
        for name, value in (("noise_dn", noise_dn), ("blur_px", blur_px)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if not math.isfinite(brightness) or brightness <= 0:
            raise ValueError(f"brightness must be finite and > 0, got {brightness!r}")
        if not math.isfinite(gap_mm) or gap_mm <= 0:
            raise ValueError(f"gap_mm must be finite and > 0, got {gap_mm!r}")
        self.camera = camera
        self.noise_dn = float(noise_dn)
        self.blur_px = float(blur_px)
        self.brightness = float(brightness)
        self.seed = int(seed)
        self.gap_mm = float(gap_mm)
        self._focal_px = float(camera.matrix[0, 0])
        self.background = _render_background(camera, self.gap_mm, self.brightness, self.seed)
        self.background.setflags(write=False)
        self._noise_up, self._noise_down = _noise_bank(
            camera.height, camera.width, self.noise_dn, self.seed, camera.name
        )
        self._rotation = camera.rotation_matrix
        self._translation_mm = np.asarray(camera.translation_mm)
        self._zero3 = np.zeros(3)
        self._marker_radius_mm = np.array([_MARKERS[name][0] for name in BODY_PARTS])
        self._marker_gray = [
            (min(255.0, _MARKERS[name][1] * self.brightness),) for name in BODY_PARTS
        ]
        self._marker_indices = list(range(len(BODY_PARTS)))
        # Body segments in drawing order: (start row, end row, radius mm, gray); rows index the
        # ten parts followed by the anchors of _body_anchors_mm.
        rows = {name: i for i, name in enumerate(BODY_PARTS + _ANCHORS)}
        body = _BODY_GRAY * self.brightness
        limb = _LIMB_GRAY * self.brightness
        tail = _TAIL_GRAY * self.brightness
        plan = (
            ("tail_base", "tail_tip", _TAIL_RADIUS_MM, tail),
            ("hip", "knee", _THIGH_RADIUS_MM, limb),
            ("knee", "ankle", _SHANK_RADIUS_MM, limb),
            ("ankle", "mtp", _FOOT_RADIUS_MM, limb),
            ("mtp", "toe", _FOOT_RADIUS_MM, limb),
            ("shoulder", "forepaw", _FORELIMB_RADIUS_MM, limb),
            ("trunk_front", "trunk_rear", _TRUNK_RADIUS_MM, body),
            ("trunk_rear", "rump", _RUMP_RADIUS_MM, body),
            ("nose", "head", _SNOUT_RADIUS_MM, body),
        )
        self._segment_start = np.array([rows[a] for a, _, _, _ in plan])
        self._segment_end = np.array([rows[b] for _, b, _, _ in plan])
        self._segment_radius_mm = np.array([radius for _, _, radius, _ in plan])
        self._segment_gray = [(gray,) for _, _, _, gray in plan]
        self._head_row = rows["head"]
        self._head_gray = (body,)

    def render(self, points_mm: np.ndarray, trigger_index: int) -> np.ndarray:
        """Points (10, 3) in mm, BODY_PARTS order -> frame (height, width) uint8."""
        points = np.asarray(points_mm, dtype=np.float64)
        if points.shape != (len(BODY_PARTS), 3):
            raise ValueError(f"points must have shape ({len(BODY_PARTS)}, 3), got {points.shape}")
        if not np.all(np.isfinite(points)):
            raise ValueError("points must be finite")
        if trigger_index < 0:
            raise ValueError(f"trigger_index must be >= 0, got {trigger_index}")
        frame = self._noisy(self.background, trigger_index, 0, 0)
        self._draw_mouse(frame, points, trigger_index)
        return frame

    # --- per frame -------------------------------------------------------------------------------

    def _noisy(self, image: np.ndarray, trigger_index: int, y0: int, x0: int) -> np.ndarray:
        """image + noise of this frame at image offset (y0, x0), saturating; a new array."""
        if self._noise_up is None or self._noise_down is None:
            return image.copy()
        bank_index, dy, dx = _noise_choice(self.seed, trigger_index)
        rows = slice(dy + y0, dy + y0 + image.shape[0])
        cols = slice(dx + x0, dx + x0 + image.shape[1])
        out = cv2.add(image, self._noise_up[bank_index, rows, cols])
        cv2.subtract(out, self._noise_down[bank_index, rows, cols], dst=out)
        return out

    def _draw_mouse(self, frame: np.ndarray, points: np.ndarray, trigger_index: int) -> None:
        """Draw the mouse into frame inside its bounding box: body, then markers, then blur and
        noise of that box. Nothing is drawn if any of it is behind the camera."""
        all_points = np.concatenate((points, _body_anchors_mm(points)))
        in_camera = all_points @ self._rotation.T + self._translation_mm
        depth_mm = in_camera[:, 2]
        if np.any(depth_mm <= 1.0):
            return
        projected, _ = cv2.projectPoints(
            in_camera, self._zero3, self._zero3, self.camera.matrix, self.camera.distortion
        )
        pixels = projected.reshape(-1, 2)
        px_per_mm = self._focal_px / depth_mm
        thickness_px = np.maximum(
            1, np.rint(2.0 * self._segment_radius_mm * px_per_mm[self._segment_start])
        ).astype(np.int64)
        pad = float(thickness_px.max()) / 2.0 + 3.0 * self.blur_px + 2.0
        x0 = max(0, math.floor(float(pixels[:, 0].min()) - pad))
        y0 = max(0, math.floor(float(pixels[:, 1].min()) - pad))
        x1 = min(self.camera.width, math.ceil(float(pixels[:, 0].max()) + pad) + 1)
        y1 = min(self.camera.height, math.ceil(float(pixels[:, 1].max()) + pad) + 1)
        if x1 <= x0 or y1 <= y0:
            return
        scale = 1 << _SUBPIXEL_BITS
        # Fixed-point coordinates relative to the box, clipped to a range cv2 accepts.
        fixed = np.clip(np.rint((pixels - (x0, y0)) * scale), -(1 << 24), 1 << 24)
        fixed_points = [tuple(row) for row in fixed.astype(np.int64).tolist()]
        patch = self.background[y0:y1, x0:x1].copy()
        for start, end, thickness, gray in zip(
            self._segment_start.tolist(),
            self._segment_end.tolist(),
            thickness_px.tolist(),
            self._segment_gray,
            strict=True,
        ):
            cv2.line(
                patch,
                fixed_points[start],
                fixed_points[end],
                gray,
                thickness,
                cv2.LINE_AA,
                _SUBPIXEL_BITS,
            )
        head_radius = round(_HEAD_RADIUS_MM * px_per_mm[self._head_row] * scale)
        cv2.circle(
            patch,
            fixed_points[self._head_row],
            head_radius,
            self._head_gray,
            -1,
            cv2.LINE_AA,
            _SUBPIXEL_BITS,
        )
        marker_radius = np.rint(
            np.maximum(_MIN_MARKER_RADIUS_PX, self._marker_radius_mm * px_per_mm[: len(BODY_PARTS)])
            * scale
        ).astype(np.int64)
        for index, radius, gray in zip(
            self._marker_indices, marker_radius.tolist(), self._marker_gray, strict=True
        ):
            cv2.circle(patch, fixed_points[index], radius, gray, -1, cv2.LINE_AA, _SUBPIXEL_BITS)
        if self.blur_px > 0:
            patch = cv2.GaussianBlur(patch, (0, 0), self.blur_px)
        frame[y0:y1, x0:x1] = self._noisy(patch, trigger_index, y0, x0)


# Unlabelled points the body is drawn from, in the order _body_anchors_mm returns them.
_ANCHORS = ("trunk_front", "trunk_rear", "rump", "head", "shoulder", "tail_tip")


def _body_anchors_mm(points: np.ndarray) -> np.ndarray:
    """Unlabelled points (6, 3) the body is drawn from (_ANCHORS order), from the ten parts."""
    eye = points[_INDEX["eye"]]
    iliac = points[_INDEX["iliac_crest"]]
    tail_base = points[_INDEX["tail_base"]]
    nose = points[_INDEX["nose"]]
    spine = eye - iliac
    spine = spine / max(math.sqrt(float(spine @ spine)), 1e-9)
    # The trunk's "down": world down made perpendicular to the spine.
    down = np.array([0.0, 0.0, -1.0]) + spine * spine[2]
    down = down / max(math.sqrt(float(down @ down)), 1e-9)
    axis_drop = _TRUNK_AXIS_BELOW_BACK_MM * down
    backward = tail_base - iliac
    backward = backward / max(math.sqrt(float(backward @ backward)), 1e-9)
    tail_direction = backward + np.array([0.0, 0.0, -0.6])
    tail_direction = tail_direction / math.sqrt(float(tail_direction @ tail_direction))
    return np.stack(
        (
            eye + axis_drop - 4.0 * spine,
            iliac + axis_drop,
            0.5 * (iliac + tail_base) + 0.6 * axis_drop,
            eye + 0.35 * (nose - eye) + 0.5 * axis_drop,
            eye + 0.3 * (iliac - eye) + 1.2 * axis_drop,
            tail_base + _TAIL_LENGTH_MM * tail_direction,
        )
    )


def _mix64(value: int) -> int:
    """splitmix64's finaliser: a cheap, well-spread integer hash."""
    value &= 0xFFFFFFFFFFFFFFFF
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return value ^ (value >> 31)


def _noise_choice(seed: int, trigger_index: int) -> tuple[int, int, int]:
    """(bank frame, row shift, column shift) of one frame's noise."""
    mixed = _mix64(_mix64(seed) ^ (trigger_index + 0x9E3779B97F4A7C15))
    span = _NOISE_SHIFT_PX + 1
    return mixed % NOISE_BANK_SIZE, (mixed >> 8) % span, (mixed >> 24) % span


def _noise_bank(
    height: int, width: int, noise_dn: float, seed: int, camera_name: str
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Gaussian read noise, rounded to whole DN, split into its positive and negative parts
    (each (NOISE_BANK_SIZE, height + shift, width + shift) uint8) for saturating arithmetic."""
    if noise_dn == 0:
        return None, None
    name_key = int.from_bytes(camera_name.encode()[:8].ljust(8, b"\0"), "little")
    rng = np.random.default_rng([seed & 0xFFFFFFFF, seed >> 32 & 0xFFFFFFFF, name_key, 0x6E6F])
    shape = (NOISE_BANK_SIZE, height + _NOISE_SHIFT_PX, width + _NOISE_SHIFT_PX)
    noise = np.rint(rng.standard_normal(shape, dtype=np.float32) * np.float32(noise_dn))
    np.clip(noise, -255, 255, out=noise)
    up = np.clip(noise, 0, None).astype(np.uint8)
    down = np.clip(-noise, 0, None).astype(np.uint8)
    return up, down


# --- the static background ----------------------------------------------------------------------


def _pixel_rays(camera: PinholeCamera) -> tuple[np.ndarray, np.ndarray]:
    """Camera centre (3,) and world ray directions (H, W, 3) through every pixel centre."""
    cols, rows = np.meshgrid(
        np.arange(camera.width, dtype=np.float64), np.arange(camera.height, dtype=np.float64)
    )
    pixels = np.stack((cols, rows), axis=-1).reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 1e-9)
    identity = np.eye(3)
    normalized = cv2.undistortPointsIter(
        pixels, camera.matrix, camera.distortion, identity, identity, criteria
    ).reshape(-1, 2)
    in_camera = np.concatenate((normalized, np.ones((normalized.shape[0], 1))), axis=1)
    directions = in_camera @ camera.rotation_matrix  # R^T applied to each row
    return camera.position_mm, directions.reshape(camera.height, camera.width, 3)


def _box_hits(
    origin: np.ndarray, directions: np.ndarray, low: np.ndarray, high: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distance along each ray (N,) to an axis-aligned box (inf where missed) and the hit axis
    (N,) int (0: x face, 1: y face, 2: z face)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = 1.0 / directions
        t_low = (low - origin) * inverse
        t_high = (high - origin) * inverse
    t_near = np.nan_to_num(np.minimum(t_low, t_high), nan=-np.inf)
    t_far = np.nan_to_num(np.maximum(t_low, t_high), nan=np.inf)
    entry = t_near.max(axis=1)
    exit_ = t_far.min(axis=1)
    hit = (entry <= exit_) & (entry > 0)
    return np.where(hit, entry, np.inf), t_near.argmax(axis=1)


def _texture(seed: int) -> np.ndarray:
    """(256, 256) float32 smooth random texture, zero mean, unit standard deviation, tiling
    (filtered in the Fourier domain, so it wraps without seams)."""
    rng = np.random.default_rng([seed & 0xFFFFFFFF, 0x7E87])
    spectrum = np.fft.rfft2(rng.standard_normal((256, 256)))
    frequency2 = np.fft.fftfreq(256)[:, None] ** 2 + np.fft.rfftfreq(256)[None, :] ** 2
    # Mostly blotches a few mm across, with some fine grain.
    weights = np.exp(-frequency2 * (2 * np.pi * 3.0) ** 2 / 2) + 0.2 * np.exp(
        -frequency2 * (2 * np.pi * 0.8) ** 2 / 2
    )
    texture = np.fft.irfft2(spectrum * weights, s=(256, 256))
    texture -= texture.mean()
    return (texture / texture.std()).astype(np.float32)


def ray_cast_scene(camera: PinholeCamera, gap_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """What every pixel centre sees of the static scene, through the camera's lens model.

    Returns the surface (height, width) int, indices into SURFACES, and the world point hit
    (height, width, 3) in mm (the camera centre where the ray leaves the room upward).
    """
    origin, directions = _pixel_rays(camera)
    surface, hits = _cast(origin, directions.reshape(-1, 3), gap_mm)
    return (
        surface.reshape(camera.height, camera.width),
        hits.reshape(camera.height, camera.width, 3),
    )


def _cast(origin: np.ndarray, rays: np.ndarray, gap_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Surface (N,) and hit point (N, 3) of rays (N, 3) from origin (3,)."""
    n_rays = rays.shape[0]
    distance = np.full(n_rays, np.inf)
    surface = np.full(n_rays, _SKY)
    half_width = PLATFORM_WIDTH_MM / 2.0
    for x_low in (-PLATFORM_LENGTH_MM, gap_mm):
        low = np.array([x_low, -half_width, -PLATFORM_HEIGHT_MM])
        high = np.array([x_low + PLATFORM_LENGTH_MM, half_width, 0.0])
        hit_distance, hit_axis = _box_hits(origin, rays, low, high)
        closer = hit_distance < distance
        distance[closer] = hit_distance[closer]
        surface[closer] = np.where(hit_axis[closer] == 2, _PLATFORM_TOP, _PLATFORM_SIDE)
    # The room: floor under the platforms and four walls; the camera is inside.
    with np.errstate(divide="ignore", invalid="ignore"):
        planes = (
            (2, -PLATFORM_HEIGHT_MM, _FLOOR),
            (0, -_ROOM_HALF_SIZE_MM, _WALL),
            (0, _ROOM_HALF_SIZE_MM + gap_mm, _WALL),
            (1, -_ROOM_HALF_SIZE_MM, _WALL),
            (1, _ROOM_HALF_SIZE_MM, _WALL),
        )
        for axis, level, label in planes:
            plane_distance = (level - origin[axis]) / rays[:, axis]
            plane_distance = np.where(plane_distance > 0, plane_distance, np.inf)
            closer = plane_distance < distance
            distance[closer] = plane_distance[closer]
            surface[closer] = label
    hits = origin + rays * np.where(np.isfinite(distance), distance, 0.0)[:, None]
    return surface, hits


def _render_background(
    camera: PinholeCamera, gap_mm: float, brightness: float, seed: int
) -> np.ndarray:
    """The static scene (height, width) uint8: platforms, floor and walls, ray-cast through the
    camera's lens model, textured, lit and vignetted."""
    origin, directions = _pixel_rays(camera)
    rays = directions.reshape(-1, 3)
    n_rays = rays.shape[0]
    surface, hits = _cast(origin, rays, gap_mm)

    texture = _texture(seed)
    gray = np.zeros(n_rays, dtype=np.float32)
    for label, base in _SURFACE_GRAY.items():
        mask = surface == label
        if not np.any(mask):
            continue
        point = hits[mask]
        # Texture coordinates from the two world axes along the surface, 0.5 mm per texel.
        if label in (_PLATFORM_TOP, _FLOOR):
            u, v = point[:, 0], point[:, 1]
        elif label == _SKY:
            u, v = rays[mask, 0] * 100.0, rays[mask, 1] * 100.0
        else:
            u, v = point[:, 0] + point[:, 1], point[:, 2]
        texel_u = np.floor(u * 2.0).astype(np.int64) % 256
        texel_v = np.floor(v * 2.0).astype(np.int64) % 256
        shade = base + _SURFACE_TEXTURE_DN[label] * texture[texel_v, texel_u]
        if label == _FLOOR:
            # 50 mm tiles make the floor's perspective readable.
            tiles = (np.floor(point[:, 0] / 50.0) + np.floor(point[:, 1] / 50.0)) % 2
            shade = shade + 12.0 * (tiles - 0.5)
        if label == _PLATFORM_TOP:
            # A darker band along the platforms' edges, as the rounded rim of a real platform.
            edge_mm = np.minimum(np.abs(point[:, 0]), np.abs(point[:, 0] - gap_mm))
            shade = shade - 35.0 * np.exp(-edge_mm / 1.5)
        gray[mask] = shade
    # Vignetting: light falls off toward the image corners.
    cols, rows = np.meshgrid(np.arange(camera.width), np.arange(camera.height))
    centre_x, centre_y = camera.matrix[0, 2], camera.matrix[1, 2]
    radius2 = ((cols - centre_x) ** 2 + (rows - centre_y) ** 2) / (
        (camera.width / 2.0) ** 2 + (camera.height / 2.0) ** 2
    )
    light = brightness * (1.0 - _VIGNETTING * radius2)
    image = gray.reshape(camera.height, camera.width) * light
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
