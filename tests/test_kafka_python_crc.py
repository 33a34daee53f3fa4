"""kafka-python checks the CRC-32C of every record batch it fetches (diff,
replay --from-kafka, rebuild, the test helpers). It must find the C module
(the `crc32c` dependency): its pure-Python fallback took 152 of the 206 s of
a `diff` over 1M events."""

from __future__ import annotations

import os

import crc32c
from kafka.record import util
from kafka.record._crc32c import crc as crc32c_pure


def test_kafka_python_checks_crcs_with_the_c_module():
    assert util.crc32c_c is crc32c.crc32c
    assert util.calc_crc32c.__defaults__ == (crc32c.crc32c,)


def test_the_c_module_agrees_with_kafka_pythons_own():
    data = os.urandom(4096)
    assert util.calc_crc32c(memoryview(data)) == crc32c_pure(memoryview(data))
    assert util.calc_crc32c(memoryview(b"123456789")) == 0xE3069283  # the CRC-32C check value
