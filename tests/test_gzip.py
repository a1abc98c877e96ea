"""The wire's gzip: ISA-L where installed, zlib otherwise; either a plain, reproducible stream."""

from __future__ import annotations

import gzip
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator

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
def test_every_compressor_writes_a_gzip_stream_with_mtime_0(
    compress: Callable[[bytes], bytes], data: bytes
) -> None:
    packed = compress(data)
    assert gzip.decompress(packed) == data
    assert packed[:2] == b"\x1f\x8b" and packed[4:8] == b"\0\0\0\0"  # magic, then mtime 0
    assert compress(data) == packed  # the same input, the same bytes


@pytest.mark.parametrize("size", [1, 1000, 64 * 1024 - 1, 64 * 1024 + 1, 700_000])
@pytest.mark.parametrize("compress", [gzip_bytes, zlib_gzip], ids=["default", "zlib"])
def test_incompressible_data_grows_no_more_than_check_sizes_allows(
    compress: Callable[[bytes], bytes], size: int
) -> None:
    """`Submission.check_sizes` skips encoding circuits whose worst case fits a request."""
    data = os.urandom(size)
    assert len(compress(data)) <= size + size // 1000 * 5 + 64


def test_the_zlib_fallback_is_the_standard_librarys_gzip_byte_for_byte() -> None:
    data = SAMPLES[2]
    assert zlib_gzip(data) == gzip.compress(data, 6, mtime=0)


@pytest.mark.skipif(importlib.util.find_spec("isal") is None, reason="isal is not installed")
def test_isal_is_used_where_it_is_installed() -> None:
    from isal import isal_zlib

    assert COMPRESSOR == "isal"
    data = SAMPLES[1] * 50
    assert gzip_bytes(data) == isal_zlib.compress(data, 2, 31)


@pytest.fixture
def without_isal(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """`asyncjob._gzip` imported again as if isal were not installed; restored after."""
    monkeypatch.setitem(sys.modules, "isal", None)  # `import isal` now raises ImportError
    monkeypatch.delitem(sys.modules, "isal.isal_zlib", raising=False)
    yield importlib.reload(_gzip)
    monkeypatch.undo()
    importlib.reload(_gzip)


def test_without_isal_zlib_is_chosen(without_isal: object) -> None:
    assert without_isal is _gzip
    assert _gzip.COMPRESSOR == "zlib"
    assert _gzip.gzip_bytes is _gzip.zlib_gzip
    assert gzip.decompress(_gzip.gzip_bytes(SAMPLES[1])) == SAMPLES[1]
