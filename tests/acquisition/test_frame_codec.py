"""Frame chunks must be exactly what HDF5's own filter pipeline (Blosc + fletcher32) stores."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import blosc
import h5py
import numpy as np
import pytest

from acquisition.frame_codec import (
    FLETCHER32_TRAILER_BYTES,
    FRAME_CLEVEL,
    FRAME_CNAME,
    chunk_frame_nbytes,
    decode_frame_chunk,
    encode_frame_chunk,
    frame_dataset_options,
    hdf5_fletcher32,
)

REAL_VIDEO = Path(__file__).resolve().parents[3] / "shared" / "data" / "dlc_openfield" / "videos"


def reference_fletcher32(data: bytes) -> int:
    """A line-by-line transcription of HDF5's H5_checksum_fletcher32 (H5checksum.c)."""
    remaining_words = len(data) // 2
    sum1 = sum2 = 0
    position = 0
    while remaining_words:
        block_words = min(remaining_words, 360)
        remaining_words -= block_words
        for _ in range(block_words):
            sum1 += (data[position] << 8) | data[position + 1]
            position += 2
            sum2 += sum1
        sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
        sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    if len(data) % 2:
        sum1 += data[position] << 8
        sum2 += sum1
        sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
        sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    sum1 = (sum1 & 0xFFFF) + (sum1 >> 16)
    sum2 = (sum2 & 0xFFFF) + (sum2 >> 16)
    return (sum2 << 16) | sum1


def noisy_frame(
    rng: np.random.Generator, height: int, width: int, noise_dn: float = 2.0
) -> np.ndarray:
    """(height, width) uint8: a smooth blob on mid-gray with Gaussian sensor noise."""
    rows, cols = np.mgrid[0:height, 0:width]
    blob = 60.0 * np.exp(
        -(((cols - width / 2) / (width / 8)) ** 2 + ((rows - height / 2) / (height / 8)) ** 2)
    )
    image = 128.0 + blob + rng.normal(0.0, noise_dn, (height, width))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "length", [0, 1, 2, 3, 719, 720, 721, 8191, 8192, 8193, 8194, 16385, 70001, 300_000]
)
def test_fletcher32_matches_hdf5_reference(length: int) -> None:
    rng = np.random.default_rng(length)
    data = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    assert hdf5_fletcher32(data) == reference_fletcher32(data)


@pytest.mark.parametrize("fill", [0x00, 0xFF, 0x01])
def test_fletcher32_matches_reference_on_constant_data(fill: int) -> None:
    # All-0xFF maximizes every sum (overflow edge); all-zero is the only case where a sum is 0.
    for length in (1, 2, 721, 20_001):
        data = bytes([fill]) * length
        assert hdf5_fletcher32(data) == reference_fletcher32(data)


@pytest.mark.parametrize(
    "height,width", [(48, 64), (121, 97), (33, 65), (7, 301), (480, 640), (1024, 1280)]
)
def test_chunk_is_byte_identical_to_hdf5_filter_pipeline(
    tmp_path: Path, height: int, width: int
) -> None:
    rng = np.random.default_rng(height * width)
    # 1 DN noise: small frames with 2 DN do not shrink, and HDF5's filter then stores them raw.
    frames = [noisy_frame(rng, height, width, noise_dn=1.0) for _ in range(3)]
    with h5py.File(tmp_path / "pipeline.h5", "w", libver="latest") as h5file:
        dataset = h5file.create_dataset("frames", **frame_dataset_options(height, width))
        dataset.resize((len(frames), height, width))
        payload_lengths = []
        for row, frame in enumerate(frames):
            dataset[row] = frame
            filter_mask, stored = dataset.id.read_direct_chunk((row, 0, 0))
            assert filter_mask == 0, "HDF5 skipped a filter: choose a more compressible test frame"
            chunk = encode_frame_chunk(frame)
            assert chunk == stored
            payload_lengths.append(len(chunk) - FLETCHER32_TRAILER_BYTES)
    print(f"{height}x{width}: compressed payload lengths {payload_lengths}")


def test_byte_identity_covers_odd_payload_lengths(tmp_path: Path) -> None:
    # fletcher32 treats an odd last byte specially: make sure such a chunk is compared too.
    rng = np.random.default_rng(7)
    with h5py.File(tmp_path / "odd.h5", "w", libver="latest") as h5file:
        dataset = h5file.create_dataset("frames", **frame_dataset_options(61, 83))
        odd_chunks_compared = 0
        for row in range(40):
            frame = noisy_frame(rng, 61, 83, noise_dn=1.0)
            dataset.resize((row + 1, 61, 83))
            dataset[row] = frame
            _, stored = dataset.id.read_direct_chunk((row, 0, 0))
            chunk = encode_frame_chunk(frame)
            assert chunk == stored
            odd_chunks_compared += (len(chunk) - FLETCHER32_TRAILER_BYTES) % 2
    assert odd_chunks_compared > 0


@pytest.mark.parametrize(
    "kind,height,width",
    [("noisy", 480, 640), ("uniform-random", 64, 64), ("tiny", 3, 5), ("odd", 121, 97)],
)
def test_direct_chunks_read_back_bit_exact(
    tmp_path: Path, kind: str, height: int, width: int
) -> None:
    rng = np.random.default_rng(3)
    if kind == "uniform-random":  # incompressible: Blosc stores it, HDF5's own filter would skip
        frames = [rng.integers(0, 256, (height, width), dtype=np.uint8) for _ in range(4)]
    else:
        frames = [noisy_frame(rng, height, width) for _ in range(4)]
    path = tmp_path / "direct.h5"
    with h5py.File(path, "w", libver="latest") as h5file:
        dataset = h5file.create_dataset("frames", **frame_dataset_options(height, width))
        dataset.resize((len(frames), height, width))
        for row, frame in enumerate(frames):
            dataset.id.write_direct_chunk((row, 0, 0), encode_frame_chunk(frame))
    with h5py.File(path, "r") as h5file:
        np.testing.assert_array_equal(h5file["frames"][:], np.stack(frames))


def test_decode_round_trip_and_checksum_failure() -> None:
    rng = np.random.default_rng(11)
    frame = noisy_frame(rng, 120, 160)
    chunk = encode_frame_chunk(frame)
    np.testing.assert_array_equal(decode_frame_chunk(chunk, 120, 160), frame)
    assert chunk_frame_nbytes(chunk) == 120 * 160
    corrupted = bytearray(chunk)
    corrupted[len(chunk) // 2] ^= 0x10
    with pytest.raises(ValueError, match="checksum"):
        decode_frame_chunk(bytes(corrupted), 120, 160)
    with pytest.raises(ValueError, match="160"):
        decode_frame_chunk(chunk, 160, 160)


def test_trailer_is_little_endian_fletcher32_of_payload() -> None:
    frame = noisy_frame(np.random.default_rng(5), 40, 50)
    chunk = encode_frame_chunk(frame)
    payload = chunk[:-FLETCHER32_TRAILER_BYTES]
    assert struct.unpack("<I", chunk[-FLETCHER32_TRAILER_BYTES:])[0] == reference_fletcher32(
        payload
    )
    assert blosc.decompress(payload) == frame.tobytes()


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4), dtype=np.uint16),
        np.zeros((4, 4, 3), dtype=np.uint8),
        np.zeros((8, 8), dtype=np.uint8)[:, ::2],
        np.zeros((0, 8), dtype=np.uint8),
    ],
)
def test_encode_rejects_what_is_not_a_frame(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        encode_frame_chunk(bad)


def test_dataset_options_declare_one_frame_per_chunk() -> None:
    options = frame_dataset_options(480, 640)
    assert options["shape"] == (0, 480, 640)
    assert options["maxshape"] == (None, 480, 640)
    assert options["chunks"] == (1, 480, 640)
    assert options["fletcher32"] is True
    assert options["compression"] == 32001  # hdf5plugin's Blosc filter id
    with pytest.raises(ValueError):
        frame_dataset_options(0, 640)


def _encode_timing(frames: list[np.ndarray]) -> tuple[float, float]:
    """(best seconds per frame over 3 passes, compression ratio)."""
    best_s = float("inf")
    for _ in range(3):
        start_s = time.perf_counter()
        chunks = [encode_frame_chunk(frame) for frame in frames]
        best_s = min(best_s, (time.perf_counter() - start_s) / len(frames))
    ratio = sum(frame.size for frame in frames) / sum(len(chunk) for chunk in chunks)
    return best_s, ratio


def test_measure_encode_time_and_ratio_640x480() -> None:
    """Prints the figures behind FRAME_CLEVEL; asserts only that compression did something."""
    rng = np.random.default_rng(2024)
    frames = [
        np.clip(np.round(128.0 + rng.normal(0.0, 2.0, (480, 640))), 0, 255).astype(np.uint8)
        for _ in range(30)
    ]
    encode_s, ratio = _encode_timing(frames)
    print(
        f"\n{FRAME_CNAME} clevel {FRAME_CLEVEL} + bitshuffle + fletcher32,"
        f" 640x480 mid-gray 2 DN noise: {encode_s * 1e3:.3f} ms/frame, ratio {ratio:.3f}"
    )
    checksum_start_s = time.perf_counter()
    for frame in frames:
        hdf5_fletcher32(frame)
    checksum_s = (time.perf_counter() - checksum_start_s) / len(frames)
    print(f"fletcher32 alone over 307,200 bytes: {checksum_s * 1e3:.3f} ms")
    for clevel in (1, 3, 5, 7, 9):
        start_s = time.perf_counter()
        sizes = [
            len(
                blosc.compress_ptr(
                    f.__array_interface__["data"][0],
                    f.size,
                    1,
                    clevel,
                    blosc.BITSHUFFLE,
                    FRAME_CNAME,
                )
            )
            for f in frames
        ]
        per_frame_s = (time.perf_counter() - start_s) / len(frames)
        print(
            f"  clevel {clevel}: {per_frame_s * 1e3:.3f} ms/frame (Blosc only),"
            f" ratio {sum(f.size for f in frames) / sum(sizes):.3f}"
        )
    assert ratio > 1.0


def test_measure_encode_on_real_video() -> None:
    videos = sorted(REAL_VIDEO.glob("*.mp4")) if REAL_VIDEO.is_dir() else []
    if not videos:
        pytest.skip(f"real video not present under {REAL_VIDEO}")
    import cv2

    capture = cv2.VideoCapture(str(videos[0]))
    frames = []
    while len(frames) < 60:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)))
    capture.release()
    if not frames:
        pytest.skip(f"could not decode {videos[0]}")
    encode_s, ratio = _encode_timing(frames)
    print(
        f"\nreal open-field video {frames[0].shape}:"
        f" {encode_s * 1e3:.3f} ms/frame, ratio {ratio:.3f}"
    )
    assert ratio > 1.0
