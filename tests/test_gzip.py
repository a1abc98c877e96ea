"""The wire's gzip: ISA-L where installed, zlib otherwise; either a plain, reproducible stream."""

from __future__ import annotations

import gzip
import importlib.util
import sys

import pytest

from asyncjob import _gzip
from asyncjob._gzip import COMPRESSOR, gzip_bytes, zlib_gzip

SAMPLES = [
    b"",
    b'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nh q[0];\ncx q[0],q[1];\n',
    "// caf\u00e9\n".encode() * 5000,
    bytes(range(256)) * 300,
]


@pytest.mark.parametrize("data", SAMPLES, ids=["empty", "bell", "repetitive", "binary"])
@pytest.mark.parametrize("compress", [gzip_bytes, zlib_gzip], ids=["default", "zlib"])
def test_every_compressor_writes_a_gzip_stream_with_mtime_0(compress, data) -> None:
    packed = compress(data)
    assert gzip.decompress(packed) == data
    assert packed[:2] == b"\x1f\x8b" and packed[4:8] == b"\0\0\0\0"  # magic, then mtime 0
    assert compress(data) == packed  # the same input, the same bytes


def test_the_zlib_fallback_is_the_standard_librarys_gzip_byte_for_byte() -> None:
    data = SAMPLES[2]
    assert zlib_gzip(data) == gzip.compress(data, 6, mtime=0)


@pytest.mark.skipif(importlib.util.find_spec("isal") is None, reason="isal is not installed")
def test_isal_is_used_where_it_is_installed() -> None:
    from isal import isal_zlib

    assert COMPRESSOR == "isal"
    data = SAMPLES[1] * 50
    assert gzip_bytes(data) == isal_zlib.compress(data, 2, 31)


def test_without_isal_the_fallback_is_chosen(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "isal", None)  # `import isal` now raises ImportError
    assert _gzip._isal_gzip() is None
