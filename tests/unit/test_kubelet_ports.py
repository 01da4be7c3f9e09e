"""Port lists of a port-forward, at the node (`port`, upstream's NewV4Options) and at the API
server (`ports`, apimachinery's conversion to []int32), and the stream a log record was
written on: upstream's answers, and nothing but their own errors on any input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubesvc.api.errors import ApiError
from kubesvc.apiserver.podstreams import portforward_ports
from kubesvc.kubelet.logs import record_stream
from kubesvc.kubelet.portforward import MAX_PORTS, parse_ports, parse_uint16


@pytest.mark.parametrize(
    ("text", "want"),
    [("1", 1), ("080", 80), ("65535", 65535), ("0", 0), ("00000000000000000001", 1)],
)
def test_parse_uint16(text: str, want: int) -> None:
    assert parse_uint16(text) == want


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'strconv.ParseUint: parsing "": invalid syntax'),
        ("+1", 'strconv.ParseUint: parsing "+1": invalid syntax'),
        ("-1", 'strconv.ParseUint: parsing "-1": invalid syntax'),
        (" 1", 'strconv.ParseUint: parsing " 1": invalid syntax'),
        ("\uff11", 'strconv.ParseUint: parsing "\uff11": invalid syntax'),  # fullwidth 1
        ("65536", 'strconv.ParseUint: parsing "65536": value out of range'),
        ('"', 'strconv.ParseUint: parsing "\\"": invalid syntax'),
    ],
)
def test_parse_uint16_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_uint16(text)
    assert str(err.value) == message


def test_parse_ports() -> None:
    assert parse_ports(["80,81", "82"]) == [80, 81, 82]
    with pytest.raises(ValueError, match="too many ports"):
        parse_ports([",".join(["80"] * (MAX_PORTS + 1))])


def test_portforward_ports() -> None:
    assert portforward_ports(["8080,8090", "1"]) == [8080, 8090, 1]
    assert portforward_ports([]) == []
    with pytest.raises(ApiError) as err:
        portforward_ports(["80,"])
    assert err.value.code == 400
    assert err.value.message == (
        'cannot convert to []int32: strconv.ParseUint: parsing "": invalid syntax'
    )


@given(st.text(max_size=30))
def test_parse_uint16_is_go_strconv(text: str) -> None:
    go_accepts = text != "" and all(c in "0123456789" for c in text)
    try:
        value = parse_uint16(text)
    except ValueError:
        assert not go_accepts or len(text.lstrip("0")) > 5 or int(text) > 0xFFFF
        return
    assert go_accepts and value == int(text) <= 0xFFFF


def test_a_very_long_number_is_out_of_range() -> None:
    with pytest.raises(ValueError, match="value out of range"):
        parse_uint16("9" * 10_000)


@given(st.lists(st.text(max_size=40), max_size=5))
def test_port_lists_raise_only_their_errors(values: list[str]) -> None:
    try:
        ports = parse_ports(values)
    except ValueError:
        pass
    else:
        assert ports and all(1 <= p <= 0xFFFF for p in ports) and len(ports) <= MAX_PORTS
    try:
        ports = portforward_ports(values)
    except ApiError as e:
        assert e.code == 400
    else:
        assert all(0 <= p <= 0xFFFF for p in ports) and len(ports) <= MAX_PORTS


@given(st.binary(max_size=200))
def test_record_stream(raw: bytes) -> None:
    assert record_stream(raw) in (b"stdout", b"stderr")


def test_record_stream_of_cri_records() -> None:
    assert record_stream(b"2024-01-01T00:00:00Z stderr F oops\n") == b"stderr"
    assert record_stream(b"2024-01-01T00:00:00Z stdout P part") == b"stdout"
    assert record_stream(b"plain stderr F text\n") == b"stdout"
