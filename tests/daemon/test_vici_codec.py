"""The VICI wire format: strongSwan's README example, round trips, malformed input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyipsec.daemon.vici_codec import (
    MAX_SEGMENT,
    PacketType,
    ViciError,
    decode_message,
    decode_packet,
    encode_message,
    encode_packet,
    frame,
    printable,
    text,
)

# the encoding example of src/libcharon/plugins/vici/README.md
README_EXAMPLE = bytes(
    [3, 4, *b"key1", 0, 6, *b"value1",
     1, 8, *b"section1",
     1, 11, *b"sub-section",
     3, 4, *b"key2", 0, 6, *b"value2",
     2,
     4, 5, *b"list1",
     5, 0, 5, *b"item1",
     5, 0, 5, *b"item2",
     6,
     2]
)  # fmt: skip
README_TREE = {
    "key1": b"value1",
    "section1": {"sub-section": {"key2": b"value2"}, "list1": [b"item1", b"item2"]},
}


def test_readme_example() -> None:
    assert decode_message(README_EXAMPLE) == README_TREE
    assert encode_message(README_TREE) == README_EXAMPLE
    as_text = {
        "key1": "value1",
        "section1": {"sub-section": {"key2": "value2"}, "list1": ["item1", "item2"]},
    }
    assert encode_message(as_text) == README_EXAMPLE  # fmt: skip


def test_value_types_and_packets() -> None:
    m = encode_message({"a": 1, "b": True, "c": False, "d": None, "e": 1.5})
    assert decode_message(m) == {"a": b"1", "b": b"yes", "c": b"no", "e": b"1.5"}
    p = decode_packet(encode_packet(PacketType.CMD_REQUEST, "version"))
    assert (p.type, p.name, p.message) == (PacketType.CMD_REQUEST, "version", {})
    p = decode_packet(encode_packet(PacketType.CMD_RESPONSE, "ignored", {"x": "y"}))
    assert (p.type, p.name, p.message) == (PacketType.CMD_RESPONSE, "", {"x": b"y"})
    assert frame(b"\x02") == b"\x00\x00\x00\x01\x02"
    assert text({"x": b"y", "s": {}}, "x") == "y"
    assert text({"s": {}}, "s", "d") == "d"
    with pytest.raises(ViciError):
        frame(bytes(MAX_SEGMENT + 1))
    with pytest.raises(ViciError):
        encode_message({"x" * 256: "v"})
    with pytest.raises(ViciError):
        encode_message({"x": "v" * 70000})
    with pytest.raises(ViciError):
        encode_message({"x": object()})


@pytest.mark.parametrize(
    "data",
    [
        b"\x02",  # SECTION_END without a section
        b"\x01\x01s",  # unterminated section
        b"\x04\x01l\x05\x00\x01a",  # unterminated list
        b"\x05\x00\x01a",  # item outside a list
        b"\x06",  # LIST_END without a list
        b"\x04\x01l\x03\x01k\x00\x00\x06",  # key/value inside a list
        b"\x03\x05ab",  # truncated name
        b"\x03\x01k\x00",  # truncated value length
        b"\x03\x01k\x00\x09abc",  # truncated value
        b"\x09",  # unknown element
        b"\x03\x01\xff\x00\x00",  # name not UTF-8
        b"\x01\x01s" * 100 + b"\x02" * 100,  # too deep
    ],
)
def test_malformed_messages(data: bytes) -> None:
    with pytest.raises(ViciError):
        decode_message(data)


@pytest.mark.parametrize("data", [b"", b"\x09", b"\x00", b"\x00\x05ab", b"\x07\x01\xff"])
def test_malformed_packets(data: bytes) -> None:
    with pytest.raises(ViciError):
        decode_packet(data)


names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20).filter(
    lambda s: len(s.encode()) < 256
)
values = st.binary(max_size=64)
trees = st.recursive(
    st.dictionaries(names, st.one_of(values, st.lists(values, max_size=4)), max_size=4),
    lambda inner: st.dictionaries(
        names, st.one_of(values, st.lists(values, max_size=3), inner), max_size=4
    ),
    max_leaves=20,
)


@given(trees)
def test_round_trip(tree: dict[str, object]) -> None:
    assert decode_message(encode_message(tree)) == tree


@given(st.binary(max_size=64))
def test_fuzz_never_crashes(data: bytes) -> None:
    """Any octets: a packet or ViciError, nothing else."""
    with contextlib.suppress(ViciError):
        decode_packet(data)


def test_printable() -> None:
    """libvici hands clients an empty string for a value that is not printable ASCII."""
    assert printable("RFC 7296 §3.15.1") == "RFC 7296 Section 3.15.1"
    assert printable("caf\u00e9\tx") == "caf??x"
    assert printable("plain: ok") == "plain: ok"
