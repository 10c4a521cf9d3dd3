from __future__ import annotations

import pytest

from acquisition.triggerbox.protocol import (
    CPU_CLOCK_HZ,
    MAX_RATE_UHZ,
    MAX_REQUEST_BYTES,
    MIN_RATE_UHZ,
    BoxState,
    Command,
    ErrorCode,
    ErrorReply,
    LineAssembler,
    MalformedReply,
    OkReply,
    RequestError,
    encode_banner,
    encode_error,
    encode_ok,
    encode_request,
    format_rate_uhz,
    parse_count,
    parse_rate_uhz,
    parse_reply,
    parse_request,
    parse_version,
    timer_setting,
)

# --- lines ------------------------------------------------------------------------------------


def test_lines_split_anywhere_come_out_whole() -> None:
    wire = b"OK COUNT 12\nOK STOP 3\r\n\nERR ARM STATE no rate set\n"
    for cut in range(len(wire) + 1):
        assembler = LineAssembler(64)
        lines = assembler.feed(wire[:cut]) + assembler.feed(wire[cut:])
        assert [line.text for line in lines] == [
            b"OK COUNT 12",
            b"OK STOP 3",
            b"ERR ARM STATE no rate set",
        ]


def test_a_byte_at_a_time_gives_the_same_lines() -> None:
    assembler = LineAssembler(64)
    lines = [line for byte in b"VERSION\nSTATE\n" for line in assembler.feed(bytes([byte]))]
    assert [line.text for line in lines] == [b"VERSION", b"STATE"]


def test_an_over_long_line_is_dropped_once_and_the_next_line_is_whole() -> None:
    assembler = LineAssembler(MAX_REQUEST_BYTES)
    exact = b"A" * MAX_REQUEST_BYTES
    lines = assembler.feed(exact + b"\n" + b"B" * (MAX_REQUEST_BYTES + 1) + b"\nCOUNT\n")
    assert [(line.text, line.overflowed) for line in lines] == [
        (exact, False),
        (b"", True),
        (b"COUNT", False),
    ]


def test_the_client_keeps_the_tail_of_an_over_long_line() -> None:
    assembler = LineAssembler(16, keep_tail=True)
    noise = bytes(range(0x80, 0x100)) * 40
    lines = assembler.feed(noise[:5000]) + assembler.feed(noise[5000:] + b"OK COUNT 12\n")
    assert len(lines) == 1
    assert lines[0].text.endswith(b"OK COUNT 12") and len(lines[0].text) == 16
    assert parse_reply(lines[0].text) == OkReply(Command.COUNT, "12")


def test_line_assembler_needs_room_for_a_byte() -> None:
    with pytest.raises(ValueError, match="max_line_bytes"):
        LineAssembler(0)


# --- rates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rate_uhz"),
    [("200", 200_000_000), ("200.5", 200_500_000), ("0.12", 120_000), ("333.000333", 333_000_333)],
)
def test_rates_parse_to_exact_microhertz_and_back(text: str, rate_uhz: int) -> None:
    assert parse_rate_uhz(text) == rate_uhz
    assert parse_rate_uhz(format_rate_uhz(rate_uhz)) == rate_uhz


@pytest.mark.parametrize(
    "text", ["", "-1", "+1", "1e3", "1.", ".5", "1.2345678", "1234567890", " 1", "1 ", "1,5", "nan"]
)
def test_malformed_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate_uhz(text)


def test_round_rates_are_made_exactly() -> None:
    for rate_hz in (1, 10, 100, 200, 250, 500, 1000, 2000, 5000, 10_000):
        setting = timer_setting(rate_hz * 1_000_000)
        assert setting.achieved_rate_uhz == rate_hz * 1_000_000
        cycles_per_pulse = 2 * setting.prescaler * setting.half_period_ticks
        assert cycles_per_pulse * rate_hz == CPU_CLOCK_HZ


@pytest.mark.parametrize("rate_uhz", [MIN_RATE_UHZ, 333_000_000, 1_234_567_891, MAX_RATE_UHZ])
def test_the_timer_setting_is_the_finest_that_fits(rate_uhz: int) -> None:
    setting = timer_setting(rate_uhz)
    assert 0 <= setting.compare_value <= 65_535
    exact_rate_uhz = CPU_CLOCK_HZ * 1_000_000 / (2 * setting.prescaler * setting.half_period_ticks)
    assert abs(setting.achieved_rate_uhz - exact_rate_uhz) <= 0.5
    # One tick either way would be further from the request.
    for ticks in (setting.half_period_ticks - 1, setting.half_period_ticks + 1):
        other_rate_uhz = CPU_CLOCK_HZ * 1_000_000 / (2 * setting.prescaler * ticks)
        assert abs(other_rate_uhz - rate_uhz) >= abs(exact_rate_uhz - rate_uhz)
    relative_error = abs(exact_rate_uhz - rate_uhz) / rate_uhz
    print(f"{rate_uhz / 1e6} Hz -> {setting}, relative error {relative_error:.2e}")
    assert relative_error < 1e-3


@pytest.mark.parametrize("rate_uhz", [0, MIN_RATE_UHZ - 1, MAX_RATE_UHZ + 1])
def test_rates_out_of_range_have_no_timer_setting(rate_uhz: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        timer_setting(rate_uhz)


# --- requests ---------------------------------------------------------------------------------


def test_requests_encode_as_the_firmware_reads_them() -> None:
    assert encode_request(Command.RATE, 200.0) == b"RATE 200.000000\n"
    assert encode_request(Command.RATE, 333.0003334) == b"RATE 333.000333\n"
    assert encode_request(Command.START) == b"START\n"
    request = parse_request(encode_request(Command.RATE, 199.5).rstrip(b"\n"))
    assert request.command is Command.RATE and request.rate_uhz == 199_500_000


def test_request_arguments_are_checked_when_encoding() -> None:
    with pytest.raises(ValueError, match="needs rate_hz"):
        encode_request(Command.RATE)
    with pytest.raises(ValueError, match="takes no rate"):
        encode_request(Command.ARM, 10.0)
    for bad_rate_hz in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite positive"):
            encode_request(Command.RATE, bad_rate_hz)


@pytest.mark.parametrize(
    ("line", "command", "code"),
    [
        (b"FIRE", "?", ErrorCode.UNKNOWN),
        (b"start", "?", ErrorCode.UNKNOWN),
        (b"ST\xffART", "?", ErrorCode.UNKNOWN),
        (b"ARM\x00", "?", ErrorCode.UNKNOWN),
        (b"ARM ", "ARM", ErrorCode.SYNTAX),
        (b"COUNT 3", "COUNT", ErrorCode.SYNTAX),
        (b"RATE", "RATE", ErrorCode.SYNTAX),
        (b"RATE ", "RATE", ErrorCode.SYNTAX),
        (b"RATE fast", "RATE", ErrorCode.SYNTAX),
        (b"RATE 1 2", "RATE", ErrorCode.SYNTAX),
    ],
)
def test_bad_requests_get_the_firmwares_error(line: bytes, command: str, code: ErrorCode) -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(line)
    assert (caught.value.command, caught.value.code) == (command, code)


# --- replies ----------------------------------------------------------------------------------


def test_replies_round_trip() -> None:
    cases: list[tuple[bytes, OkReply | ErrorReply]] = [
        (encode_ok(Command.ARM), OkReply(Command.ARM)),
        (encode_ok(Command.STOP, "4000"), OkReply(Command.STOP, "4000")),
        (encode_ok(Command.RATE, "200.000000"), OkReply(Command.RATE, "200.000000")),
        (encode_ok(Command.VERSION, "1.0.0"), OkReply(Command.VERSION, "1.0.0")),
        (encode_ok(Command.STATE, BoxState.ARMED), OkReply(Command.STATE, "ARMED")),
        (
            encode_error("START", ErrorCode.STATE, "not armed"),
            ErrorReply("START", ErrorCode.STATE, "not armed"),
        ),
        (
            encode_error("?", ErrorCode.UNKNOWN, "unknown command"),
            ErrorReply("?", ErrorCode.UNKNOWN, "unknown command"),
        ),
    ]
    for wire, reply in cases:
        assert wire.endswith(b"\n") and wire.count(b"\n") == 1
        assert parse_reply(wire.rstrip(b"\n")) == reply


@pytest.mark.parametrize(
    "garbage", [b"\x00\xff\xfe", b"noise", b"OK ", b"ERR ", b"OK COUNT 9 ", b"ERR ? UNKNOWN x "]
)
def test_noise_before_a_reply_on_the_same_line_is_skipped(garbage: bytes) -> None:
    assert parse_reply(garbage + b"OK COUNT 12") == OkReply(Command.COUNT, "12")
    assert parse_reply(garbage + b"ERR ARM STATE no rate set") == ErrorReply(
        "ARM", ErrorCode.STATE, "no rate set"
    )


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"READY jumprig-triggerbox 1.0.0",
        b"\xff\xfe\x00",
        b"OK",
        b"OK ",
        b"OK FIRE",
        b"OK ARM 3",
        b"OK START now",
        b"OK COUNT",
        b"OK COUNT -1",
        b"OK COUNT 12x",
        b"OK COUNT 1 2",
        b"OK STOP 1.5",
        b"OK RATE fast",
        b"OK RATE 200.0000001",
        b"OK VERSION 1.0",
        b"OK VERSION v1.0.0",
        b"OK STATE SLEEPING",
        b"ERR",
        b"ERR START",
        b"ERR START STATE",
        b"ERR FIRE STATE not armed",
        b"ERR START BROKEN not armed",
    ],
)
def test_malformed_replies_are_refused(line: bytes) -> None:
    with pytest.raises(MalformedReply):
        parse_reply(line)


def test_the_boot_banner_is_not_a_reply() -> None:
    with pytest.raises(MalformedReply):
        parse_reply(encode_banner().rstrip(b"\n"))


def test_error_messages_cannot_hide_a_reply_token() -> None:
    with pytest.raises(ValueError, match="reply token"):
        encode_error("ARM", ErrorCode.STATE, "was OK before")
    with pytest.raises(ValueError, match="printable"):
        encode_error("ARM", ErrorCode.STATE, "line\nbreak")


def test_counts_and_versions_parse() -> None:
    assert parse_count("0") == 0
    assert parse_count("4294967295") == 2**32 - 1
    for bad in ("4294967296", "-1", "", "1e3"):
        with pytest.raises(MalformedReply):
            parse_count(bad)
    assert parse_version("1.2.3") == (1, 2, 3)
    with pytest.raises(MalformedReply):
        parse_version("1.2")
