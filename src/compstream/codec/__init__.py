"""Avro single-object codec for every record on the project's topics."""

from compstream.codec.avro_codec import SCHEMAS, DecodeError, decode_event, decode_record, encode_event, encode_record

__all__ = ["SCHEMAS", "DecodeError", "decode_event", "decode_record", "encode_event", "encode_record"]
