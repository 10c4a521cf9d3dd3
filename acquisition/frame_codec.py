"""One video frame as the exact bytes of one HDF5 chunk: Blosc (lz4, bitshuffle) plus fletcher32.

The trial file stores frames chunked one frame per chunk through two HDF5 filters, in this order:
hdf5plugin's Blosc filter (32001) and HDF5's fletcher32 checksum (filter 3). Each camera process
runs :func:`encode_frame_chunk` so compression is spread over the cores, and the writer stores the
result with ``dataset.id.write_direct_chunk((i, 0, 0), chunk)`` (filter mask 0) without touching the
pixels. Any HDF5 reader with the Blosc plugin (h5py + hdf5plugin, MATLAB with the filter plugin)
then reads the frames through the normal pipeline and checks the checksum.

For every frame that Blosc can shrink, the chunk is byte for byte what h5py would store for
``dataset[i] = frame``. HDF5's Blosc filter gives up on a frame it cannot shrink (tiny frames, pure
noise) and stores it unfiltered with a filter-mask bit set; :func:`encode_frame_chunk` still returns
a valid Blosc chunk (Blosc's own "stored" container), which every reader decodes the same way.
"""

from __future__ import annotations

import struct
from typing import Any, Final

import blosc
import hdf5plugin
import numpy as np

# lz4 + bitshuffle: measured fastest of the lossless coders at a useful ratio (HARDWARE_NOTES.md).
FRAME_CNAME: Final = "lz4"
# Measured on real mouse video (640x480 open field, 396x406 at 250 fps) and on synthetic 2 DN
# noise frames: from clevel 5 to 9 the ratio rises 3-5% while encode time rises 0-27%; below 5
# the ratio falls and encoding is not measurably faster. See docs/format.md.
FRAME_CLEVEL = 5
FLETCHER32_TRAILER_BYTES = 4
# Blosc's container header: version, versionlz, flags, typesize, nbytes, blocksize, cbytes.
_BLOSC_HEADER = struct.Struct("<BBBBIII")
_BLOSC_HEADER_BYTES = _BLOSC_HEADER.size
# Words summed per BLAS block: sum(j * word_j) stays below 2**53, so float64 sums are exact.
_FLETCHER_BLOCK_WORDS = 4096
_FLETCHER_MODULUS = 65535


def frame_dataset_options(height: int, width: int) -> dict[str, Any]:
    """Keyword arguments for ``h5py.Group.create_dataset`` of an appendable (N, H, W) uint8 frames
    dataset, one frame per chunk, that :func:`encode_frame_chunk` chunks can be written into."""
    _check_frame_size(height, width)
    return {
        "shape": (0, height, width),
        "maxshape": (None, height, width),
        "chunks": (1, height, width),
        "dtype": np.uint8,
        "fletcher32": True,
        **hdf5plugin.Blosc(
            cname=FRAME_CNAME, clevel=FRAME_CLEVEL, shuffle=hdf5plugin.Blosc.BITSHUFFLE
        ),
    }


def encode_frame_chunk(frame: np.ndarray) -> bytes:
    """(H, W) uint8 C-contiguous frame -> the bytes HDF5 stores for its chunk (filter mask 0)."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 2:
        raise ValueError(f"frame must be a 2-D uint8 array, got {_describe(frame)}")
    if not frame.flags.c_contiguous:
        raise ValueError("frame must be C-contiguous (np.ascontiguousarray copies it once)")
    _check_frame_size(*frame.shape)
    _use_one_blosc_thread()
    compressed = blosc.compress_ptr(
        frame.__array_interface__["data"][0],
        frame.size,
        typesize=1,
        clevel=FRAME_CLEVEL,
        shuffle=blosc.BITSHUFFLE,
        cname=FRAME_CNAME,
    )
    # HDF5 encodes the fletcher32 trailer little-endian (UINT32ENCODE), whatever the host order.
    return compressed + struct.pack("<I", hdf5_fletcher32(compressed))


def decode_frame_chunk(
    chunk: bytes | bytearray | memoryview, height: int, width: int
) -> np.ndarray:
    """Chunk bytes from :func:`encode_frame_chunk` (or HDF5) -> (height, width) uint8 frame.

    Raises ValueError when the checksum does not match or the chunk does not hold such a frame.
    """
    _check_frame_size(height, width)
    raw = bytes(chunk)
    if len(raw) < _BLOSC_HEADER_BYTES + FLETCHER32_TRAILER_BYTES:
        raise ValueError(f"chunk of {len(raw)} bytes is too short to hold a frame")
    payload, trailer = raw[:-FLETCHER32_TRAILER_BYTES], raw[-FLETCHER32_TRAILER_BYTES:]
    stored_checksum = struct.unpack("<I", trailer)[0]
    computed_checksum = hdf5_fletcher32(payload)
    if stored_checksum != computed_checksum:
        raise ValueError(
            f"fletcher32 checksum mismatch: stored {stored_checksum:#010x}, "
            f"computed {computed_checksum:#010x}"
        )
    frame_bytes = chunk_frame_nbytes(raw)
    if frame_bytes != height * width:
        raise ValueError(
            f"chunk holds {frame_bytes} bytes, a {height}x{width} frame has {height * width}"
        )
    return np.frombuffer(blosc.decompress(payload), dtype=np.uint8).reshape(height, width)


def chunk_frame_nbytes(chunk: bytes | bytearray | memoryview) -> int:
    """Uncompressed size in bytes that a chunk's Blosc header declares (cheap sanity check)."""
    if len(chunk) < _BLOSC_HEADER_BYTES + FLETCHER32_TRAILER_BYTES:
        raise ValueError(f"chunk of {len(chunk)} bytes is too short to hold a frame")
    _, _, _, _, nbytes, _, cbytes = _BLOSC_HEADER.unpack_from(chunk, 0)
    if cbytes != len(chunk) - FLETCHER32_TRAILER_BYTES:
        raise ValueError(
            f"chunk is not Blosc + fletcher32: header says {cbytes} compressed bytes, "
            f"chunk has {len(chunk) - FLETCHER32_TRAILER_BYTES} before the checksum"
        )
    return int(nbytes)


def hdf5_fletcher32(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """HDF5's ``H5_checksum_fletcher32`` of ``data``, bit for bit.

    HDF5 sums big-endian 16-bit words (an odd last byte counts as its high byte) with 32-bit
    accumulators folded every 360 words. The folds keep each sum congruent modulo 65535 and end in
    1..65535 unless every word was zero, so the closed form below gives the same 32 bits:
    sum1 = sum(w_i), sum2 = sum((n - i) * w_i), each reduced to 0 (all zero) or 1..65535.
    """
    octets = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    octets = octets.reshape(-1).view(np.uint8)
    n_even = octets.size & ~1
    words = octets[:n_even].view(">u2")
    word_sum, weighted_sum = _fletcher_sums(words)
    if octets.size & 1:
        # The odd byte is one more word whose prefix sum is the total of everything.
        word_sum += int(octets[-1]) << 8
        weighted_sum += word_sum
    any_nonzero = word_sum != 0
    sum1 = _fold_to_16_bits(word_sum, any_nonzero)
    sum2 = _fold_to_16_bits(weighted_sum, any_nonzero)
    return (sum2 << 16) | sum1


def _fletcher_sums(words: np.ndarray) -> tuple[int, int]:
    """(sum(w_i), sum((n - i) * w_i)) of (n,) 16-bit words, exact, as Python ints."""
    n_words = words.size
    n_blocks = n_words // _FLETCHER_BLOCK_WORDS
    word_sum = 0
    weighted_sum = 0
    if n_blocks:
        # float64 BLAS is several times faster than numpy's integer dot; every partial sum is an
        # integer below 2**53, so it is exact.
        blocks = words[: n_blocks * _FLETCHER_BLOCK_WORDS].reshape(n_blocks, -1).astype(np.float64)
        weights = np.stack(
            [np.ones(_FLETCHER_BLOCK_WORDS), np.arange(_FLETCHER_BLOCK_WORDS, dtype=np.float64)],
            axis=1,
        )
        sums = blocks @ weights  # (n_blocks, 2): per block sum(w_j) and sum(j * w_j)
        block_sums = sums[:, 0].astype(np.int64)
        block_offsets = sums[:, 1].astype(np.int64)
        remaining_words = n_words - np.arange(n_blocks, dtype=np.int64) * _FLETCHER_BLOCK_WORDS
        word_sum = int(block_sums.sum())
        weighted_sum = int(
            ((remaining_words % _FLETCHER_MODULUS) * (block_sums % _FLETCHER_MODULUS)).sum()
        ) - int(block_offsets.sum())
    tail = words[n_blocks * _FLETCHER_BLOCK_WORDS :].astype(np.int64)
    if tail.size:
        tail_sum = int(tail.sum())
        word_sum += tail_sum
        weighted_sum += tail.size * tail_sum - int(
            np.dot(np.arange(tail.size, dtype=np.int64), tail)
        )
    return word_sum, weighted_sum


def _fold_to_16_bits(total: int, any_nonzero: bool) -> int:
    if not any_nonzero:
        return 0
    residue = total % _FLETCHER_MODULUS
    return residue if residue else _FLETCHER_MODULUS


def _use_one_blosc_thread() -> None:
    # Multi-threaded Blosc writes blocks in the order threads finish, so its output is not
    # reproducible and differs from the HDF5 filter's; one thread per camera process is also what
    # spreads compression over the cores without oversubscribing them.
    if blosc.nthreads != 1:
        blosc.set_nthreads(1)


def _check_frame_size(height: int, width: int) -> None:
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"frame size must be positive, got {height}x{width}")
    if int(height) * int(width) > blosc.MAX_BUFFERSIZE:
        raise ValueError(f"a {height}x{width} frame is larger than Blosc's limit")


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__
